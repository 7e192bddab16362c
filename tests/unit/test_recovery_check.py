"""A recovery Faust reports complete is checked against the changelogs' ends before it is used."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from orderflow.tables.recovery_check import RecoveryCheck, unrecovered

ORDERS = "orderflow-OrderDB-changelog"
P1, P2, P3 = TP(ORDERS, 1), TP(ORDERS, 2), TP(ORDERS, 3)


def test_a_partition_is_short_when_its_table_holds_less_than_its_changelog() -> None:
    held = {P1: 21, P2: None, P3: 10}
    ends = {P1: 22, P2: 30, P3: 45, TP(ORDERS, 4): 0}
    # P1 holds its last record (offset 21 of 22); P2 holds nothing; the empty one needs nothing.
    assert unrecovered(ends, held.get) == {P2: (None, 30), P3: (10, 45)}


class FakeTable:
    def __init__(self, persisted: dict[Any, int | None]) -> None:
        self.persisted = persisted

    def persisted_offset(self, tp: Any) -> int | None:
        return self.persisted.get(tp)


class FakeApp:
    """The parts of a Faust app the check reads: assignment, ends, and the recovery's state."""

    def __init__(self, persisted: dict[Any, int | None], ends: dict[Any, int]) -> None:
        table = FakeTable(persisted)
        self.consumer_generation_id = 7
        self.assignor = SimpleNamespace(assigned_actives=lambda: {*ends, TP("order.created", 1)})
        self.recovery = SimpleNamespace(
            tp_to_table={tp: table for tp in ends},
            active_offsets={tp: 99 for tp in ends},  # what Faust believes it read
            signal_recovery_start=asyncio.Event(),
        )
        self.tables = SimpleNamespace(recovery=self.recovery)
        self.ends = ends
        self.rebalance_during_query = False

        async def highwaters(*tps: Any) -> dict[Any, int]:
            if self.rebalance_during_query:
                self.consumer_generation_id += 1
            return {tp: ends[tp] for tp in tps}

        self.consumer = SimpleNamespace(highwaters=highwaters)


async def test_a_table_short_of_its_changelog_is_recovered_again_from_what_it_holds() -> None:
    app = FakeApp({P1: 21, P2: None}, {P1: 22, P2: 30})
    check = RecoveryCheck(app, {ORDERS}, persistent=True)

    assert await check.verify() is False
    assert app.recovery.signal_recovery_start.is_set()  # Faust's recovery loop starts again
    assert app.recovery.active_offsets[P2] is None  # from the start: the table holds nothing
    assert app.recovery.active_offsets[P1] == 99  # untouched: it was complete
    assert check.restarts == 1


async def test_a_complete_recovery_passes() -> None:
    app = FakeApp({P1: 21, P2: 29}, {P1: 22, P2: 30})
    check = RecoveryCheck(app, {ORDERS}, persistent=True)

    assert await check.verify() is True
    assert not app.recovery.signal_recovery_start.is_set() and check.restarts == 0


async def test_the_memory_store_is_judged_by_the_offset_recovery_reached() -> None:
    app = FakeApp({}, {P1: 22})
    app.recovery.active_offsets[P1] = 21
    assert await RecoveryCheck(app, {ORDERS}, persistent=False).verify() is True
    app.recovery.active_offsets[P1] = -1  # Faust's "nothing read yet"
    assert await RecoveryCheck(app, {ORDERS}, persistent=False).verify() is False


async def test_a_rebalance_during_the_check_leaves_the_decision_to_the_next_completion() -> None:
    app = FakeApp({P2: None}, {P2: 30})
    app.rebalance_during_query = True
    check = RecoveryCheck(app, {ORDERS}, persistent=True)

    assert await check.verify() is False
    assert not app.recovery.signal_recovery_start.is_set() and check.restarts == 0
