"""Scenario 3, pipeline throughput: orders injected straight onto the ingress, timed until terminal.

One worker (``make run``'s settings, RocksDB store) and a separate sandbox gateway (0 ms) on a
fresh broker. Once the worker is ready, each repetition builds N PlaceOrder commands exactly as
``POST /orders`` would (``bench.inject``), then produces them onto the command topic as fast as
aiokafka's batch API allows **while the worker runs** (it starts on them at once). The run ends
when every one of the N orders is terminal in OrderDB: that is read from the OrderDB changelog
(the latest value per order), but only once the payment results on Kafka say all N were settled,
so the bench reads nothing while the worker works; when each order became terminal comes from
the changelog record's timestamp (the worker's clock), not from when the bench read it.

Figures: orders/s (N / (last terminal write - first send)), the injection rate, worker and broker
CPU per order (process-tree CPU from the first send to the first sample after the last terminal
write), the worker's RSS after the run, and Kafka records produced per order (end-offset deltas
over every topic, changelogs and ``__consumer_offsets`` included, once the offsets stop moving).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.context import BenchContext
from bench.inject import build_commands, inject_commands
from bench.kafka_counts import Offsets, TerminalWatch, by_topic
from bench.procs import ProcessUsage
from bench.report import Figure
from orderflow.topics import ORDER_CHANGELOG, PAYMENT_COMPLETED, PAYMENT_FAILED
from tests.harness import TEST_CLIENT

__all__ = ["PipelineRun", "measure", "run"]

SCENARIO = "pipeline"
ORDERS, QUICK_ORDERS = 100_000, 2_000
WARMUP, QUICK_WARMUP = 2_000, 200
_POLL_S = 0.5
_STALL_S = 300.0  # no OrderDB write for this long with orders still pending: the run failed
_SETTLED_S = 4.0  # end offsets unchanged this long: nothing more is being produced
_RESULTS = (PAYMENT_COMPLETED, PAYMENT_FAILED)


@dataclass
class PipelineRun:
    """One measured injection of ``orders`` orders."""

    orders: int
    inject_s: float  # producing every command, acks included
    seconds: float  # first send -> the last order's terminal write
    worker_cpu_s: float
    broker_cpu_s: float
    worker_rss_bytes: int
    records: dict[str, int]  # topic -> records appended during the run
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def orders_per_s(self) -> float:
        return self.orders / self.seconds

    @property
    def inject_per_s(self) -> float:
        return self.orders / self.inject_s


Usage = Callable[[], ProcessUsage]


def _delta(before: Offsets, after: Offsets, topics: tuple[str, ...]) -> int:
    return sum(end - before.get(tp, 0) for tp, end in after.items() if tp[0] in topics)


async def measure(
    bootstrap: str,
    count: int,
    worker: Usage,
    broker: Usage,
    progress: Callable[[str], None],
    client_id: str = TEST_CLIENT,
) -> PipelineRun:
    """Inject ``count`` orders into the running worker and time them until all are terminal."""
    commands = build_commands(count, client_id)
    watch = TerminalWatch(bootstrap)
    await watch.start()
    try:
        watch.expect(order_id for order_id, _ in commands)
        before = await watch.end_offsets()
        worker0, broker0, started = worker(), broker(), time.time()
        samples: list[tuple[float, ProcessUsage, ProcessUsage]] = []
        produced = await inject_commands(bootstrap, commands)
        del commands
        progress(f"{SCENARIO}: {count} orders injected in {produced.seconds:.1f} s")
        last_write, last_changelog, last_said = time.monotonic(), -1, time.monotonic()
        while True:
            await asyncio.sleep(_POLL_S)
            samples.append((time.time(), worker(), broker()))
            now = await watch.end_offsets((*_RESULTS, ORDER_CHANGELOG))
            settled = _delta(before, now, _RESULTS)
            changelog = _delta(before, now, (ORDER_CHANGELOG,))
            if changelog != last_changelog:
                last_write, last_changelog = time.monotonic(), changelog
            if time.monotonic() - last_said >= 10:
                last_said = time.monotonic()
                terminal = f", {count - watch.pending} terminal" if watch.records_read else ""
                progress(f"{SCENARIO}: ~{settled}/{count} payments settled{terminal}")
            stalled = time.monotonic() - last_write > _STALL_S
            if settled >= count or stalled:
                await watch.read_to_end()
                if watch.pending == 0:
                    break
                if stalled:
                    raise RuntimeError(
                        f"{watch.pending} of {count} orders not terminal after "
                        f"{_STALL_S:.0f} s without an OrderDB write"
                    )
        finished = watch.last_terminal_at()
        # The first sample taken after the last terminal write (the worker idles after it).
        at_end = next((s for s in samples if s[0] >= finished), samples[-1])
        after = await _settled_offsets(watch)
        statuses = dict(watch.statuses)
    finally:
        await watch.stop()
    return PipelineRun(
        orders=count,
        inject_s=produced.seconds,
        seconds=finished - started,
        worker_cpu_s=at_end[1].cpu_since(worker0),
        broker_cpu_s=at_end[2].cpu_since(broker0),
        worker_rss_bytes=worker().rss_bytes,
        records=by_topic(before, after),
        statuses=statuses,
    )


async def _settled_offsets(watch: TerminalWatch) -> Offsets:
    """Every topic's end offsets once they stopped moving (late commits and changelog writes
    belong to the run), at most 30 s."""
    last = await watch.end_offsets()
    since, deadline = time.monotonic(), time.monotonic() + 30
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
        now = await watch.end_offsets()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= _SETTLED_S:
            break
    return last


def figures(runs: list[PipelineRun]) -> list[Figure]:
    """The scenario's figures, one value per run."""
    count = runs[0].orders
    mib = 1024 * 1024

    def fig(name: str, unit: str, values: list[float], note: str = "") -> Figure:
        return Figure(SCENARIO, name, unit, values, note)

    out = [
        fig(f"throughput, {count} orders injected", "orders/s", [r.orders_per_s for r in runs]),
        fig("time until all terminal", "s", [r.seconds for r in runs]),
        fig(
            "injection rate (bench producer)",
            "orders/s",
            [r.inject_per_s for r in runs],
            "produced while the worker runs",
        ),
        fig("worker CPU per order", "ms", [r.worker_cpu_s / r.orders * 1000 for r in runs]),
        fig("broker CPU per order", "ms", [r.broker_cpu_s / r.orders * 1000 for r in runs]),
        fig("worker RSS after the run", "MiB", [r.worker_rss_bytes / mib for r in runs]),
        fig(
            "Kafka records per order, all topics",
            "records",
            [sum(r.records.values()) / r.orders for r in runs],
            "end-offset deltas, incl. changelogs and __consumer_offsets",
        ),
    ]
    topics = sorted({t for r in runs for t in r.records})
    out.extend(
        fig(f"records per order: {t}", "records", [r.records.get(t, 0) / r.orders for r in runs])
        for t in topics
    )
    failed = [r.statuses.get("PAYMENT_FAILED", 0) for r in runs]
    if any(failed):  # tok_visa approves: a failed payment here is news
        out.append(fig("orders ending PAYMENT_FAILED", "orders", [float(f) for f in failed]))
    return out


async def run(ctx: BenchContext) -> list[Figure]:
    procs = ctx.procs
    count = QUICK_ORDERS if ctx.quick else ORDERS
    warmup = QUICK_WARMUP if ctx.quick else WARMUP
    ctx.note_settings(
        orders=count,
        warmup_orders=warmup,
        injection="PlaceOrder commands built as POST /orders builds them (no Idempotency-Key, "
        "tok_visa, one item), produced with aiokafka's batch API (acks=all, murmur2 partition "
        "of the order id) onto orderflow.order-commands while the worker runs",
        terminal="read from the OrderDB changelog (latest value per order) after the payment "
        "results counted N; time = last terminal write's timestamp - first send",
        worker="one worker, make run's settings, RocksDB store, log level INFO",
        gateway="separate sandbox gateway process, 0 ms latency",
    )
    broker = await procs.broker()
    started: list[Any] = [broker]
    try:
        sandbox = await procs.sandbox()
        started.append(sandbox)
        worker = await procs.worker(broker, sandbox, name="worker")
        started.append(worker)

        def worker_usage() -> ProcessUsage:
            return procs.usage(worker)

        def broker_usage() -> ProcessUsage:
            return procs.usage(broker)

        ctx.progress(f"{SCENARIO}: warm-up, {warmup} orders")
        await measure(broker.bootstrap, warmup, worker_usage, broker_usage, ctx.progress)
        runs = []
        for rep in range(ctx.reps):
            ctx.progress(f"{SCENARIO}: repetition {rep + 1}/{ctx.reps}, {count} orders")
            result = await measure(
                broker.bootstrap, count, worker_usage, broker_usage, ctx.progress
            )
            ctx.progress(
                f"{SCENARIO}: {result.orders_per_s:.0f} orders/s, "
                f"{result.worker_cpu_s / count * 1000:.2f} ms worker CPU per order"
            )
            runs.append(result)
    finally:
        for thing in reversed(started):  # the worker first, the broker last
            await procs.stop(thing)
    return figures(runs)
