"""Helpers for the replay tests: topics, a producer that reports where records landed, events,
and the debugging CLI run in-process (stdout/stderr captured)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from orderflow.cli import run_async
from orderflow.domain.events import (
    OrderCreated,
    PaymentCompleted,
    PaymentFailed,
    PlaceOrder,
    rfc3339,
)
from orderflow.domain.payment import DECLINE_MESSAGES
from orderflow.domain.validation import LineItem
from orderflow.topics import all_topic_names
from orderflow.wire import encode_event
from tests.harness import TEST_CLIENT

__all__ = [
    "CliResult",
    "Out",
    "Produced",
    "cli",
    "completed",
    "created",
    "dead_letter",
    "end_offsets",
    "ensure_topics",
    "failed",
    "new_order_id",
    "place",
    "produce",
]

PARTITIONS = 8
T_NOW = rfc3339(time.time())


def new_order_id() -> str:
    """A fresh order id in the web API's format (GET /orders/{id} checks it); tests share the
    topics and tell their records apart by it."""
    return "ord_" + uuid.uuid4().hex


async def ensure_topics(bootstrap: str, names: Sequence[str], partitions: int = PARTITIONS) -> None:
    """Create the topics that are missing (auto-create is off on the test broker)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                name,
                partitions,
                1,
                topic_configs={"cleanup.policy": "compact"} if "changelog" in name else {},
            )
            for name in names
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


async def ensure_orderflow_topics(bootstrap: str) -> None:
    await ensure_topics(bootstrap, all_topic_names())


async def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """Records ever written to each topic (sum of its end offsets): "was anything produced?"."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await asyncio.sleep(0.05)  # see tests.kafka_helpers.stop_consumer
        await consumer.stop()
    return {topic: sum(n for tp, n in ends.items() if tp.topic == topic) for topic in topics}


@dataclass(frozen=True)
class Out:
    """A record to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Produced:
    """Where a produced record landed."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def ident(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


async def produce(bootstrap: str, records: Sequence[Out]) -> list[Produced]:
    """Send in order, one at a time (so offsets follow the given order per partition)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    out = []
    try:
        for r in records:
            meta = await producer.send_and_wait(
                r.topic,
                value=r.value,
                key=r.key,
                headers=list(r.headers),
                timestamp_ms=r.timestamp_ms,
            )
            out.append(
                Produced(
                    r.topic, meta.partition, meta.offset, meta.timestamp, r.key, r.value, r.headers
                )
            )
    finally:
        await producer.stop()
    return out


ITEMS = (LineItem("sku-1", 2, 1250),)
AMOUNT = 2500


def place(order_id: str, token: str = "tok_visa") -> bytes:
    # Placed by the test client, as the API does today (an order with no owner is 404 to all).
    return encode_event(
        PlaceOrder(
            order_id,
            f"req-{order_id}",
            f"fp-{order_id}",
            "cust-1",
            "EUR",
            ITEMS,
            token,
            T_NOW,
            TEST_CLIENT,
        )
    )


def created(order_id: str, token: str = "tok_visa", amount: int = AMOUNT) -> bytes:
    return encode_event(
        OrderCreated(order_id, "cust-1", "EUR", amount, ITEMS, token, T_NOW, TEST_CLIENT)
    )


def completed(order_id: str, amount: int = AMOUNT) -> bytes:
    return encode_event(PaymentCompleted(order_id, amount, "EUR", f"ch_{order_id}", T_NOW))


def failed(order_id: str, code: str = "card_declined", amount: int = AMOUNT) -> bytes:
    return encode_event(
        PaymentFailed(order_id, amount, "EUR", DECLINE_MESSAGES[code], T_NOW, f"ch_{order_id}")
    )


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured output of one in-process command."""

    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


async def cli(bootstrap: str, *args: str) -> CliResult:
    """``orderflow <args> --bootstrap B`` in this process (stdout is not a terminal: JSON lines).

    The broker is always passed explicitly: the environment's default would be another one.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = await run_async([*args, "--bootstrap", bootstrap])
    return CliResult(code, out.getvalue(), err.getvalue())


def dead_letter(
    order_id: str,
    value: bytes,
    source_topic: str,
    reason: str,
    *,
    source_offset: int = 0,
    original_headers: tuple[tuple[str, bytes], ...] = (),
    error_type: str = "",
) -> Out:
    """A dead letter laid out as ``orderflow.agents.dead_letters`` writes one."""
    from orderflow.tools.replay.model import key_partition
    from orderflow.topics import DEAD_LETTERS
    from orderflow.wire.dead_letters import dead_letter_headers

    key = order_id.encode()
    headers = tuple(
        dead_letter_headers(
            reason=reason,
            error_type=error_type,
            topic=source_topic,
            partition=key_partition(key, PARTITIONS),
            offset=source_offset,
            failed_at=T_NOW,
            original=original_headers,
        )
    )
    return Out(DEAD_LETTERS, key, value, headers)
