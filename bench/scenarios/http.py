"""HTTP end to end on one worker (issue 11, scenario 4): closed-loop saturation with 1, 32 and 128
clients, then open-loop fixed rates (100/s, 500/s and 80 % of the measured saturation).

One broker, the sandbox gateway as its own process (0 ms latency), one worker as ``make run``
starts it. A closed-loop warm-up first (not counted); between measurements the worker settles
(no order in progress). Worker CPU per order is its process tree's CPU over the measured window
divided by the orders completed in it.
"""

from __future__ import annotations

from bench.context import BenchContext
from bench.measure import (
    GATEWAY_SETTINGS,
    WORKER_SETTINGS,
    closed_series,
    open_series,
    warm_up,
)
from bench.report import Figure

__all__ = ["CLIENTS", "OPEN_RATES", "SATURATION_SHARE", "run"]

SCENARIO = "http"
CLIENTS = (1, 32, 128)
OPEN_RATES = (100.0, 500.0)  # and a share of the saturation:
SATURATION_SHARE = 0.8


async def run(ctx: BenchContext) -> list[Figure]:
    procs = ctx.procs
    broker = await procs.broker()
    sandbox = await procs.sandbox(latency_ms=0.0)
    try:
        worker = await procs.worker(broker, sandbox)
        url = str(worker.meta["url"])
        pids = procs.pids(worker, broker, sandbox)
        ctx.note_settings(
            workers=1, worker=WORKER_SETTINGS, gateway=GATEWAY_SETTINGS, gateway_latency_ms=0
        )
        await warm_up(ctx, [url])
        figures: list[Figure] = []
        saturation = 0.0
        for clients in CLIENTS:
            label = f"closed {clients} client{'s' if clients > 1 else ''}"
            found, throughput = await closed_series(ctx, SCENARIO, label, [url], clients, pids)
            figures += found
            saturation = max(saturation, throughput)
        figures += ctx.measured(
            [Figure(SCENARIO, "saturation (best closed loop)", "orders/s", [saturation])]
        )
        rates = [(f"open {r:g}/s", r) for r in OPEN_RATES]
        share = max(1.0, round(SATURATION_SHARE * saturation))
        rates.append((f"open {SATURATION_SHARE:.0%} of saturation", share))
        # Lowest rate first: a rate over the saturation leaves a backlog behind it. Such a rate
        # runs once (its figure says how many orders it missed; a repetition would only start
        # on the previous one's backlog) and is given longer to work that backlog off.
        rates.sort(key=lambda item: item[1])
        ctx.note_settings(
            open_rates={label: rate for label, rate in rates},
            open_over_saturation="one repetition, then up to 600 s for the backlog",
        )
        for label, rate in rates:
            over = rate > saturation
            figures += await open_series(
                ctx,
                SCENARIO,
                label,
                [url],
                rate,
                pids,
                reps=1 if over else None,
                settle_s=ctx.seconds(600.0, 60.0) if over else ctx.seconds(120.0, 60.0),
            )
        rss = procs.usage(worker).rss_bytes / 2**20
        figures += ctx.measured([Figure(SCENARIO, "worker RSS after the scenario", "MiB", [rss])])
        return figures
    finally:
        await procs.stop_all_async()
