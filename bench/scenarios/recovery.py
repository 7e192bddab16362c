"""Scenario 7, recovery: a worker restarted with a million orders in OrderDB, time to ``/ready``.

Filling OrderDB through the pipeline would take hours here, so the orders are written straight
into the OrderDB changelog (``bench.inject.fill_order_changelog``): valid PAID values encoded by
``orderflow.wire.order_to_bytes``, each on its order id's murmur2 partition. The changelog is the
one the worker creates (partitions, compaction): a first worker start on the fresh broker creates
every topic, and is stopped before the fill. PaymentDB stays empty (only OrderDB is filled).

Then, timed from the process's start to the first ``200`` of ``/ready`` (polled every 100 ms):
- **RocksDB, first start**: the first worker's data directory, which has no rows yet: it builds
  its local state from the changelog (once, not repeated);
- **RocksDB, local state present**: the same worker restarted after a clean stop (repeated);
- **memory store**: a fresh data directory, ``ORDERFLOW_STORE=memory``: it replays the whole
  changelog (repeated).
After each start: the worker's RSS, its CPU seconds to ready, and a sample of the written orders
read back with ``GET /orders/{id}``, which must answer exactly what was written.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.context import BenchContext
from bench.inject import Produced, fill_order_changelog
from bench.procs import Broker, Procs
from bench.report import Figure
from orderflow.domain.responses import order_to_public
from orderflow.wire import order_from_bytes
from tests.harness import TEST_CLIENT, ManagedProcess, http_json

__all__ = ["Start", "run"]

SCENARIO = "recovery"
ORDERS, QUICK_ORDERS = 1_000_000, 20_000
_SAMPLE = 20  # orders read back after each start
_READY_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Start:
    """One worker start: seconds to ready, CPU seconds to ready, RSS once ready."""

    seconds: float
    cpu_s: float
    rss_bytes: int


async def _timed_start(
    procs: Procs,
    broker: Broker,
    sandbox: ManagedProcess,
    name: str,
    env: dict[str, str],
) -> tuple[ManagedProcess, Start]:
    """Start a worker, time it to its first ready answer (polled every 100 ms)."""
    started = time.monotonic()
    worker = await procs.worker(broker, sandbox, name=name, env=env, wait_ready=False)
    url = f"{worker.meta['url']}/ready"
    while True:
        if not worker.alive:
            raise RuntimeError(f"{name} exited:\n{worker.log_tail()}")
        if time.monotonic() - started > _READY_TIMEOUT_S:
            raise RuntimeError(f"{name} not ready after {_READY_TIMEOUT_S:.0f} s")
        try:
            status = (await asyncio.to_thread(http_json, "GET", url, None, None, 2.0))[0]
        except OSError:
            status = 0
        if status == 200:
            break
        await asyncio.sleep(0.1)
    seconds = time.monotonic() - started
    used = procs.usage(worker)
    return worker, Start(seconds, used.cpu_s, used.rss_bytes)


async def _check_sample(
    procs: Procs, worker: ManagedProcess, filled: Produced, rng: random.Random
) -> None:
    """A sample of the written orders answers exactly what was written."""
    picked = rng.sample(range(len(filled.order_ids)), min(_SAMPLE, len(filled.order_ids)))
    for i in picked:
        order_id = filled.order_ids[i]
        expected = json.loads(json.dumps(order_to_public(order_from_bytes(filled.values[i]))))
        url = f"{worker.meta['url']}/orders/{order_id}"
        status, body, _ = await asyncio.to_thread(http_json, "GET", url, None, procs.headers)
        if status != 200 or body != expected:
            raise RuntimeError(f"GET {order_id} after recovery: {status} {body!r}")


async def run(ctx: BenchContext) -> list[Figure]:
    procs = ctx.procs
    count = QUICK_ORDERS if ctx.quick else ORDERS
    rng = random.Random(7)
    ctx.note_settings(
        orders=count,
        fill="PAID OrderDB values (orderflow.wire.order_to_bytes, 2 line items) produced "
        "straight into orderflow-OrderDB-changelog (aiokafka batch API, acks=all, murmur2 "
        "partition of the order id); the topic created by a first worker start on the fresh "
        "broker (as the worker creates it: partitions, compaction); PaymentDB empty",
        timing="process start -> first 200 of /ready, polled every 100 ms",
        check=f"{_SAMPLE} orders per start read back with GET /orders/{{id}}, compared with "
        "what was written",
        worker="one worker, make run's settings (RocksDB unless said), log level INFO",
    )
    broker = await procs.broker()
    started: list[Any] = [broker]
    figures: list[Figure] = []
    try:
        sandbox = await procs.sandbox()
        started.append(sandbox)
        rocks_dir = Path(procs.work_dir) / f"{SCENARIO}-rocksdb-data"
        rocks = {"ORDERFLOW_DATA_DIR": str(rocks_dir)}
        # The first start creates every topic (the OrderDB changelog included) as a worker does.
        creator, _ = await _timed_start(procs, broker, sandbox, "worker-create", rocks)
        await procs.stop(creator)
        ctx.progress(f"{SCENARIO}: writing {count} orders into the OrderDB changelog")
        filled = await fill_order_changelog(broker.bootstrap, count, TEST_CLIENT)
        ctx.progress(f"{SCENARIO}: filled in {filled.seconds:.1f} s ({filled.per_second:.0f}/s)")
        figures.append(
            Figure(SCENARIO, "fill rate (bench producer)", "orders/s", [filled.per_second])
        )

        async def start(name: str, env: dict[str, str]) -> Start:
            worker, result = await _timed_start(procs, broker, sandbox, name, env)
            started.append(worker)
            ctx.progress(
                f"{SCENARIO}: {name} ready in {result.seconds:.1f} s, "
                f"RSS {result.rss_bytes / 2**20:.0f} MiB"
            )
            await _check_sample(procs, worker, filled, rng)
            await procs.stop(worker)  # a clean stop: RocksDB keeps its state and offsets
            started.remove(worker)
            return result

        first = await start("worker-rocksdb-build", rocks)
        warm: list[Start] = []
        memory: list[Start] = []
        for rep in range(ctx.reps):
            ctx.progress(f"{SCENARIO}: repetition {rep + 1}/{ctx.reps}")
            warm.append(await start("worker-rocksdb", rocks))
            memory_dir = Path(procs.work_dir) / f"{SCENARIO}-memory-data-{rep}"
            memory.append(
                await start(
                    "worker-memory",
                    {"ORDERFLOW_STORE": "memory", "ORDERFLOW_DATA_DIR": str(memory_dir)},
                )
            )
    finally:
        for thing in reversed(started):  # a worker first, the broker last
            await procs.stop(thing)
    figures.extend(_figures(count, first, warm, memory))
    return figures


def _figures(count: int, first: Start, warm: list[Start], memory: list[Start]) -> list[Figure]:
    mib = 2**20
    out: list[Figure] = []
    for label, starts, note in (
        ("RocksDB, local state present", warm, "restart after a clean stop"),
        ("memory store", memory, "replays the changelog"),
        ("RocksDB, first start", [first], "builds its local state from the changelog; once"),
    ):
        name = f"{count} orders, {label}"
        out += [
            Figure(SCENARIO, f"time to ready, {name}", "s", [s.seconds for s in starts], note),
            Figure(SCENARIO, f"worker CPU to ready, {name}", "s", [s.cpu_s for s in starts]),
            Figure(
                SCENARIO,
                f"worker RSS when ready, {name}",
                "MiB",
                [s.rss_bytes / mib for s in starts],
            ),
        ]
    return out
