"""A seek back to a hole brings its records to the agent, whatever Faust was delivering then.

Regression (chaos run s4): ``orderflow.order-commands[2]`` held its commits at offset 353 (first
acked: 406) and was sought back to 353 three times, 10 s apart, without records 353..405 ever
reaching the agent. Faust's delivery loop (``Consumer._drain_messages``) was in the middle of a
batch fetched before the seek: after each of those records it writes the record's offset as the
partition's read offset, over the seek's 353, and then drops every record fetched from 353 as
"already delivered" (offset below the read offset), without a word.

Faust's own loop runs here, on our consumer, with the fetches played by the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.types import TP

from orderflow.topics import ORDER_COMMANDS
from tests.unit.builders import unstarted_flow

COMMANDS = TP(ORDER_COMMANDS, 2)


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        COMMANDS.topic, COMMANDS.partition, offset, 0, 0, b"k", b"v", None, 1, 1, []
    )


async def _deliver(
    consumer: Any,
    monkeypatch: pytest.MonkeyPatch,
    batches: list[list[int]],
    on_delivery: Callable[[int], Awaitable[None]],
) -> list[int]:
    """Faust's delivery loop over ``batches`` (one per fetch); the offsets the agent got."""
    delivered: list[int] = []
    fetcher: Any = SimpleNamespace(_stopped=asyncio.Event())
    pending = list(batches)

    async def fetch(self: Any, active_partitions: Any, timeout: float) -> dict[TP, Any]:
        # The consumer thread's fetch (aiokafka's getmany), under Faust's and ours.
        if not pending:
            fetcher._stopped.set()  # nothing more to fetch: the loop ends
            return {}
        return {COMMANDS: [_record(offset) for offset in pending.pop(0)]}

    async def callback(message: Any) -> None:
        delivered.append(message.offset)
        await on_delivery(message.offset)

    monkeypatch.setattr(AIOKafkaDriverConsumer, "_getmany", fetch)
    consumer.callback = callback
    await asyncio.wait_for(FaustConsumer._drain_messages(consumer, fetcher), timeout=30)
    return delivered


def _seek_back_at_406(consumer: Any) -> Callable[[int], Awaitable[None]]:
    """At the delivery of 406, the hole check's seek back to 353 (while 406.. are delivered)."""

    async def seek_back(offset: int) -> None:
        if offset == 406:
            await consumer._seek_back(COMMANDS, 353)

    return seek_back


@pytest.fixture
async def consumer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # Built by Faust as in a worker (not started), on the test's loop (mode's events bind to it).
    consumer: Any = unstarted_flow(tmp_path).app.consumer
    monkeypatch.setattr(consumer, "assignment", lambda: {COMMANDS})

    async def seek_wait(positions: dict[Any, int]) -> None:
        # What the consumer thread does (AIOKafkaConsumerThread._seek_wait): aiokafka fetches
        # from the new position; Faust's read offset is set to it.
        for tp, offset in positions.items():
            consumer._read_offset[tp] = offset

    monkeypatch.setattr(consumer, "seek_wait", seek_wait)
    monkeypatch.setattr(consumer, "highwater", lambda tp: 1000)
    consumer._set_active_tps({COMMANDS})
    consumer.resume_flow()
    return consumer


async def test_a_hole_sought_back_during_a_batch_reaches_the_agent(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer._read_offset[COMMANDS] = 405  # delivered up to 405 (353..405 lost on the way)

    # The fetch before the seek returned 406..409; the next one starts at the seek's 353.
    delivered = await _deliver(
        consumer,
        monkeypatch,
        [[406, 407, 408, 409], [353, 354, 355, 406, 407]],
        _seek_back_at_406(consumer),
    )
    assert delivered[:4] == [406, 407, 408, 409]  # the batch fetched before the seek
    assert delivered[4:] == [353, 354, 355, 406, 407]  # the hole, read again


async def test_records_read_again_do_not_log_the_batch_before_them_as_skipped(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer._read_offset[COMMANDS] = 405

    await _deliver(
        consumer, monkeypatch, [[406, 407, 408], [353, 354]], _seek_back_at_406(consumer)
    )
    assert consumer.gaps_refused == 0  # 407 and 408 after the seek to 353 are no jump


async def test_a_read_again_that_lands_past_its_offset_still_moves_on(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer._read_offset[COMMANDS] = 405

    # Retention deleted 353..359 meanwhile: the fetch after the seek starts at the log start.
    delivered = await _deliver(
        consumer, monkeypatch, [[406, 407], [360, 361], [362, 407]], _seek_back_at_406(consumer)
    )
    assert delivered == [406, 407, 360, 361, 362, 407]
    assert consumer._read_offset[COMMANDS] == 407


async def test_a_seek_to_the_committed_offset_after_a_rebalance_replaces_a_read_again(
    consumer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer._read_offset[COMMANDS] = 405

    async def seek_back_then_revoked(offset: int) -> None:
        if offset == 406:
            await consumer._seek_back(COMMANDS, 353)
            consumer._read_offset.pop(COMMANDS)  # revoked (Faust forgets the read offset),
            consumer._read_offset.update({COMMANDS: 300})  # assigned again, sought to 300

    # 406 was in the agent's hands through the rebalance: its offset must not hide 300.
    delivered = await _deliver(consumer, monkeypatch, [[406], [300, 301]], seek_back_then_revoked)
    assert delivered == [406, 300, 301]
    assert consumer._read_offset.rewinds == {}
