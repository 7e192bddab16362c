"""The foundation: the project's own broker works, and a worker starts, is ready, and stops."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from orderflow.topics import all_topic_names
from tests.harness import http_json, start_sandbox, start_worker
from tests.kafka_helpers import create_topic


async def _round_trip(bootstrap: str) -> list[tuple[bytes, bytes]]:
    topic = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic, partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[tuple[bytes, bytes]] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < 10:
                async for message in consumer:
                    got.append((message.key, message.value))
                    if len(got) == 10:
                        break
    finally:
        await consumer.stop()
    return got


async def test_produce_consume_round_trip_on_the_real_broker(kafka_bootstrap: str) -> None:
    got = await _round_trip(kafka_bootstrap)
    assert sorted(got) == sorted((f"k{i}".encode(), f"v{i}".encode()) for i in range(10))


def test_worker_starts_creates_topics_and_stops_cleanly(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    worker = start_worker(tmp_path, kafka_bootstrap, sandbox.meta["url"])
    try:
        status, body, _ = http_json("GET", f"{worker.meta['url']}/ready")
        # Which gateway: scheme://host:port only, never its key.
        gateway = {"gateway": "http", "gateway_url": sandbox.meta["url"]}
        assert (status, body) == (200, {"status": "ready", **gateway})
        partitions = asyncio.run(_partition_counts(kafka_bootstrap))
        for topic in all_topic_names():
            assert partitions.get(topic) == 8, f"{topic}: {partitions.get(topic)} partitions"
    finally:
        code = worker.stop()
        sandbox.stop()
    assert code == 0, worker.log_tail()
    assert not worker.alive


async def _partition_counts(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(all_topic_names())
        return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}
    finally:
        await admin.close()
