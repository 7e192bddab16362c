"""The 3-node KRaft cluster mode: acknowledged writes survive the loss of a broker."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from orderflow.tools.localkafka import KafkaCluster
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


def test_a_cluster_id_starting_with_a_dash_formats_and_starts(tmp_path: Path) -> None:
    # One random cluster id in 64 starts with "-"; StorageTool once took it for an option.
    (tmp_path / "cluster.id").write_text("-" + uuid.uuid4().hex[:21])
    cluster = KafkaCluster(state_dir=tmp_path, base_port=TEST_BASE_PORT + 4)
    try:
        cluster.start()
        topic = f"test.dash.{uuid.uuid4().hex[:8]}"
        asyncio.run(_create_single(cluster.bootstrap, topic))
        assert [r.value for r in read_topic(cluster.bootstrap, topic)] == [b"0"]
    finally:
        cluster.stop()


async def _create_single(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    await _produce(bootstrap, topic, range(1))
