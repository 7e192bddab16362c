"""A fetch waiting in the consumer thread never returns records of partitions paused meanwhile.

Regression for the standby copies that missed changelog records (orderflow.consumer): table
recovery paused the active changelogs while a fetch waited with Faust's live set of active
partitions; the set emptied, aiokafka read the empty set as "every partition", and the standby
records it returned were dropped by Faust.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from aiokafka.consumer.fetcher import Fetcher
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP

from orderflow.consumer import LivePartitions, ReadOffsets, RewindingConsumer

ACTIVE = TP("orderflow-OrderDB-changelog", 1)
STANDBY = TP("orderflow-OrderDB-changelog", 5)


def _returned(partitions: Any, buffered: list[TP]) -> list[TP]:
    # aiokafka's choice of the buffered partitions a fetch returns (Fetcher.fetched_records).
    return [tp for tp in buffered if not (partitions and tp not in partitions)]


def test_aiokafka_still_reads_an_empty_partition_set_as_every_partition() -> None:
    # The rule LivePartitions guards against; if aiokafka changes it, revisit orderflow.consumer.
    assert "if partitions and tp not in partitions" in inspect.getsource(Fetcher.fetched_records)


def test_an_emptied_live_set_returns_no_standby_record() -> None:
    live = {ACTIVE}
    view = LivePartitions(live)
    live.discard(ACTIVE)  # recovery pauses the active changelog while the fetch waits
    assert _returned(live, [STANDBY]) == [STANDBY]  # what Faust's own set let through
    assert _returned(view, [STANDBY]) == []  # stays in aiokafka until resumed
    live.add(STANDBY)  # resumed: returned from then on
    assert _returned(view, [STANDBY]) == [STANDBY]


@pytest.mark.parametrize("active", [{ACTIVE}, None], ids=["some-active", "client-only"])
def test_the_consumer_thread_gets_a_live_view_of_the_active_partitions(
    monkeypatch: pytest.MonkeyPatch, active: set[TP] | None
) -> None:
    seen: list[Any] = []

    async def fake_getmany(self: Any, active_partitions: Any, timeout: float) -> dict[TP, Any]:
        seen.append(active_partitions)
        return {}

    monkeypatch.setattr(FaustConsumer, "_getmany", fake_getmany)
    consumer = object.__new__(RewindingConsumer)
    consumer._read_offset, consumer._fetched = ReadOffsets(), {}
    assert asyncio.run(consumer._getmany(active, timeout=1.0)) == {}
    if active is None:
        assert seen == [None]
    else:
        assert isinstance(seen[0], LivePartitions) and seen[0].live is active
