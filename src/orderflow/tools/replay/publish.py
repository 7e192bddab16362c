"""``replay --to-topic``: copy selected records to another topic, stamped with where they came from.

Key, value and headers are sent unchanged, partitioned by key like every orderflow producer; the
copy gets ``orderflow-origin-topic/-partition/-offset`` headers (replacing any an earlier copy
had: they always name the record this copy was read from). The live input topics are refused
without ``--force``: an agent would act on the copies (it is idempotent, but that is the point of
refusing: a debugging copy should land on a scratch topic).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable

from aiokafka import AIOKafkaProducer

from orderflow.tools.replay.errors import PublishRefused, TopicNotFound
from orderflow.tools.replay.model import (
    ORIGIN_HEADER_OFFSET,
    ORIGIN_HEADER_PARTITION,
    ORIGIN_HEADER_TOPIC,
    TopicRecord,
)
from orderflow.tools.replay.reader import topic_partitions
from orderflow.topics import INPUT_TOPICS, all_topic_names

__all__ = ["check_target", "make_producer", "origin_headers", "publish_records", "send_all"]

_ORIGIN_HEADERS = (ORIGIN_HEADER_TOPIC, ORIGIN_HEADER_PARTITION, ORIGIN_HEADER_OFFSET)
_IN_FLIGHT = 5000  # sends awaited in chunks: bounded memory, still batched by the producer


def check_target(topic: str, *, force: bool) -> None:
    """Refuse any live orderflow topic (inputs, changelogs, dead letters) unless forced."""
    if force:
        return
    if topic in INPUT_TOPICS:
        raise PublishRefused(
            f"{topic} is a live input topic: its agent would process the copies. Publish to a "
            "scratch topic, or add --force if that is what you want"
        )
    if topic in all_topic_names() or topic.endswith("-changelog"):
        raise PublishRefused(
            f"{topic} is live orderflow state (a table changelog or the dead letters): old "
            "copies would become the newest values. Publish to a scratch topic, or add --force"
        )


async def require_topics(bootstrap: str, topics: list[str]) -> None:
    """Fail before reading anything when a target topic is missing (auto-create is off)."""
    found = await topic_partitions(bootstrap, topics)
    missing = [t for t in topics if t not in found]
    if missing:
        raise TopicNotFound(
            f"topic {', '.join(missing)} does not exist; create it first "
            "(e.g. with 8 partitions, like the orderflow topics)"
        )


def origin_headers(record: TopicRecord) -> list[tuple[str, bytes | None]]:
    """The record's headers without older origin stamps, plus its own origin."""
    kept = [(k, v) for k, v in record.headers if k not in _ORIGIN_HEADERS]
    return [
        *kept,
        (ORIGIN_HEADER_TOPIC, record.topic.encode()),
        (ORIGIN_HEADER_PARTITION, str(record.partition).encode()),
        (ORIGIN_HEADER_OFFSET, str(record.offset).encode()),
    ]


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    # Idempotent producer: a retried batch is not written twice.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        client_id="orderflow-replay",
    )


async def send_all(
    producer: AIOKafkaProducer,
    items: AsyncIterable[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
) -> int:
    """Send (topic, key, value, headers) items; returns how many were acknowledged."""
    pending: list[asyncio.Future[object]] = []
    sent = 0
    async for topic, key, value, headers in items:
        pending.append(await producer.send(topic, value=value, key=key, headers=headers))
        if len(pending) >= _IN_FLIGHT:
            await asyncio.gather(*pending)
            sent += len(pending)
            pending.clear()
    await asyncio.gather(*pending)
    return sent + len(pending)


async def publish_records(
    bootstrap: str, records: AsyncIterable[TopicRecord], to_topic: str, *, force: bool = False
) -> int:
    """Copy ``records`` to ``to_topic``; returns the number published."""
    check_target(to_topic, force=force)
    await require_topics(bootstrap, [to_topic])

    async def items() -> AsyncGenerator[
        tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]], None
    ]:
        async for record in records:
            yield to_topic, record.key, record.value, origin_headers(record)

    producer = make_producer(bootstrap)
    await producer.start()
    try:
        return await send_all(producer, items())
    finally:
        await producer.stop()
