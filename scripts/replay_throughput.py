#!/usr/bin/env python
"""How fast does `replay` read? Produce N small events to a scratch topic, then time reading them.

    .venv/bin/python scripts/replay_throughput.py --bootstrap 127.0.0.1:29092 [-n 100000]

Three figures, each over the same N records:
  reader   orderflow.tools.replay.reader.read_records alone (fetch + filter, no output)
  cli      `orderflow replay --topic T` as a process, JSON lines to /dev/null (what `| jq` gets)
  capture  `orderflow replay --topic T --capture FILE` as a process (SQLite writes)
The scratch topic is deleted at the end (unless --keep). Not a test: a measurement to report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from orderflow.tools.replay.model import Selection
from orderflow.tools.replay.reader import read_records


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, count: int) -> float:
    """Send ``count`` events of about 150 bytes, keyed by 1000 order ids; returns seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=256 * 1024)  # fmt: skip
    await producer.start()
    began = time.perf_counter()
    try:
        pending = []
        for i in range(count):
            order_id = f"ord_{i % 1000:032d}"
            value = orjson.dumps({"event_type": "order.created", "order_id": order_id,
                                  "amount": i, "currency": "EUR"})  # fmt: skip
            pending.append(await producer.send(topic, value=value, key=order_id.encode()))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - began


async def time_reader(bootstrap: str, topic: str) -> tuple[int, float]:
    began = time.perf_counter()
    count = 0
    records = read_records(bootstrap, Selection(), [topic])
    async with contextlib.aclosing(records):
        async for _ in records:
            count += 1
    return count, time.perf_counter() - began


def time_process(args: list[str]) -> float:
    began = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        subprocess.run(args, stdout=devnull, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:29092")
    parser.add_argument("-n", "--count", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the scratch topic")
    args = parser.parse_args()
    topic = f"replay-bench.{uuid.uuid4().hex[:8]}"
    orderflow = str(Path(sys.executable).with_name("orderflow"))
    asyncio.run(create_topic(args.bootstrap, topic, args.partitions))
    try:
        took = asyncio.run(produce(args.bootstrap, topic, args.count))
        print(f"produced {args.count} events to {topic} in {took:.2f}s")
        count, took = asyncio.run(time_reader(args.bootstrap, topic))
        assert count == args.count, f"read {count} of {args.count}"
        print(f"reader : {count} events in {took:.2f}s = {count / took:,.0f} events/s")
        base = [orderflow, "replay", "--topic", topic, "--bootstrap", args.bootstrap]
        took = time_process([*base, "--format", "json"])
        print(f"cli    : {count} events in {took:.2f}s = {count / took:,.0f} events/s "
              "(JSON lines to /dev/null, process start included)")  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            took = time_process([*base, "--capture", str(Path(tmp) / "bench.db")])
        print(f"capture: {count} events in {took:.2f}s = {count / took:,.0f} events/s "
              "(SQLite capture file, process start included)")  # fmt: skip
    finally:
        if not args.keep:
            asyncio.run(delete_topic(args.bootstrap, topic))
    return 0


if __name__ == "__main__":
    sys.exit(main())
