"""Reading topics in tests with a plain aiokafka consumer (no group: never moves any offset)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

__all__ = [
    "Record",
    "create_topic",
    "end_offsets_total",
    "handled_place_command",
    "partitions_of",
    "read_topic",
    "topic_with_records",
    "wait_for_records",
]


@dataclass(frozen=True)
class Record:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int = -1  # the record's timestamp, epoch milliseconds


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The topic's partition numbers (empty when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(
        p["partition"] for t in described if t["error_code"] == 0 for p in t["partitions"]
    )


async def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    """Create a topic of replication factor 1 (the local broker does not auto-create them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def topic_with_records(
    bootstrap: str,
    prefix: str,
    count: int,
    partition_of: Callable[[int], int],
    key: bytes | None = None,
) -> str:
    """A new topic of 2 partitions named ``prefix-<random>`` holding ``count`` values
    ``v0``, ``v1``, ...: value i on partition ``partition_of(i)``, with ``key``."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(
                topic, f"v{i}".encode(), key=key, partition=partition_of(i)
            )
    finally:
        await producer.stop()
    return topic


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    # aiokafka cancels a background task at stop; one that never ran yet re-raises the
    # cancellation (seen with very short-lived consumers): let it start first.
    await asyncio.sleep(0.05)
    await consumer.stop()


async def _read(bootstrap: str, topic: str) -> list[Record]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        partitions = await partitions_of(bootstrap, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Record] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batch.items():
                for m in messages:
                    if m.offset < ends[tp]:
                        out.append(
                            Record(
                                m.topic,
                                m.partition,
                                m.offset,
                                m.key,
                                m.value,
                                tuple(m.headers or ()),
                                m.timestamp,
                            )
                        )
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await stop_consumer(consumer)


def read_topic(bootstrap: str, topic: str) -> list[Record]:
    """Every record of ``topic`` up to its end offsets at the time of the call."""
    return asyncio.run(_read(bootstrap, topic))


def wait_for_records(
    bootstrap: str,
    topic: str,
    match: Callable[[Record], bool],
    count: int = 1,
    timeout: float = 30.0,
) -> list[Record]:
    """Poll the topic until ``count`` records match (fails at the deadline)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in read_topic(bootstrap, topic) if match(r)]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{len(found)}/{count} matching records on {topic}"
            return found
        time.sleep(0.3)


async def _end_offsets(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = await partitions_of(bootstrap, topic)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        await stop_consumer(consumer)


def end_offsets_total(bootstrap: str, topic: str) -> int:
    """The number of records ever written to ``topic`` (sum of end offsets)."""
    return asyncio.run(_end_offsets(bootstrap, topic))


async def _handled_place_command(bootstrap: str, order_id: str, token: str) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from orderflow.domain.events import PlaceOrder, rfc3339
    from orderflow.domain.validation import LineItem
    from orderflow.topics import APP_ID, ORDER_COMMANDS
    from orderflow.wire import encode_event

    command = PlaceOrder(
        order_id,
        "request",
        "fingerprint",
        "c-1",
        "EUR",
        (LineItem("SKU-1", 1, 500),),
        token,
        rfc3339(0),
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            ORDER_COMMANDS, encode_event(command), key=order_id.encode()
        )
    finally:
        await producer.stop()
    tp = TopicPartition(ORDER_COMMANDS, sent.partition)
    for _ in range(60):  # a member of the group that is going away refuses the commit a moment
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=APP_ID, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            committed = await consumer.committed(tp)
            if committed is None or committed <= sent.offset:
                await consumer.commit({tp: sent.offset + 1})
            return int(sent.offset)
        except KafkaError:
            await asyncio.sleep(1)
        finally:
            await stop_consumer(consumer)
    raise AssertionError(f"could not commit the order service's offset on {tp}")


def handled_place_command(bootstrap: str, order_id: str, token: str = "tok_visa") -> int:
    """Write a PlaceOrder (500 EUR) as one the order service handled already: the orderflow
    group's committed offset moves past it. Returns its offset (``Order.command_offset``), where
    the stall nudge finds the token of an order stored in OrderDB and never published."""
    return asyncio.run(_handled_place_command(bootstrap, order_id, token))
