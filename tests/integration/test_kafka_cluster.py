"""The 3-node KRaft cluster mode: acknowledged writes survive the loss of a broker."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from orderflow.localkafka import KafkaCluster
from tests.conftest import TEST_BASE_PORT
from tests.kafka_helpers import read_topic


async def _create_and_produce(bootstrap: str, topic: str, values: range) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 3, 3, topic_configs={"min.insync.replicas": "2"})]
        )
    finally:
        await admin.close()
    await _produce(bootstrap, topic, values)


async def _produce(bootstrap: str, topic: str, values: range) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=30000)
    await producer.start()
    try:
        for i in values:
            await producer.send_and_wait(topic, key=str(i).encode(), value=str(i).encode())
    finally:
        await producer.stop()


def test_three_node_cluster_keeps_acknowledged_writes_when_a_broker_is_killed(
    tmp_path: Path,
) -> None:
    cluster = KafkaCluster(state_dir=tmp_path / "cluster", nodes=3, base_port=TEST_BASE_PORT + 20)
    topic = f"test.failover.{uuid.uuid4().hex[:8]}"
    try:
        cluster.start()
        asyncio.run(_create_and_produce(cluster.bootstrap, topic, range(50)))
        cluster.stop_node(2, signal.SIGKILL)
        assert cluster.running_pid(2) is None
        asyncio.run(_produce(cluster.bootstrap, topic, range(50, 100)))
        got = sorted(int(r.value or b"-1") for r in read_topic(cluster.bootstrap, topic))
        assert got == list(range(100))
    finally:
        cluster.stop()
    assert not cluster.is_running()
