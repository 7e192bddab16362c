"""CommandLog reads a range of a partition straight from the broker, in order, and its end."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from orderflow.agents.progress import CommandLog


async def _topic_with_records(bootstrap: str, count: int) -> str:
    topic = f"command-log-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(count):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=b"k", partition=1)
    finally:
        await producer.stop()
    return topic


def test_a_range_is_read_in_order_and_the_end_is_known(kafka_bootstrap: str) -> None:
    async def run() -> None:
        topic = await _topic_with_records(kafka_bootstrap, 30)
        log = CommandLog([kafka_bootstrap], topic)
        try:
            assert await log.end(1) == 30
            assert await log.end(0) == 0
            records = await log.read(1, 12, 20)
            assert [r.offset for r in records] == list(range(12, 20))
            assert [r.value for r in records] == [f"v{i}".encode() for i in range(12, 20)]
            # Twice in a row (the consumer is assigned per read): the same answer.
            assert [r.offset for r in await log.read(1, 0, 3)] == [0, 1, 2]
        finally:
            await log.close()

    asyncio.run(run())
