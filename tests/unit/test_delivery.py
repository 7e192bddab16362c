"""A batch is done only when what it produced is delivered; failed records are sent again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from orderflow.delivery import DeliveringTopic, run_batch
from orderflow.tables.stream_context import bind_event


class Message:
    def __init__(self, partition: int) -> None:
        self.topic, self.partition, self.offset = "order.created", partition, 0


class Event:
    def __init__(self, partition: int) -> None:
        self.message = Message(partition)


class FlakyTopic:
    """Fails the delivery of the first ``failures`` records, then delivers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[bytes] = []

    async def send(self, *, key: bytes, value: bytes, headers: Any = None) -> Any:
        self.sent.append(value)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failures > 0:
            self.failures -= 1
            future.set_exception(KafkaTimeoutError())
        else:
            future.set_result(None)
        return future


def _publisher(topic: DeliveringTopic, value: bytes) -> Any:
    async def handle(events: Sequence[Any]) -> None:
        for event in events:
            bind_event(event)
            await topic.send(key=b"o1", value=value)

    return handle


async def test_a_record_that_failed_is_sent_again_until_delivered_before_the_batch_ends() -> None:
    raw = FlakyTopic(failures=2)
    deliveries = await run_batch([Event(3)], _publisher(DeliveringTopic(raw), b"v"),
                                 lambda e: True)  # fmt: skip
    assert raw.sent == [b"v", b"v", b"v"]
    assert deliveries.failures == 2 and deliveries.pending == []


async def test_a_delivered_batch_sends_nothing_again() -> None:
    raw = FlakyTopic(failures=0)
    deliveries = await run_batch([Event(3)], _publisher(DeliveringTopic(raw), b"v"),
                                 lambda e: True)  # fmt: skip
    assert raw.sent == [b"v"] and deliveries.failures == 0


async def test_a_record_of_a_partition_that_moved_away_is_not_sent_again() -> None:
    raw = FlakyTopic(failures=1)
    deliveries = await run_batch([Event(3)], _publisher(DeliveringTopic(raw), b"v"),
                                 lambda e: False)  # fmt: skip
    assert raw.sent == [b"v"]  # the new owner handles the event again
    assert deliveries.failures == 1


async def test_sends_outside_a_batch_are_not_awaited_by_anyone() -> None:
    raw = FlakyTopic(failures=1)
    future = await DeliveringTopic(raw).send(key=b"o1", value=b"timer")
    assert raw.sent == [b"timer"] and future.exception() is not None
