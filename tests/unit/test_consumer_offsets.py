"""Which partitions are read from their start after a rebalance, and which offsets may be committed.

``RewindingConsumer`` corrects two things in Faust's consumer (see ``orderflow.consumer``); its
commit decision is compared here with Faust's own on the same acked offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.util import commit_structure_validate
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP

from orderflow.consumer import (
    CommitGuardThread,
    ReadOffsets,
    RewindingConsumer,
    head_is_missing,
    never_committed,
)

CREATED = TP("order.created", 0)
FAILED = TP("payment.failed", 2)
CHANGELOG = TP("orderflow-OrderDB-changelog", 2)


def test_partitions_with_no_committed_offset_or_offset_0_are_read_from_their_start() -> None:
    committed = {CREATED: None, FAILED: 0, TP("order.created", 1): 7}
    assigned = [*committed, TP("order.created", 3), CHANGELOG]
    fresh = never_committed(assigned, committed, {"order.created", "payment.failed"})
    # Changelogs are positioned by table recovery, not by the group's committed offsets.
    assert fresh == {CREATED, FAILED, TP("order.created", 3)}


def test_a_missing_head_is_told_from_a_contiguous_one() -> None:
    assert head_is_missing(0, [5, 6])
    assert head_is_missing(10, [11, 12])
    assert not head_is_missing(10, [10, 11])
    assert not head_is_missing(None, [5, 6])  # nothing known about the start
    assert not head_is_missing(3, [])


def _consumer(cls: type[Any], committed: int | None, acked: list[int]) -> Any:
    # The commit decision reads only these attributes: no broker needed.
    consumer = object.__new__(cls)
    consumer._acked = defaultdict(list, {FAILED: list(acked)})
    consumer._acked_index = defaultdict(set, {FAILED: set(acked)})
    consumer._committed_offset = defaultdict(lambda: None, {FAILED: committed})
    consumer._gap = defaultdict(list)  # no gaps (Faust keeps IntervalTrees here)
    consumer.reading_from, consumer._held, consumer._seeks = {}, {}, set()  # (RewindingConsumer)
    consumer._fetched = {}
    consumer._read_offset = ReadOffsets() if cls is RewindingConsumer else defaultdict(lambda: None)
    return consumer


@pytest.mark.parametrize(
    ("committed", "reading_from", "acked", "faust_commits", "we_commit"),
    [
        # Nothing committed, reading started at 0, offsets 0..93 never handed to the agent: Faust
        # commits past them (CI lost 94 payment results this way); we wait for them.
        (None, 0, [94], 95, None),
        # One record missing right after the committed offset (faust-streaming #312).
        (10, None, [11, 12], 13, None),
        # Contiguous: both commit the same.
        (10, None, [10, 11, 12], 13, 13),
        (None, 0, [0, 1, 2], 3, 3),
    ],
)
def test_an_offset_is_committed_only_when_every_record_before_it_was_acked(
    committed: int | None,
    reading_from: int | None,
    acked: list[int],
    faust_commits: int | None,
    we_commit: int | None,
) -> None:
    assert _consumer(FaustConsumer, committed, acked)._new_offset(FAILED) == faust_commits
    ours = _consumer(RewindingConsumer, committed, acked)
    if reading_from is not None:
        ours.reading_from[FAILED] = reading_from
    assert ours._new_offset(FAILED) == we_commit
    if we_commit is None:
        assert ours.commits_held == 1


async def test_a_hole_that_lasts_is_read_again_from_its_first_offset() -> None:
    now = [100.0]
    ours = _consumer(RewindingConsumer, 10, [14, 15])
    ours.clock = lambda: now[0]
    sought: list[tuple[Any, int]] = []

    async def seek_wait(positions: dict[Any, int]) -> None:
        sought.extend(positions.items())

    ours.seek_wait = seek_wait
    ours.assignment = lambda: {FAILED}

    assert ours._new_offset(FAILED) is None  # the hole is noticed
    now[0] += ours.redeliver_after - 1
    assert ours._new_offset(FAILED) is None
    await asyncio.sleep(0)
    assert sought == []  # not yet: it may be a moment's delay
    now[0] += 1
    assert ours._new_offset(FAILED) is None
    await asyncio.sleep(0)
    assert sought == [(FAILED, 10)] and ours.redelivered == 1


async def test_where_reading_started_is_forgotten_with_the_assignment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A start kept from an earlier assignment made a hole of records another worker handled
    # (seen in a chaos run: "offsets 0..89 never reached the agent", read again every 10 s).
    ours = _consumer(RewindingConsumer, None, [90, 91])
    ours.reading_from[FAILED] = 0
    assert ours._new_offset(FAILED) is None  # the stale start

    async def faust_revoked(self: Any, revoked: set[Any]) -> None:
        return None

    monkeypatch.setattr(FaustConsumer, "on_partitions_revoked", faust_revoked)
    await ours.on_partitions_revoked({FAILED})
    assert FAILED not in ours.reading_from
    # Nothing known before 90 until the next seek tells where reading starts: no commit (Faust's
    # rule would commit 92, past whatever was missing before 90).
    assert ours._new_offset(FAILED) is None


async def test_no_commit_between_an_assignment_and_the_seek_that_tells_where_reading_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Chaos run s4 (243 orders lost): a worker kept order-commands[2] through a rebalance, and
    # records 279 and 280, fetched before it, reached the agent and were acked after the new
    # assignment but before Faust's seek to the committed offsets (which comes after table
    # recovery). Faust had forgotten the committed offset (40) at the revocation: nothing
    # guarded the head, and it committed 281, past 40..278, which no agent had handled.
    ours = _consumer(RewindingConsumer, 40, [])

    async def faust_revoked(self: Any, revoked: set[Any]) -> None:
        self._acked.pop(FAILED, None)
        self._committed_offset.pop(FAILED, None)  # as Faust does at a revocation

    monkeypatch.setattr(FaustConsumer, "on_partitions_revoked", faust_revoked)
    await ours.on_partitions_revoked({FAILED})
    ours._acked[FAILED].extend([279, 280])  # in-flight records, acked after the new assignment
    assert ours._new_offset(FAILED) is None
    assert ours.commits_unplaced == 1
    ours._committed_offset[FAILED] = 40  # the seek after recovery: the hole is now seen
    assert ours._new_offset(FAILED) is None and ours.commits_held == 1


class _AiokafkaConsumer:
    """The part of aiokafka's consumer a commit uses, refusing an empty commit as it does."""

    def __init__(self) -> None:
        self.sent: list[dict[Any, Any]] = []

    async def commit(self, offsets: dict[Any, Any]) -> None:
        self.sent.append(commit_structure_validate(offsets))


def _thread(cls: type[Any], assigned: set[TP]) -> Any:
    thread = object.__new__(cls)  # the commit reads only these attributes: no broker needed
    thread._consumer, thread.tp_last_committed_at, thread.crashes = _AiokafkaConsumer(), {}, []
    thread.assignment = lambda: assigned
    thread.log = logging.getLogger("test")

    async def crash(exc: BaseException) -> None:
        thread.crashes.append(exc)

    thread.crash = crash
    return thread


@pytest.mark.parametrize("cls", [AIOKafkaConsumerThread, CommitGuardThread])
async def test_a_commit_of_partitions_revoked_meanwhile_sends_nothing_and_crashes_nothing(
    cls: type[Any],
) -> None:
    # A rebalance during a slow commit revoked every partition in it: Faust hands aiokafka an
    # empty commit, which it refuses with ValueError({}), and crashes the worker (seen in CI).
    thread = _thread(cls, {CREATED})
    assert await thread._commit({FAILED: 7}) is False
    if cls is AIOKafkaConsumerThread:
        assert [type(exc) for exc in thread.crashes] == [ValueError]  # what we guard against
        return
    assert thread.crashes == [] and thread._consumer.sent == []
    assert await thread._commit({FAILED: 7, CREATED: 3}) is True
    assert [
        {(tp.topic, tp.partition): o.offset for tp, o in sent.items()}
        for sent in thread._consumer.sent
    ] == [{("order.created", 0): 3}]
    assert thread.crashes == []


async def test_a_jump_in_delivered_offsets_is_never_counted_as_acked() -> None:
    # Faust counts the offsets it skipped in a jump (36 -> 45) as a "gap" and then as acked:
    # it would commit past 36..44, which no agent handled.
    faust = _consumer(FaustConsumer, 36, [36, 45, 46])
    faust._gap = defaultdict(_interval_tree)
    await FaustConsumer._add_gap(faust, FAILED, 37, 45)
    assert faust._new_offset(FAILED) > 37  # past 37..44
    ours = _consumer(RewindingConsumer, 36, [36, 45, 46])
    ours._gap = defaultdict(_interval_tree)
    await ours._add_gap(FAILED, 37, 45)
    assert ours._new_offset(FAILED) == 37 and ours.gaps_refused == 1


def _interval_tree() -> Any:
    from intervaltree import IntervalTree  # type: ignore[import-untyped]

    return IntervalTree()


REGAINED = TP("orderflow.order-commands", 3)  # committed at the broker, back after a rebalance
KEPT = TP("order.created", 4)  # committed, held through the rebalance
NEVER = TP("payment.failed", 5)  # nothing committed yet, held through the rebalance


def _seeking_consumer(generation: int, assigned: set[TP]) -> tuple[Any, dict[TP, int]]:
    """A consumer whose post-rebalance seek runs Faust's own ``perform_seek`` (no broker)."""
    consumer: Any = object.__new__(RewindingConsumer)
    consumer.app = SimpleNamespace(
        consumer_generation_id=generation,
        topics=SimpleNamespace(acking_topics={t.topic for t in (REGAINED, KEPT, NEVER)}),
    )
    consumer.current = assigned
    consumer.assignment = lambda: consumer.current
    consumer._read_offset = ReadOffsets()
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._acked, consumer._acked_index = defaultdict(list), defaultdict(set)
    consumer.reading_from, consumer._fetched = {}, {}
    sought: dict[TP, int] = {}

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, 0)

    async def seek_wait(positions: dict[TP, int]) -> None:
        sought.update(positions)

    consumer.earliest_offsets, consumer.seek_wait = earliest_offsets, seek_wait
    return consumer, sought


def test_a_partition_never_committed_is_read_from_its_start_after_the_seek(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer, sought = _seeking_consumer(33, {REGAINED, KEPT, NEVER})

    async def seek_to_committed(self: Any) -> dict[TP, int | None]:
        return {REGAINED: 42, KEPT: 13, NEVER: None}  # aiokafka: None when nothing is committed

    monkeypatch.setattr(FaustConsumer, "seek_to_committed", seek_to_committed)
    asyncio.run(consumer.perform_seek())
    assert sought == {NEVER: 0}
    assert consumer.reading_from == {NEVER: 0}


def test_a_seek_that_looked_up_an_earlier_assignment_reads_nothing_from_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seen under load (the churn test of test_safety_nets_at_scale): a seek of generation 32
    # (KEPT and NEVER only) looked its committed offsets up one partition at a time while
    # generation 33 gave REGAINED back (Faust's revoke forgets every committed offset). REGAINED,
    # never looked up, looked uncommitted and was read from offset 0: a stalled order's
    # PlaceOrder was handled again, its order.created republished, and the order paid without
    # the stall nudge the test waited for.
    consumer, sought = _seeking_consumer(32, {KEPT, NEVER})

    async def seek_to_committed(self: Any) -> dict[TP, int | None]:
        looked_up = {tp: {KEPT: 13}.get(tp) for tp in sorted(consumer.current)}
        consumer._committed_offset.clear()  # the revoke (eager: everything)
        consumer.current = {REGAINED, KEPT, NEVER}  # the next assignment
        consumer.app.consumer_generation_id = 33
        return looked_up

    monkeypatch.setattr(FaustConsumer, "seek_to_committed", seek_to_committed)
    asyncio.run(consumer.perform_seek())
    # Generation 33's own seek (after its table recovery) positions every partition it has.
    assert sought == {}
    assert consumer.reading_from == {}
