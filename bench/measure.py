"""Measuring orderflow under the load generator: process CPU over the load's window, figures.

``UsageSampler`` reads the CPU seconds of the watched process trees a few times a second while a
load runs; the CPU of the measured window (``LoadResult.window``) is interpolated between the
samples around its ends, so warm-up and drain are not counted. ``settle`` waits between
measurements until a worker has no order in progress, so one measurement's backlog is not the
next one's load.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import statistics
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp

from bench.context import BenchContext
from bench.loadgen import LoadResult, closed_loop, open_loop
from bench.procs import CLOCK_TICKS, proc_stat, process_tree
from bench.report import Figure

__all__ = [
    "GATEWAY_SETTINGS",
    "WORKER_SETTINGS",
    "Measured",
    "UsageSampler",
    "closed_series",
    "load_figures",
    "measured",
    "open_series",
    "quiet",
    "settle",
    "warm_up",
]


class UsageSampler:
    """Samples the CPU seconds of named process trees every ``interval`` seconds."""

    def __init__(self, pids: Mapping[str, int | None], interval: float = 0.25) -> None:
        # The trees are read once: a worker's threads are in its own /proc entry, and the
        # processes watched start no children while measured.
        self._trees = {name: process_tree(pid) for name, pid in pids.items() if pid is not None}
        self._interval = interval
        self._times: list[float] = []
        self._samples: list[dict[str, float]] = []
        self._task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        now = time.time()
        cpu = {}
        for name, pids in self._trees.items():
            ticks = 0
            for pid in pids:
                if (fields := proc_stat(pid)) is not None:
                    ticks += int(fields[11]) + int(fields[12])
            cpu[name] = ticks / CLOCK_TICKS
        self._times.append(now)
        self._samples.append(cpu)

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self._interval)

    async def __aenter__(self) -> UsageSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()

    def _at(self, name: str, when: float) -> float:
        """CPU seconds of ``name`` at wall time ``when``, interpolated between samples."""
        times = self._times
        i = bisect.bisect_left(times, when)
        if i <= 0:
            return self._samples[0].get(name, 0.0)
        if i >= len(times):
            return self._samples[-1].get(name, 0.0)
        t0, t1 = times[i - 1], times[i]
        c0, c1 = self._samples[i - 1].get(name, 0.0), self._samples[i].get(name, 0.0)
        return c0 + (c1 - c0) * ((when - t0) / (t1 - t0) if t1 > t0 else 0.0)

    def cpu_between(self, name: str, start: float, end: float) -> float:
        """CPU seconds ``name`` used between two wall times."""
        if not self._samples or name not in self._trees:
            return math.nan
        return self._at(name, end) - self._at(name, start)


@dataclass
class Measured:
    """One load run and the CPU seconds each watched process used in its window."""

    load: LoadResult
    cpu_s: dict[str, float] = field(default_factory=dict)

    def cores(self, name: str) -> float:
        return self.cpu_s.get(name, math.nan) / self.load.duration

    def ms_per_order(self, name: str) -> float:
        if not self.load.completed:
            return math.nan
        return self.cpu_s.get(name, math.nan) * 1000 / self.load.completed


async def measured(load: Awaitable[LoadResult], pids: Mapping[str, int | None]) -> Measured:
    """Run ``load`` while sampling the CPU of ``pids`` (name -> pid; None: not watched)."""
    async with UsageSampler(pids) as sampler:
        result = await load
    start, end = result.window
    return Measured(result, {n: sampler.cpu_between(n, start, end) for n, p in pids.items() if p})


async def settle(worker_url: str, timeout: float = 120.0) -> bool:
    """Wait until the worker has no order in progress (``orderflow_orders_pending`` 0) and no
    consumer lag; False at the deadline (the next measurement starts anyway)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        quiet = 0
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{worker_url}/metrics") as response:
                    text = await response.text()
            except (aiohttp.ClientError, TimeoutError):
                text = ""
            pending, lag = (
                _gauge(text, "orderflow_orders_pending"),
                _gauge(text, "orderflow_consumer_lag"),
            )
            quiet = quiet + 1 if pending == 0 and lag == 0 else 0
            if quiet >= 2:
                return True
            await asyncio.sleep(0.5)
    return False


def _gauge(text: str, name: str) -> float:
    """The sum of a metric's samples in Prometheus text (NaN when absent)."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            with contextlib.suppress(ValueError, IndexError):
                total += float(line.rsplit(" ", 1)[1])
                seen = True
    return total if seen else math.nan


def _ms(seconds: float) -> float:
    return seconds * 1000


def load_figures(
    scenario: str,
    label: str,
    runs: Sequence[Measured],
    per_order: Sequence[str] = ("worker",),
    cores: Sequence[str] = ("worker", "broker", "sandbox"),
) -> list[Figure]:
    """The figures of repeated load runs of one setting (``label``, e.g. "32 clients").

    Closed loop: orders/s, p50, p99. Open loop: achieved orders/s, p50, p95, p99, max, missed.
    Then CPU ms per order of ``per_order`` processes, cores used by ``cores`` processes, and the
    load generator's cores (noted when it was near a full core: then it was the limit).
    """
    loads = [r.load for r in runs]
    figures = [
        Figure(scenario, f"{label}: throughput", "orders/s", [x.orders_per_s for x in loads])
    ]
    quantiles = (50, 99) if loads[0].mode == "closed" else (50, 95, 99)
    for q in quantiles:
        figures.append(Figure(scenario, f"{label}: p{q}", "ms", [_ms(x.latency(q)) for x in loads]))
    if loads[0].mode == "open":
        figures.append(Figure(scenario, f"{label}: max", "ms", [_ms(x.max) for x in loads]))
        figures.append(
            Figure(
                scenario,
                f"{label}: missed",
                "orders",
                [float(x.missed) for x in loads],
                note=f"of {loads[0].offered} arrivals",
            )
        )
    for name in per_order:
        if all(name in r.cpu_s for r in runs):
            figures.append(
                Figure(
                    scenario,
                    f"{label}: {name} CPU per order",
                    "ms",
                    [r.ms_per_order(name) for r in runs],
                )
            )
    for name in cores:
        if all(name in r.cpu_s for r in runs):
            figures.append(
                Figure(scenario, f"{label}: {name} CPU", "cores", [r.cores(name) for r in runs])
            )
    share = [x.loadgen_cpu_share for x in loads]
    note = "load generator near a core: it may be the limit" if max(share) > 0.85 else ""
    figures.append(Figure(scenario, f"{label}: load generator CPU", "cores", share, note=note))
    errors = [float(sum(x.errors.values())) for x in loads]
    if any(errors):
        kinds = sorted({k for x in loads for k in x.errors})
        figures.append(
            Figure(scenario, f"{label}: retried errors", "requests", errors, note=", ".join(kinds))
        )
    return figures


# -- series of repeated loads, as the scenarios run them ------------------------------------------

WORKER_SETTINGS = (
    "faust -A orderflow.app worker -l info with make run's settings (defaults: RocksDB store, "
    "8 partitions, log level INFO), a fresh broker and data directory per scenario"
)
GATEWAY_SETTINGS = "the sandbox gateway as its own process (ORDERFLOW_GATEWAY=http to it), lax mode"


def _combine(run: Measured, combined: Mapping[str, Sequence[str]]) -> Measured:
    for name, parts in combined.items():
        run.cpu_s[name] = sum(run.cpu_s.get(p, math.nan) for p in parts)
    return run


async def closed_series(
    ctx: BenchContext,
    scenario: str,
    label: str,
    urls: Sequence[str],
    clients: int,
    pids: Mapping[str, int | None],
    *,
    combined: Mapping[str, Sequence[str]] | None = None,
    per_order: Sequence[str] = ("worker",),
    cores: Sequence[str] = ("worker", "broker", "sandbox"),
) -> tuple[list[Figure], float]:
    """``ctx.reps`` closed loops of ``clients`` clients over ``urls``: the figures and the median
    throughput. ``combined`` adds process groups (e.g. "workers": both workers' CPU)."""
    window, warmup = ctx.seconds(20, 3), ctx.seconds(5, 1)
    runs = []
    for rep in range(ctx.reps):
        load = closed_loop(
            list(urls), clients, window, warmup, ctx.procs.headers, processes=ctx.loadgen_processes
        )
        runs.append(_combine(await measured(load, pids), combined or {}))
        _say(ctx, f"{scenario} {label}", rep, runs[-1], per_order[0])
        for url in urls:
            await quiet(ctx, url)
    median = statistics.median(r.load.orders_per_s for r in runs)
    return ctx.measured(load_figures(scenario, label, runs, per_order, cores)), median


async def open_series(
    ctx: BenchContext,
    scenario: str,
    label: str,
    urls: Sequence[str],
    rate: float,
    pids: Mapping[str, int | None],
    *,
    reps: int | None = None,
    settle_s: float = 120.0,
) -> list[Figure]:
    """``reps`` (default ``ctx.reps``) open loops at ``rate`` orders/s over ``urls``: their
    figures. After each, up to ``settle_s`` for the workers to work off the backlog."""
    window, warmup, drain = ctx.seconds(20, 3), ctx.seconds(3, 1), ctx.seconds(30, 10)
    runs = []
    reps = reps or ctx.reps
    for rep in range(reps):
        load = open_loop(
            list(urls),
            rate,
            window,
            warmup,
            ctx.procs.headers,
            processes=ctx.loadgen_processes,
            drain=drain,
        )
        runs.append(await measured(load, pids))
        _say(ctx, f"{scenario} {label} ({rate:g}/s)", rep, runs[-1], "worker", reps)
        for url in urls:
            await quiet(ctx, url, settle_s)
    return ctx.measured(load_figures(scenario, label, runs))


async def warm_up(ctx: BenchContext, urls: Sequence[str], clients: int = 32) -> None:
    """A closed loop not counted: connections, caches and topic metadata warm, then settle."""
    seconds = ctx.seconds(10, 2)
    ctx.progress(f"warming up for {seconds:g}s ({clients} clients)")
    await closed_loop(list(urls), clients, seconds, 0.0, ctx.procs.headers)
    for url in urls:
        await quiet(ctx, url)


async def quiet(ctx: BenchContext, url: str, timeout: float = 120.0) -> None:
    if not await settle(url, timeout):
        ctx.progress(f"{url} still had orders in progress after {timeout:g}s; measuring on")


def _say(ctx: BenchContext, what: str, rep: int, run: Measured, worker: str, reps: int = 0) -> None:
    ctx.progress(
        f"{what}, rep {rep + 1}/{reps or ctx.reps}: {run.load.summary()}; {worker} "
        f"{run.ms_per_order(worker):.2f} ms CPU/order, {run.cores(worker):.2f} cores"
    )
    if run.load.loadgen_cpu_share > 0.85 * run.load.processes:
        ctx.progress(
            "the load generator used nearly a core per process: it may have been the limit "
            f"(--loadgen-processes {run.load.processes + 1} splits it further)"
        )
