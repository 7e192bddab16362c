"""A partition whose records exist but never reach the agent is read again.

The hole check (``_new_offset``) notices missing records only once a later one is acked. A chaos
run in CI saw a worker own ``orderflow.order-commands[4]`` for three minutes after a broker
restart and a rebalance without any of its records reaching the order service: nothing acked,
nothing noticed, 22 accepted orders unplaced until the next rebalance.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.consumer.fetcher import FetchError, FetchResult
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.types import TP

from orderflow.consumer import ReadOffsets, RewindingConsumer, undelivered

COMMANDS = TP("orderflow.order-commands", 4)
CREATED = TP("order.created", 4)
CHANGELOG = TP("orderflow-OrderDB-changelog", 4)


def test_records_beyond_the_start_with_nothing_acked_or_in_flight_are_undelivered() -> None:
    starts = {COMMANDS: 74, CREATED: 70, TP("order.created", 2): 5, TP("order.created", 6): None}
    ends = {COMMANDS: 107, CREATED: 70, TP("order.created", 2): 9}
    assert undelivered(starts, ends, busy={TP("order.created", 2)}) == {COMMANDS: 74}


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _consumer(ends: dict[Any, int], committed: dict[Any, int]) -> tuple[Any, list[Any], _Clock]:
    consumer: Any = object.__new__(RewindingConsumer)
    clock = _Clock()
    seeks: list[Any] = []
    consumer.app = SimpleNamespace(
        topics=SimpleNamespace(acking_topics={"orderflow.order-commands", "order.created"})
    )
    consumer.assignment = lambda: {COMMANDS, CREATED, CHANGELOG}
    consumer._acked = defaultdict(list)
    consumer._unacked_messages = set()
    consumer._committed_offset = defaultdict(lambda: None, committed)
    consumer.reading_from, consumer._quiet, consumer._fetched = {}, {}, {}
    consumer._read_offset = ReadOffsets()
    consumer._active_partitions = {COMMANDS, CREATED}  # (Faust's: the partitions not paused)
    consumer._buffered_partitions = set()  # (Faust's: taken out of the active ones by flow control)
    consumer.clock = clock
    consumer.resumed = []
    consumer.resume_partitions = lambda tps: consumer.resumed.extend(tps)

    async def highwaters(*tps: Any) -> dict[Any, int]:
        return {tp: ends[tp] for tp in tps if tp in ends}

    async def seek_wait(positions: dict[Any, int]) -> None:
        seeks.append(positions)

    consumer.highwaters, consumer.seek_wait = highwaters, seek_wait
    return consumer, seeks, clock


def test_a_partition_left_undelivered_is_read_again_from_its_committed_offset() -> None:
    consumer, seeks, clock = _consumer({COMMANDS: 107, CREATED: 70}, {COMMANDS: 74, CREATED: 70})

    async def scenario() -> None:
        assert await consumer.read_undelivered_again() == 0  # noticed: its clock starts
        clock.now += consumer.redeliver_after - 1
        assert await consumer.read_undelivered_again() == 0  # not long enough yet
        clock.now += 2
        assert await consumer.read_undelivered_again() == 1

    asyncio.run(scenario())
    assert seeks == [{COMMANDS: 74}]  # order.created[4] is at its end: nothing to read
    assert consumer.resumed == [COMMANDS]
    assert consumer.undelivered_read_again == 1


def test_a_partition_with_records_acked_or_in_flight_is_left_alone() -> None:
    consumer, seeks, clock = _consumer({COMMANDS: 107}, {COMMANDS: 74})

    async def scenario() -> None:
        await consumer.read_undelivered_again()
        consumer._acked[COMMANDS] = [75]  # the agent is on it
        clock.now += 60
        assert await consumer.read_undelivered_again() == 0
        consumer._acked[COMMANDS] = []
        consumer._unacked_messages = [SimpleNamespace(tp=COMMANDS, acked=False)]  # in flight
        clock.now += 60
        assert await consumer.read_undelivered_again() == 0
        consumer._unacked_messages = set()
        assert await consumer.read_undelivered_again() == 0  # its clock starts again here

    asyncio.run(scenario())
    assert seeks == []


def test_the_clock_starts_afresh_when_the_worker_was_not_ready() -> None:
    consumer, seeks, clock = _consumer({COMMANDS: 107}, {COMMANDS: 74})

    async def scenario() -> None:
        await consumer.read_undelivered_again()
        clock.now += 60
        consumer.forget_undelivered()  # a recovery meanwhile: Faust held partitions back
        assert await consumer.read_undelivered_again() == 0

    asyncio.run(scenario())
    assert seeks == []


def test_records_in_the_batch_being_delivered_are_queued_not_lost() -> None:
    # 100,000 injected orders never drained: partitions whose records waited minutes in Faust's
    # batch behind other partitions' were read again every 10 s, throwing the queue away.
    consumer, seeks, clock = _consumer({COMMANDS: 107}, {COMMANDS: 74})
    consumer._read_offset.fetches = 5
    consumer._fetched[COMMANDS] = (5, 74, 106)  # fetch 5 returned 74..106: Faust delivers it

    async def scenario() -> None:
        for _ in range(10):
            assert await consumer.read_undelivered_again() == 0
            clock.now += consumer.redeliver_after
        consumer._read_offset.fetches = 6  # that batch is done, and none of them arrived
        assert await consumer.read_undelivered_again() == 0  # its clock starts
        clock.now += consumer.redeliver_after
        assert await consumer.read_undelivered_again() == 1

    asyncio.run(scenario())
    assert seeks == [{COMMANDS: 74}]


def test_records_aiokafka_holds_for_an_active_partition_are_queued_not_lost() -> None:
    consumer, seeks, clock = _consumer({COMMANDS: 107}, {COMMANDS: 74})
    fetched = object.__new__(FetchResult)  # fetched, waiting for Faust's next fetch
    _aiokafka_holds(consumer, {COMMANDS: fetched})

    async def scenario() -> None:
        for _ in range(10):
            assert await consumer.read_undelivered_again() == 0
            clock.now += consumer.redeliver_after
        consumer._active_partitions = {CREATED}  # paused: aiokafka keeps them, Faust never asks
        assert await consumer.read_undelivered_again() == 0
        clock.now += consumer.redeliver_after
        assert await consumer.read_undelivered_again() == 1

    asyncio.run(scenario())
    assert seeks == [{COMMANDS: 74}]


def _aiokafka_holds(consumer: Any, records: dict[Any, Any]) -> None:
    fetcher = SimpleNamespace(_records=records)
    consumer._thread = SimpleNamespace(_consumer=SimpleNamespace(_fetcher=fetcher))


def _read_again_after_two_looks(consumer: Any, clock: _Clock) -> int:
    async def scenario() -> int:
        await consumer.read_undelivered_again()
        clock.now += consumer.redeliver_after
        revived: int = await consumer.read_undelivered_again()
        return revived

    return asyncio.run(scenario())


def test_a_paused_partition_is_read_again_whatever_its_last_batch_held() -> None:
    # Left paused after a rebalance: Faust fetches nothing more (its fetch count stands still)
    # and dropped the batch's records: the last batch says nothing about where they are.
    consumer, seeks, clock = _consumer({COMMANDS: 107}, {COMMANDS: 74})
    consumer._fetched[COMMANDS] = (0, 74, 106)
    consumer._active_partitions = {CREATED}

    assert _read_again_after_two_looks(consumer, clock) == 1
    assert seeks == [{COMMANDS: 74}]


def test_a_batch_that_begins_past_the_head_does_not_hold_it() -> None:
    consumer, _, clock = _consumer({COMMANDS: 107}, {COMMANDS: 74})
    consumer._fetched[COMMANDS] = (0, 80, 106)  # 74..79 are not in it

    assert _read_again_after_two_looks(consumer, clock) == 1


def test_a_fetch_error_aiokafka_holds_is_not_a_queue() -> None:
    consumer, _, clock = _consumer({COMMANDS: 107}, {COMMANDS: 74})
    _aiokafka_holds(consumer, {COMMANDS: object.__new__(FetchError)})

    assert _read_again_after_two_looks(consumer, clock) == 1


def test_what_a_batch_held_is_forgotten_at_a_revocation(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, _, _ = _consumer({COMMANDS: 107}, {COMMANDS: 74})
    consumer._fetched[COMMANDS] = (0, 74, 106)
    consumer._revocations, consumer._held = 0, {}

    async def faust_s_own(self: Any, revoked: set[Any]) -> None:
        pass

    monkeypatch.setattr(AIOKafkaDriverConsumer, "on_partitions_revoked", faust_s_own)
    asyncio.run(consumer.on_partitions_revoked({COMMANDS}))

    assert COMMANDS not in consumer._fetched


def test_records_waiting_in_the_agent_s_channel_are_queued_not_lost() -> None:
    # Faust counts a record in flight only once the agent's stream takes it from its channel:
    # 2,800 payment results queued there behind the command backlog were read again (the
    # 100,000-order pipeline run).
    consumer, seeks, clock = _consumer({COMMANDS: 107}, {COMMANDS: 74})
    consumer._read_offset[COMMANDS] = 90  # 74..90 delivered into the channel

    assert _never_read_again(consumer, clock, seeks)


def test_records_held_back_by_flow_control_are_queued_not_lost() -> None:
    # Faust takes a partition out of the active ones while its agent's channel is full (the
    # order agent's, under a command backlog: payment results waited there, and were read again).
    consumer, seeks, clock = _consumer({COMMANDS: 107}, {COMMANDS: 74})
    consumer._active_partitions = {CREATED}
    consumer._buffered_partitions = {COMMANDS}

    assert _never_read_again(consumer, clock, seeks)


def _never_read_again(consumer: Any, clock: _Clock, seeks: list[Any]) -> bool:
    """Ten looks, ``redeliver_after`` apart: nothing read again."""

    async def scenario() -> int:
        revived = 0
        for _ in range(10):
            revived += await consumer.read_undelivered_again()
            clock.now += consumer.redeliver_after
        return revived

    return asyncio.run(scenario()) == 0 and seeks == []
