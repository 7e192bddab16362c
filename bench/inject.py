"""Writing orders straight into Kafka, bypassing HTTP: the pipeline's ingress and OrderDB's changelog.

``inject_commands`` produces PlaceOrder commands onto ``orderflow.order-commands`` exactly as
``POST /orders`` does (``orderflow.web.orders``): a fresh ``ord_<uuid4 hex>`` id (an order
without an Idempotency-Key), the value encoded by ``orderflow.wire.encode_event``, keyed by the
order id's UTF-8 bytes on the partition the default (murmur2) partitioner gives it
(``orderflow.tables.scan.order_partition``), ``acks=all``.

``fill_order_changelog`` writes terminal (PAID) orders, encoded by
``orderflow.wire.order_to_bytes``, straight into the OrderDB changelog, on the partition the
order's events would have used: what a worker restarting after a million orders finds there.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from orderflow.domain.events import PlaceOrder, rfc3339
from orderflow.domain.order import Order, OrderStatus
from orderflow.domain.validation import LineItem
from orderflow.tables.scan import order_partition
from orderflow.topics import ORDER_CHANGELOG, ORDER_COMMANDS
from orderflow.wire import encode_event, order_to_bytes
from tests.kafka_helpers import partitions_of

__all__ = [
    "Produced",
    "build_commands",
    "fill_order_changelog",
    "inject_commands",
    "paid_order",
    "place_order_command",
    "topic_partitions",
]

# Producer settings for a bulk load: records go in batches built here (aiokafka's batch API, the
# fastest it offers: no future per record), acked by every in-sync replica like the web view's
# sends. No compression: the worker's own producer uses none, so a changelog filled here looks
# like one a worker wrote.
_BATCH_BYTES = 512 * 1024  # below the broker's default message.max.bytes (1 MiB)
_IN_FLIGHT_BATCHES = 64  # batches awaited in slices of this many


@dataclass(frozen=True)
class Produced:
    """What a bulk producer did: how many records, in how long, and the order ids (or a sample)."""

    records: int
    seconds: float
    order_ids: list[str]
    values: list[bytes] = field(default_factory=list)  # the kept ids' values, when asked

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def place_order_command(order_id: str, client_id: str, occurred_at: str) -> bytes:
    """The PlaceOrder a POST without an Idempotency-Key sends for a one-item ``tok_visa`` order."""
    command = PlaceOrder(
        order_id,
        str(uuid.uuid4()),  # request id
        uuid.uuid4().hex,  # fingerprint: only compared with a replay of the same key
        "c-bench",
        "EUR",
        (LineItem("SKU-1", 2, 1999),),
        "tok_visa",
        occurred_at,
        client_id,
        False,
    )
    return encode_event(command)


def paid_order(order_id: str, client_id: str, at: str, index: int) -> Order:
    """A PAID order as the order service stores it once its payment completed."""
    quantity = 1 + index % 5
    return Order(
        order_id=order_id,
        customer_id=f"c-{index % 1000}",
        currency="EUR",
        items=(LineItem("SKU-1", quantity, 1999), LineItem("SKU-2", 1, 500)),
        amount=quantity * 1999 + 500,
        status=OrderStatus.PAID,
        created_at=at,
        updated_at=at,
        fingerprint=uuid.uuid4().hex + uuid.uuid4().hex,
        request_id=str(uuid.uuid4()),
        charge_id="ch_" + uuid.uuid4().hex,
        command_offset=index,
        client_id=client_id,
        captured=quantity * 1999 + 500,
    )


async def topic_partitions(bootstrap: str, topic: str) -> int:
    """How many partitions ``topic`` has (0 when it does not exist)."""
    return len(await partitions_of(bootstrap, topic))


async def _produce(
    bootstrap: str,
    topic: str,
    partitions: int,
    records: Iterator[tuple[str, bytes]],
    keep_every: int = 1,
    keep_values: bool = False,
) -> Produced:
    """Send every (order id, value), keyed by the order id on its murmur2 partition, as fast as
    aiokafka allows; returns once all are acked. Keeps every ``keep_every``-th order id (and
    its value with ``keep_values``)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=_BATCH_BYTES
    )
    await producer.start()
    order_ids: list[str] = []
    values: list[bytes] = []
    count = 0
    try:
        started = time.perf_counter()
        open_batches: dict[int, Any] = {}
        sent: list[asyncio.Future[Any]] = []

        async def flush(partition: int) -> None:
            batch = open_batches.pop(partition)
            sent.append(await producer.send_batch(batch, topic, partition=partition))
            if len(sent) >= _IN_FLIGHT_BATCHES:
                await asyncio.gather(*sent)
                sent.clear()

        for order_id, value in records:
            if count % keep_every == 0:
                order_ids.append(order_id)
                if keep_values:
                    values.append(value)
            count += 1
            key = order_id.encode()
            partition = order_partition(order_id, partitions)
            batch = open_batches.get(partition)
            if batch is None:
                batch = open_batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                await flush(partition)  # full: send it, start the next one with this record
                batch = open_batches[partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for partition in list(open_batches):
            await flush(partition)
        await asyncio.gather(*sent)
        seconds = time.perf_counter() - started
    finally:
        await producer.stop()
    return Produced(count, seconds, order_ids, values)


def build_commands(count: int, client_id: str) -> list[tuple[str, bytes]]:
    """``count`` (order id, PlaceOrder bytes), built ahead so that producing them measures
    aiokafka and the broker, not the building."""
    at = rfc3339(time.time())
    commands = []
    for _ in range(count):
        order_id = "ord_" + uuid.uuid4().hex
        commands.append((order_id, place_order_command(order_id, client_id, at)))
    return commands


async def inject_commands(bootstrap: str, commands: list[tuple[str, bytes]]) -> Produced:
    """Produce the built commands onto the command topic (which the worker created)."""
    partitions = await topic_partitions(bootstrap, ORDER_COMMANDS)
    if partitions == 0:
        raise RuntimeError(f"{ORDER_COMMANDS} does not exist: start a worker first")
    return await _produce(bootstrap, ORDER_COMMANDS, partitions, iter(commands))


async def fill_order_changelog(bootstrap: str, count: int, client_id: str) -> Produced:
    """``count`` PAID orders straight into the OrderDB changelog (which the worker created)."""
    partitions = await topic_partitions(bootstrap, ORDER_CHANGELOG)
    if partitions == 0:
        raise RuntimeError(f"{ORDER_CHANGELOG} does not exist: start a worker first")
    at = rfc3339(time.time())

    def orders() -> Iterator[tuple[str, bytes]]:
        for index in range(count):
            order_id = "ord_" + uuid.uuid4().hex
            yield order_id, order_to_bytes(paid_order(order_id, client_id, at, index))

    # Only a sample is kept (a million ids would be ~100 MB here), with the values written.
    return await _produce(
        bootstrap,
        ORDER_CHANGELOG,
        partitions,
        orders(),
        keep_every=max(1, count // 1000),
        keep_values=True,
    )
