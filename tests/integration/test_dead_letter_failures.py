"""A dead letter the broker refuses: given up loudly, never a stalled agent; /health tells a stuck one.

Both tests change the shared dead-letter topic (its size limit, its existence) and put it back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from orderflow.topics import DEAD_LETTERS, ORDER_CREATED
from tests.harness import (
    ManagedProcess,
    http_json,
    key_order_id,
    poll_until,
    start_sandbox,
    start_worker,
)
from tests.kafka_helpers import partitions_of, read_topic
from tests.orders_client import get_terminal, order_body, place

_STUCK_AFTER = 3.0


@pytest.fixture(scope="module")
def dlq_stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    tmp = tmp_path_factory.mktemp("dlq")
    sandbox = start_sandbox(tmp)
    try:
        worker = start_worker(
            tmp,
            kafka_bootstrap,
            sandbox.meta["url"],
            name="dlq",
            extra={"ORDERFLOW_STUCK_AFTER": str(_STUCK_AFTER)},
        )
        try:
            yield worker
        finally:
            worker.stop()
    finally:
        sandbox.stop()


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    return admin


async def _set_max_message_bytes(bootstrap: str, value: str | None) -> None:
    admin = await _admin(bootstrap)
    try:
        # None restores the broker default (1 MiB) for the topic.
        configs = {"max.message.bytes": value or "1048588"}
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, DEAD_LETTERS, configs=configs)]
        )
    finally:
        await admin.close()


async def _produce(bootstrap: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(ORDER_CREATED, key=key, value=value)
    finally:
        await producer.stop()


def _tried_dead_letter(worker: ManagedProcess) -> bool:
    log = worker.log_tail(200_000)
    return "dead letter not delivered" in log or "dead letter given up" in log


def _stuck_health(worker: ManagedProcess) -> dict[str, Any] | None:
    status, body = _health(worker)
    return body if status == 503 else None


def _health(worker: ManagedProcess) -> tuple[int, dict[str, Any]]:
    status, body, _ = http_json("GET", f"{worker.meta['url']}/health", timeout=10)
    return status, body


def test_a_dead_letter_too_large_for_its_topic_is_given_up_and_the_partition_moves_on(
    dlq_stack: ManagedProcess, kafka_bootstrap: str
) -> None:
    worker = dlq_stack
    key = f"after-poison-{uuid.uuid4()}"
    order_id = key_order_id(key)
    # Poison keyed like the next order (same partition), bigger than the dead-letter topic takes.
    poison = b"\xff not json " + b"x" * 20_000
    asyncio.run(_set_max_message_bytes(kafka_bootstrap, "10000"))
    try:
        asyncio.run(_produce(kafka_bootstrap, order_id.encode(), poison))
        poll_until(lambda: _tried_dead_letter(worker), 60, 0.3, "a dead-letter attempt")
        placed = place(worker.meta["url"], order_body(), key)
        assert placed["order_id"] == order_id
        assert get_terminal(worker.meta["url"], order_id, timeout=60)["status"] == "PAID"
    finally:
        asyncio.run(_set_max_message_bytes(kafka_bootstrap, None))
    status, health = _health(worker)
    assert status == 200, health
    assert health["undeliverable_dead_letters"] == 1, health
    log = worker.log_tail(200_000)
    # Logged with its coordinates and sizes, never its bytes.
    assert "dead letter given up" in log and f"{len(poison)} bytes" in log, log[-3000:]
    assert "xxxxxxxxxx" not in log


async def _delete_topic(bootstrap: str) -> None:
    admin = await _admin(bootstrap)
    try:
        await admin.delete_topics([DEAD_LETTERS])
    finally:
        await admin.close()


async def _create_topic(bootstrap: str, partitions: int) -> None:
    admin = await _admin(bootstrap)
    try:
        await admin.create_topics([NewTopic(DEAD_LETTERS, partitions, 1)])
    finally:
        await admin.close()


def _dead_letter_topic_exists(bootstrap: str) -> bool:
    return bool(asyncio.run(partitions_of(bootstrap, DEAD_LETTERS)))


def test_health_reports_an_agent_stuck_on_an_unreachable_dead_letter_topic_until_it_recovers(
    dlq_stack: ManagedProcess, kafka_bootstrap: str
) -> None:
    worker = dlq_stack
    assert _health(worker)[0] == 200
    partitions = len(asyncio.run(partitions_of(kafka_bootstrap, DEAD_LETTERS)))
    key = f"stuck-{uuid.uuid4()}".encode()
    asyncio.run(_delete_topic(kafka_bootstrap))
    try:
        poll_until(
            lambda: not _dead_letter_topic_exists(kafka_bootstrap),
            30,
            0.3,
            "the dead-letter topic to be gone",
        )
        asyncio.run(_produce(kafka_bootstrap, key, b"not json at all"))
        body = poll_until(lambda: _stuck_health(worker), 60, 0.5, "/health to answer 503")
        stuck = body["stuck"]
        assert isinstance(stuck, list) and stuck, body
        first = stuck[0]
        assert first["agent"] == "payment-service" and first["topic"] == ORDER_CREATED, body
        assert isinstance(first["partition"], int) and isinstance(first["since"], str), body
        assert first["seconds"] >= _STUCK_AFTER, body
    finally:
        if not _dead_letter_topic_exists(kafka_bootstrap):
            poll_until(
                lambda: _try_create(kafka_bootstrap, partitions),
                60,
                0.5,
                "the dead-letter topic to be created again",
            )
    # The dead letter goes through once the topic is back, and health is green again.
    poll_until(
        lambda: any(r.key == key for r in read_topic(kafka_bootstrap, DEAD_LETTERS)),
        90,
        0.5,
        "the dead letter to arrive",
    )
    poll_until(lambda: _health(worker)[0] == 200, 60, 0.5, "/health to answer 200 again")


def _try_create(bootstrap: str, partitions: int) -> bool:
    try:
        asyncio.run(_create_topic(bootstrap, partitions))
    except Exception:  # still being deleted: try again
        return _dead_letter_topic_exists(bootstrap)
    return True
