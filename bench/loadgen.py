"""The one HTTP load generator of the bench, for any orderflow-compatible target.

A target is orderflow-compatible when it answers ``POST /orders`` with 201/202 and a JSON body
carrying ``order_id`` and ``status``, and ``GET /orders/{id}[?wait=S]`` with the order (a
long-poll that answers once the order is terminal, PAID or PAYMENT_FAILED). orderflow, the typical
Faust app and the bare aiohttp handler all are.

An order: ``POST /orders`` with a fresh ``Idempotency-Key``; if its answer is not terminal yet,
``GET`` its ``Location`` (or ``/orders/{id}``) with ``?wait=`` until it is. A 503, a 429 or a
connection error is retried with the same key (that is what the key is for) after a pause
(doubling from 50 ms to 4 s, jittered, never shorter than the answer's ``Retry-After``), and
counted in ``errors`` by kind. Its latency runs from the POST's send (closed loop) or its
*scheduled* arrival (open loop: a late send is the load generator's fault, but the client would
wait for it all the same, so it counts) to the answer that showed it terminal.

- ``closed_loop``: ``clients`` clients, each placing one order after the other. Orders that end
  within the measured window (after ``warmup``, ``duration`` seconds long) are counted; when the
  window ends, clients finish the order in hand (not counted) and stop.
- ``open_loop``: arrivals every ``1/rate`` seconds whatever the answers take. Orders *arriving*
  within the window are counted; those not terminal within ``drain`` seconds after the window
  (or that failed outright) are ``missed``.

Every client of a loopback target connects from its own loopback address (127.0.0.2, .3, …): the
worker limits long-polls per TCP peer address, and 128 real clients would come from 128 addresses.
The generator measures its own CPU seconds (``loadgen_cpu_s``) so a reader sees when it was the
limit; with ``processes`` > 1 the clients (or the arrivals) are split over that many processes and
their results merged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import multiprocessing
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

__all__ = [
    "ORDER_BODY",
    "TERMINAL",
    "LoadResult",
    "closed_loop",
    "new_event_loop",
    "open_loop",
    "percentile",
]

TERMINAL = frozenset({"PAID", "PAYMENT_FAILED"})

# One approved order of two items: the same body for every order (the key makes each new).
ORDER_BODY = orjson.dumps(
    {
        "customer_id": "c-bench",
        "currency": "EUR",
        "items": [{"sku": "SKU-1", "quantity": 2, "unit_amount": 1999}],
        "payment": {"token": "tok_visa"},
    }
)

LONG_POLL_S = 10  # ?wait= of each GET
RETRY_PAUSE_S = 0.05  # before retrying a 503/429/connection error, doubling up to:
RETRY_CAP_S = 4.0
ORDER_DEADLINE_S = 60.0  # an order not terminal after this is given up (an error)
_MAX_SOURCES = 250  # loopback source addresses 127.0.0.2 .. 127.0.0.251
_OPEN_LOOP_SESSIONS = 64  # open loop: sessions (source addresses) the arrivals rotate over


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (a cheaper load generator), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of unsorted samples; NaN when there are none."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class LoadResult:
    """What one load run saw (merged over its processes)."""

    mode: str  # "closed" or "open"
    targets: list[str]
    duration: float  # seconds measured (the window, warm-up excluded)
    clients: int = 0  # closed loop
    rate: float = 0.0  # open loop: arrivals per second asked for
    completed: int = 0  # orders counted and terminal
    offered: int = 0  # open loop: orders that arrived within the window
    missed: int = 0  # open loop: of those, not terminal within the drain time (or failed)
    latencies: list[float] = field(default_factory=list)  # seconds, of the completed orders
    errors: dict[str, int] = field(default_factory=dict)  # by kind: post_503, get_429, conn_…
    statuses: dict[str, int] = field(default_factory=dict)  # terminal status of completed orders
    loadgen_cpu_s: float = 0.0
    processes: int = 1
    late_arrivals: int = 0  # open loop: arrivals sent more than 10 ms after their schedule
    window: tuple[float, float] = (0.0, 0.0)  # the measured window, time.time() at both ends
    elapsed: float = 0.0  # seconds of the whole run: warm-up, window and drain

    @property
    def orders_per_s(self) -> float:
        return self.completed / self.duration if self.duration > 0 else math.nan

    @property
    def loadgen_cpu_share(self) -> float:
        """The load generator's CPU in cores over the whole run (1.0: one core busy throughout;
        several processes can exceed 1)."""
        return self.loadgen_cpu_s / self.elapsed if self.elapsed > 0 else math.nan

    def latency(self, q: float) -> float:
        """Percentile ``q`` of POST→terminal, in seconds."""
        return percentile(self.latencies, q)

    @property
    def p50(self) -> float:
        return self.latency(50)

    @property
    def p95(self) -> float:
        return self.latency(95)

    @property
    def p99(self) -> float:
        return self.latency(99)

    @property
    def max(self) -> float:
        return max(self.latencies) if self.latencies else math.nan

    def summary(self) -> str:
        """One line for the progress output."""
        load = f"{self.clients} clients" if self.mode == "closed" else f"{self.rate:g}/s offered"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        missed = f", missed {self.missed}/{self.offered}" if self.mode == "open" else ""
        return (
            f"{load}: {self.orders_per_s:.1f} orders/s, p50 {self.p50 * 1000:.0f} ms, "
            f"p99 {self.p99 * 1000:.0f} ms, max {self.max * 1000:.0f} ms{missed}; errors: {errors}; "
            f"load generator CPU {self.loadgen_cpu_share:.2f} cores"
        )

    @classmethod
    def merge(cls, parts: Sequence[LoadResult]) -> LoadResult:
        """One result from the same run's processes (same window)."""
        first = parts[0]
        errors: Counter[str] = Counter()
        statuses: Counter[str] = Counter()
        for p in parts:
            errors.update(p.errors)
            statuses.update(p.statuses)
        return cls(
            mode=first.mode,
            targets=first.targets,
            duration=first.duration,
            clients=sum(p.clients for p in parts),
            rate=sum(p.rate for p in parts),
            completed=sum(p.completed for p in parts),
            offered=sum(p.offered for p in parts),
            missed=sum(p.missed for p in parts),
            latencies=[x for p in parts for x in p.latencies],
            errors=dict(errors),
            statuses=dict(statuses),
            loadgen_cpu_s=sum(p.loadgen_cpu_s for p in parts),
            processes=sum(p.processes for p in parts),
            late_arrivals=sum(p.late_arrivals for p in parts),
            window=first.window,
            elapsed=max(p.elapsed for p in parts),
        )


# -- one order ------------------------------------------------------------------------------------


class _GaveUp(Exception):
    """An order that did not become terminal before its deadline."""


class _Client:
    """One HTTP session (one source address) and the error counter it shares."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        targets: Sequence[str],
        headers: Mapping[str, str],
        errors: Counter[str],
    ) -> None:
        self.session = session
        self.targets = targets
        self.errors = errors
        self.post_headers = {**headers, "Content-Type": "application/json"}
        self.get_headers = dict(headers)

    async def order(self, target: str) -> str:
        """Place one order and follow it to its terminal status; returns that status."""
        deadline = time.monotonic() + ORDER_DEADLINE_S
        headers = {**self.post_headers, "Idempotency-Key": f"bench-{uuid.uuid4().hex}"}
        answer, location = await self._request("POST", f"{target}/orders", headers, deadline)
        status = str(answer.get("status", ""))
        path = location or f"/orders/{answer['order_id']}"
        separator = "&" if "?" in path else "?"
        url = f"{target}{path}{separator}wait={LONG_POLL_S}"
        while status not in TERMINAL:
            answer, _ = await self._request("GET", url, self.get_headers, deadline)
            status = str(answer.get("status", ""))
        return status

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], deadline: float
    ) -> tuple[dict[str, Any], str | None]:
        pause = RETRY_PAUSE_S
        prefix = method.lower()
        while True:
            if time.monotonic() > deadline:
                raise _GaveUp
            try:
                async with self.session.request(
                    method, url, data=ORDER_BODY if method == "POST" else None, headers=headers
                ) as response:
                    raw = await response.read()
                    if response.status in (200, 201, 202):
                        return orjson.loads(raw), response.headers.get("Location")
                    self.errors[f"{prefix}_{response.status}"] += 1
                    if response.status not in (404, 429, 500, 502, 503, 504):
                        raise _GaveUp  # a 4xx the next try would get again
                    # A careful client waits at least as long as the server asks (Retry-After).
                    floor = _retry_after(response.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
                self.errors[f"{prefix}_{type(exc).__name__}"] += 1
                floor = 0.0
            # Backing off (doubling, jittered) as well: thousands of open-loop clients retrying
            # every Retry-After second in step would measure their own retry storm.
            await asyncio.sleep(max(floor, pause) * random.uniform(1.0, 1.5))
            pause = min(pause * 2, RETRY_CAP_S)


def _retry_after(value: str | None) -> float:
    """Seconds of a ``Retry-After`` in seconds (dates are not used by our targets), capped."""
    try:
        return min(max(float(value), 0.0), RETRY_CAP_S) if value else 0.0
    except ValueError:
        return 0.0


def _source_addresses(targets: Sequence[str], count: int) -> list[str | None]:
    """A loopback source address per session when every target is on loopback, else None."""
    loopback = True
    for target in targets:
        host = urlsplit(target).hostname or ""
        with contextlib.suppress(ValueError):
            loopback = loopback and ipaddress.ip_address(host).is_loopback and ":" not in host
            continue
        loopback = loopback and host == "localhost"
    if not loopback:
        return [None] * count
    return [f"127.0.0.{2 + n % _MAX_SOURCES}" for n in range(count)]


def _session(source: str | None, limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=limit, local_addr=(source, 0) if source else None, ttl_dns_cache=None
    )
    timeout = aiohttp.ClientTimeout(total=LONG_POLL_S + 20, connect=10)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    )


# -- what both loops share ------------------------------------------------------------------------


@dataclass
class _Run:
    """One process's run of either loop: its sessions, counters and clocks."""

    targets: Sequence[str]
    warmup: float
    duration: float
    sessions: list[aiohttp.ClientSession]
    cpu0: float  # time.process_time() at the start
    t0: float  # time.monotonic() at the start
    wall0: float  # time.time() at the start
    errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    cpu: float = 0.0
    elapsed: float = 0.0

    @classmethod
    async def start(
        cls,
        targets: Sequence[str],
        warmup: float,
        duration: float,
        sources: Sequence[str | None],
        limit: int,
        start_at: float | None,
    ) -> _Run:
        """A session per source address; the clocks start at ``start_at`` (time.time()), if any."""
        sessions = [_session(source, limit=limit) for source in sources]
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.time()))
        return cls(
            targets, warmup, duration, sessions, time.process_time(), time.monotonic(), time.time()
        )

    @property
    def window(self) -> tuple[float, float]:
        """The measured window, time.monotonic() at both ends."""
        return self.t0 + self.warmup, self.t0 + self.warmup + self.duration

    async def finish(self, unfinished: Iterable[asyncio.Task[None]]) -> None:
        """Stop the clocks, then cancel what is still running and close the sessions."""
        self.cpu, self.elapsed = time.process_time() - self.cpu0, time.monotonic() - self.t0
        tasks = list(unfinished)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in self.sessions:
            await session.close()

    def result(self, mode: str, **fields: Any) -> LoadResult:
        """The run's LoadResult; ``fields``: those of its loop alone."""
        return LoadResult(
            mode=mode,
            targets=list(self.targets),
            duration=self.duration,
            completed=len(self.latencies),
            latencies=self.latencies,
            errors=dict(self.errors),
            statuses=dict(self.statuses),
            loadgen_cpu_s=self.cpu,
            window=(self.wall0 + self.warmup, self.wall0 + self.warmup + self.duration),
            elapsed=self.elapsed,
            **fields,
        )


# -- closed loop ----------------------------------------------------------------------------------


async def _closed_loop_here(
    targets: Sequence[str],
    clients: int,
    duration: float,
    warmup: float,
    headers: Mapping[str, str],
    first_client: int = 0,
    start_at: float | None = None,  # time.time() to start at (aligns several processes)
    drain: float = ORDER_DEADLINE_S,
) -> LoadResult:
    sources = _source_addresses(targets, first_client + clients)[first_client:]
    run = await _Run.start(targets, warmup, duration, sources, 4, start_at)
    window_start, window_end = run.window

    async def client(n: int) -> None:
        api = _Client(run.sessions[n], targets, headers, run.errors)
        target = targets[(first_client + n) % len(targets)]
        while time.monotonic() < window_end:
            began = time.monotonic()
            try:
                status = await api.order(target)
            except _GaveUp:
                run.errors["gave_up"] += 1
                await asyncio.sleep(1.0)  # a target refusing every order must not spin us
                continue
            ended = time.monotonic()
            if window_start <= ended <= window_end:
                run.latencies.append(ended - began)
                run.statuses[status] += 1

    tasks = [asyncio.create_task(client(n)) for n in range(clients)]
    try:
        await asyncio.wait(tasks, timeout=warmup + duration + drain)
    finally:
        await run.finish(tasks)
    return run.result("closed", clients=clients)


async def closed_loop(
    base_url: str | Sequence[str],
    clients: int,
    duration: float,
    warmup: float,
    headers: Mapping[str, str],
    *,
    processes: int = 1,
) -> LoadResult:
    """``clients`` closed-loop clients for ``warmup`` + ``duration`` seconds (see the module).

    ``base_url`` may list several targets (a load balancer's backends): client n uses target
    n mod len. ``processes`` > 1 splits the clients over that many processes.
    """
    targets = [base_url] if isinstance(base_url, str) else list(base_url)
    processes = max(1, min(processes, clients))
    if processes == 1:
        return await _closed_loop_here(targets, clients, duration, warmup, headers)
    shares = [
        clients // processes + (1 if n < clients % processes else 0) for n in range(processes)
    ]
    firsts = [sum(shares[:n]) for n in range(processes)]
    start_at = time.time() + 3.0  # the children's start-up (interpreter, imports) fits in this

    calls = [
        partial(
            _closed_loop_here,
            targets,
            shares[n],
            duration,
            warmup,
            dict(headers),
            firsts[n],
            start_at,
        )
        for n in range(processes)
    ]
    return LoadResult.merge(await _in_processes(calls))


# -- open loop ------------------------------------------------------------------------------------


async def _open_loop_here(
    targets: Sequence[str],
    rate: float,
    duration: float,
    warmup: float,
    headers: Mapping[str, str],
    phase: float = 0.0,  # this process's arrivals are offset by phase / rate
    start_at: float | None = None,
    drain: float = 30.0,
) -> LoadResult:
    sources = _source_addresses(targets, _OPEN_LOOP_SESSIONS)
    run = await _Run.start(targets, warmup, duration, sources, 16, start_at)
    window_start, window_end = run.window
    counted: list[asyncio.Task[None]] = []
    others: list[asyncio.Task[None]] = []
    late = 0

    async def one(n: int, due: float, measured: bool) -> None:
        api = _Client(run.sessions[n % len(run.sessions)], targets, headers, run.errors)
        try:
            status = await api.order(targets[n % len(targets)])
        except _GaveUp:
            run.errors["gave_up"] += 1
            return
        if measured:
            run.latencies.append(time.monotonic() - due)
            run.statuses[status] += 1

    total = int((warmup + duration) * rate)
    for n in range(total):
        due = run.t0 + (n + phase) / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.01:
            late += 1
        measured = window_start <= due < window_end
        (counted if measured else others).append(asyncio.create_task(one(n, due, measured)))
    pending: set[asyncio.Task[None]] = set()
    if counted or others:
        remaining = max(0.0, window_end - time.monotonic()) + drain
        _, pending = await asyncio.wait(counted + others, timeout=remaining)
    await run.finish(pending)
    # Arrived within the window and not terminal: cancelled at the drain deadline, or given up.
    missed = len(counted) - len(run.latencies)
    return run.result("open", rate=rate, offered=len(counted), missed=missed, late_arrivals=late)


async def open_loop(
    base_url: str | Sequence[str],
    rate: float,
    duration: float,
    warmup: float,
    headers: Mapping[str, str],
    *,
    processes: int = 1,
    drain: float = 30.0,
) -> LoadResult:
    """Orders arriving at ``rate`` per second for ``warmup`` + ``duration`` seconds, then up to
    ``drain`` seconds for the counted ones to end (see the module)."""
    targets = [base_url] if isinstance(base_url, str) else list(base_url)
    if processes <= 1:
        return await _open_loop_here(targets, rate, duration, warmup, headers, drain=drain)
    start_at = time.time() + 3.0

    # Each process offers rate/processes, its arrivals interleaved with the others'.
    calls = [
        partial(
            _open_loop_here,
            targets,
            rate / processes,
            duration,
            warmup,
            dict(headers),
            n / processes,
            start_at,
            drain,
        )
        for n in range(processes)
    ]
    return LoadResult.merge(await _in_processes(calls))


# -- several processes ----------------------------------------------------------------------------


_Call = Callable[[], Coroutine[Any, Any, LoadResult]]


def _run_in_child(make: _Call) -> LoadResult:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(make())


async def _in_processes(calls: Sequence[_Call]) -> list[LoadResult]:
    loop = asyncio.get_running_loop()
    # spawn, not fork: the parent runs an event loop and threads a fork would copy half of.
    with ProcessPoolExecutor(len(calls), mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(
            await asyncio.gather(*(loop.run_in_executor(pool, _run_in_child, c) for c in calls))
        )
