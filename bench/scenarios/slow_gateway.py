"""A slow payment gateway (issue 11, scenario 5): the sandbox answering after 50 ms and after
300 ms (a real card gateway answers in hundreds of milliseconds), 32 and 128 closed-loop clients,
one worker.

The latency is the sandbox's own (``--latency-ms``, changed between settings through its
``/_admin/faults``), before each answer; the worker's gateway client, batches and timeouts are
``make run``'s defaults.
"""

from __future__ import annotations

from bench.context import BenchContext
from bench.measure import GATEWAY_SETTINGS, WORKER_SETTINGS, closed_series, warm_up
from bench.report import Figure

__all__ = ["CLIENTS", "LATENCIES_MS", "run"]

SCENARIO = "slow_gateway"
LATENCIES_MS = (50.0, 300.0)
CLIENTS = (32, 128)


async def run(ctx: BenchContext) -> list[Figure]:
    procs = ctx.procs
    broker = await procs.broker()
    sandbox = await procs.sandbox(latency_ms=LATENCIES_MS[0])
    try:
        worker = await procs.worker(broker, sandbox)
        url = str(worker.meta["url"])
        pids = procs.pids(worker, broker, sandbox)
        ctx.note_settings(
            workers=1,
            worker=WORKER_SETTINGS,
            gateway=GATEWAY_SETTINGS,
            gateway_latency_ms=list(LATENCIES_MS),
            clients=list(CLIENTS),
        )
        figures: list[Figure] = []
        for latency in LATENCIES_MS:
            await procs.set_latency(sandbox, latency)
            ctx.progress(f"sandbox gateway latency now {latency:g} ms")
            await warm_up(ctx, [url])
            for clients in CLIENTS:
                label = f"{latency:g} ms gateway, {clients} clients"
                found, _ = await closed_series(ctx, SCENARIO, label, [url], clients, pids)
                figures += found
        return figures
    finally:
        await procs.stop_all_async()
