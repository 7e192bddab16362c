"""Seeks of the read-again checks on a real consumer: a partition revoked meanwhile is let go.

Regression (chaos run s4): ``read_undelivered_again``, on a timer, chose its partitions on the
app's loop, then the consumer thread sought them after a revocation had taken one away; aiokafka
raised ``IllegalStateError: No current assignment for partition payment.failed[1]`` and the
timer's exception crashed the worker.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from orderflow.consumer import CommitGuardThread


async def _topic_with_records(bootstrap: str, count: int) -> str:
    topic = f"seeks-{uuid.uuid4().hex[:8]}"
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
            await producer.send_and_wait(topic, f"v{i}".encode(), partition=i % 2)
    finally:
        await producer.stop()
    return topic


def _thread(faust_consumer: Any) -> Any:
    # The thread's seek reads only these attributes (no Faust app or group needed).
    thread: Any = object.__new__(CommitGuardThread)
    thread.consumer = faust_consumer
    thread.app = SimpleNamespace(conf=SimpleNamespace(broker_request_timeout=30.0))
    thread.log = SimpleNamespace(dev=logging.getLogger("test").debug)  # (mode's logger)
    return thread


def test_a_seek_of_a_partition_revoked_meanwhile_seeks_only_what_is_still_assigned(
    kafka_bootstrap: str,
) -> None:
    async def run() -> None:
        topic = await _topic_with_records(kafka_bootstrap, 20)
        kept = TopicPartition(topic, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([kept])  # partition 1 was revoked after the partitions were chosen
            faust_consumer = SimpleNamespace(_read_offset=defaultdict(lambda: None))
            thread = _thread(faust_consumer)
            await thread._seek_wait(consumer, {TP(topic, 0): 4, TP(topic, 1): 3})
            assert await consumer.position(kept) == 4
            assert faust_consumer._read_offset[TP(topic, 0)] == 4
            assert TP(topic, 1) not in faust_consumer._read_offset
            records = await consumer.getmany(kept, timeout_ms=5000)
            assert [r.offset for r in records[kept]][:1] == [4]
        finally:
            await asyncio.sleep(0.05)  # (see tests/kafka_helpers._stop)
            await consumer.stop()

    asyncio.run(run())
