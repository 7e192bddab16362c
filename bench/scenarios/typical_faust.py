"""The typical Faust app of the same flow (issue 11, scenario 2): the peer orderflow must beat.

``bench.baselines.typical_faust`` (one agent per topic, an awaited gateway call per event, memory
tables, a web view for POST/GET) as one worker beside a fresh broker, calling the sandbox gateway
as its own process, under the same closed-loop load generator as orderflow: 0 ms gateway with 1
and 32 clients, then 50 ms gateway with 32 clients. The figures are named as the ``http`` and
``slow_gateway`` scenarios name orderflow's, so ``python -m bench`` computes the ratios of the
same run. Between measurements the app settles: the sandbox has seen no new charge for a second.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import aiohttp

from bench.baselines.typical_faust import PARTITIONS, create_topics
from bench.context import BenchContext
from bench.loadgen import ORDER_BODY, TERMINAL, closed_loop
from bench.measure import Measured, load_figures, measured
from bench.procs import Broker, ManagedProcess
from bench.report import Figure

__all__ = ["SETTINGS", "run"]

SCENARIO = "typical_faust"
# (gateway latency in ms, clients, figure label): labels as bench.scenarios.http/slow_gateway.
SETTINGS = (
    (0.0, 1, "closed 1 client"),
    (0.0, 32, "closed 32 clients"),
    (50.0, 32, "50 ms gateway, 32 clients"),
)
ROOT = Path(__file__).resolve().parents[2]
_JSON = {"Content-Type": "application/json"}


async def run(ctx: BenchContext) -> list[Figure]:
    procs = ctx.procs
    try:
        broker = await procs.broker()
        sandbox = await procs.sandbox(latency_ms=SETTINGS[0][0])
        app = await _start_app(ctx, broker, sandbox)
        url = str(app.meta["url"])
        pids = procs.pids(app, broker, sandbox)
        ctx.note_settings(
            app=(
                "bench.baselines.typical_faust: faust-streaming worker -l info, memory store, "
                f"{PARTITIONS} partitions, one agent per topic, an awaited aiohttp gateway call "
                "per event; a fresh broker"
            ),
            gateway="the sandbox gateway as its own process, lax mode",
            settings=[{"gateway_latency_ms": ms, "clients": n} for ms, n, _ in SETTINGS],
        )
        figures: list[Figure] = []
        latency = SETTINGS[0][0]
        for gateway_ms, clients, label in SETTINGS:
            if gateway_ms != latency:
                latency = gateway_ms
                await procs.set_latency(sandbox, latency)
                ctx.progress(f"sandbox gateway latency now {latency:g} ms")
            await _warm_up(ctx, url, sandbox, clients)
            runs: list[Measured] = []
            for rep in range(ctx.reps):
                load = closed_loop(
                    url,
                    clients,
                    ctx.seconds(20, 3),
                    ctx.seconds(5, 1),
                    procs.headers,
                    processes=ctx.loadgen_processes,
                )
                runs.append(await measured(load, pids))
                ctx.progress(
                    f"{SCENARIO} {label}, rep {rep + 1}/{ctx.reps}: {runs[-1].load.summary()}; "
                    f"worker {runs[-1].ms_per_order('worker'):.2f} ms CPU/order, "
                    f"{runs[-1].cores('worker'):.2f} cores"
                )
                await _settle(sandbox)
            figures += load_figures(SCENARIO, label, runs)
        return figures
    finally:
        await procs.stop_all_async()


async def _start_app(ctx: BenchContext, broker: Broker, sandbox: ManagedProcess) -> ManagedProcess:
    """The typical Faust worker on a port of the bench's range, once it has settled an order."""
    procs = ctx.procs
    port = procs.ports.take()
    app_id = f"typical-{uuid.uuid4().hex[:8]}"
    directory = ctx.work_dir / app_id
    directory.mkdir(parents=True, exist_ok=True)
    await create_topics(broker.bootstrap, app_id)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORDERFLOW_", "TYPICAL_"))}
    env.update(
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
        TYPICAL_FAUST_APP_ID=app_id,
        TYPICAL_FAUST_BOOTSTRAP=broker.bootstrap,
        TYPICAL_FAUST_WEB_PORT=str(port),
        TYPICAL_FAUST_DATA_DIR=str(directory / "data"),
        TYPICAL_FAUST_GATEWAY_URL=str(sandbox.meta["url"]),
        TYPICAL_FAUST_GATEWAY_API_KEY=str(sandbox.meta["api_key"]),
    )
    app = ManagedProcess(
        "typical_faust",
        [sys.executable, "-m", "bench.baselines.typical_faust", "worker", "-l", "info"],
        env,
        directory / "worker.log",
        meta={"url": f"http://127.0.0.1:{port}", "port": port},
    )
    ctx.progress(f"starting the typical Faust app on {app.meta['url']}")
    await procs.start(app)
    await _first_order(app, timeout=180.0)
    return app


async def _first_order(app: ManagedProcess, timeout: float) -> None:
    """Place orders until one is terminal: the worker has its partitions, and its producer knows
    the changelog (Faust's ``table_route`` answers 500 before its first table write)."""
    url = str(app.meta["url"])
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        while time.monotonic() < deadline:
            if not app.alive:
                raise RuntimeError(f"the typical Faust app exited:\n{app.log_tail()}")
            try:
                async with session.post(f"{url}/orders", data=ORDER_BODY, headers=_JSON) as answer:
                    order_id = (await answer.json())["order_id"]
                async with session.get(f"{url}/orders/{order_id}?wait=10") as answer:
                    if answer.status == 200 and (await answer.json())["status"] in TERMINAL:
                        return
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the typical Faust app settled no order within {timeout:.0f}s")


async def _warm_up(ctx: BenchContext, url: str, sandbox: ManagedProcess, clients: int) -> None:
    seconds = ctx.seconds(10, 2)
    ctx.progress(f"warming up for {seconds:g}s ({clients} clients)")
    await closed_loop(url, clients, seconds, 0.0, ctx.procs.headers)
    await _settle(sandbox)


async def _settle(sandbox: ManagedProcess, timeout: float = 60.0) -> None:
    """Wait until the sandbox has seen no new charge request for a second: the orders a load
    left in flight are settled (the typical app has no metrics to ask)."""
    url = f"{sandbox.meta['url']}/_admin/stats"
    last, quiet_since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while time.monotonic() < deadline:
            async with session.get(url) as response:
                seen = int((await response.json())["charge_requests"])
            if seen != last:
                last, quiet_since = seen, time.monotonic()
            elif time.monotonic() - quiet_since >= 1.0:
                return
            await asyncio.sleep(0.25)
