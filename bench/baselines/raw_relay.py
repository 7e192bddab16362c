"""Baseline: a minimal aiokafka consume -> produce relay with JSON decode/encode.

Not orderflow and not Faust: the least a Python process on asyncio must do to move a small JSON
event from one topic to another (one consumer, one producer, stdlib ``json``, acks=all). It bounds
from above what any Python stream processor on this machine can relay per second.

It runs as its own process so its CPU is its own: it fills an input topic with ``--messages``
events of about 300 bytes (untimed), then relays them to an output topic and prints one JSON line:
``{"messages": N, "seconds": S, "per_s": R, "cpu_s": C}``. The time runs from the first record
read to the delivery of the last one.

    python -m bench.baselines.raw_relay --bootstrap 127.0.0.1:22092 [--messages 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

__all__ = ["fill", "main", "relay", "sample_event"]

PARTITIONS = 8


def sample_event(n: int) -> dict[str, Any]:
    """An event shaped like orderflow's ``order.created`` (about 300 bytes as JSON)."""
    order_id = f"ord_{uuid.uuid4().hex}"
    return {
        "event_id": uuid.uuid4().hex,
        "type": "order.created",
        "order_id": order_id,
        "customer_id": f"c-{n % 1000}",
        "currency": "EUR",
        "amount": 3998,
        "items": [{"sku": "SKU-1", "quantity": 2, "unit_amount": 1999}],
        "payment": {"token": "tok_visa"},
        "created_at": 1764500000000 + n,
    }


async def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        await admin.close()


async def fill(bootstrap: str, topic: str, messages: int) -> None:
    """Produce ``messages`` events onto ``topic`` (keyed by order id), as fast as aiokafka can."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=262_144
    )
    await producer.start()
    try:
        pending = []
        for n in range(messages):
            event = sample_event(n)
            pending.append(
                await producer.send(
                    topic, json.dumps(event).encode(), key=event["order_id"].encode()
                )
            )
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def relay(bootstrap: str, source: str, sink: str, messages: int) -> float:
    """Relay ``messages`` records from ``source`` to ``sink``; seconds from first read to last ack.

    Each batch of ``getmany`` is decoded, changed (a status field), encoded and sent; the send
    futures of a batch are gathered before the next batch, so every record is acknowledged.
    """
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"raw-relay-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
    )
    # Batches up to 256 KiB that wait up to 5 ms: with aiokafka's 16 KiB and no linger, send()
    # waits for a full batch's round trip every ~50 records and the relay measures that instead.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=262_144
    )
    await consumer.start()
    await producer.start()
    try:
        relayed = 0
        started: float | None = None
        while relayed < messages:
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            if started is None and batches:
                started = time.perf_counter()
            sends = []
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value)
                    event["status"] = "relayed"
                    sends.append(
                        await producer.send(sink, json.dumps(event).encode(), key=record.key)
                    )
            await asyncio.gather(*sends)
            relayed += len(sends)
        assert started is not None
        return time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()


async def _run(bootstrap: str, messages: int) -> dict[str, float]:
    suffix = uuid.uuid4().hex[:8]
    source, sink = f"bench-relay-in-{suffix}", f"bench-relay-out-{suffix}"
    await _create_topics(bootstrap, [source, sink])
    await fill(bootstrap, source, messages)
    cpu = time.process_time()
    seconds = await relay(bootstrap, source, sink, messages)
    return {
        "messages": messages,
        "seconds": seconds,
        "per_s": messages / seconds,
        "cpu_s": time.process_time() - cpu,
    }


def main(argv: list[str] | None = None) -> int:
    """Fill, relay, print the JSON line."""
    # A freshly created topic answers NotLeaderForPartition for a moment; aiokafka retries.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m bench.baselines.raw_relay")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_run(args.bootstrap, args.messages))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
