"""Two workers on one machine (issue 11, scenario 6): what the second one adds.

One broker (topics with the default 8 partitions), the sandbox gateway as its own process, one
worker measured alone first, then a second worker joins the same group (the partitions are
shared after the rebalance) and the same closed loops run with the clients split over both
workers, as a load balancer would. The ratio two/one compares saturation throughputs measured in
this scenario, in the same sitting. On a 2-core machine the two workers, the broker, the sandbox
and the load generator share the cores: the ratio says what a second process buys *here*.
"""

from __future__ import annotations

from bench.context import BenchContext
from bench.measure import GATEWAY_SETTINGS, WORKER_SETTINGS, closed_series, quiet, warm_up
from bench.report import Figure

__all__ = ["CLIENTS", "run"]

SCENARIO = "two_workers"
CLIENTS = (32, 128)


async def run(ctx: BenchContext) -> list[Figure]:
    procs = ctx.procs
    broker = await procs.broker()
    sandbox = await procs.sandbox(latency_ms=0.0)
    try:
        first = await procs.worker(broker, sandbox, name="worker-1")
        one = [str(first.meta["url"])]
        pids = procs.pids(first, broker, sandbox)
        ctx.note_settings(
            workers=[1, 2],
            worker=WORKER_SETTINGS,
            gateway=GATEWAY_SETTINGS,
            gateway_latency_ms=0,
            clients=list(CLIENTS),
            split="client n sends to worker n mod 2 (a round-robin load balancer)",
        )
        figures: list[Figure] = []
        alone = 0.0
        await warm_up(ctx, one)
        for clients in CLIENTS:
            found, throughput = await closed_series(
                ctx, SCENARIO, f"1 worker, {clients} clients", one, clients, pids
            )
            figures += found
            alone = max(alone, throughput)
        second = await procs.worker(broker, sandbox, name="worker-2")
        both = [*one, str(second.meta["url"])]
        for url in both:  # the rebalance is over when both answer /ready and hold no backlog
            await procs.wait_ready(first if url == one[0] else second)
            await quiet(ctx, url)
        pids2 = {**pids, "worker 2": procs.pid(second)}
        combined = {"workers": ("worker", "worker 2")}
        await warm_up(ctx, both)
        together = 0.0
        for clients in CLIENTS:
            found, throughput = await closed_series(
                ctx,
                SCENARIO,
                f"2 workers, {clients} clients",
                both,
                clients,
                pids2,
                combined=combined,
                per_order=("workers",),
                cores=("worker", "worker 2", "broker", "sandbox"),
            )
            figures += found
            together = max(together, throughput)
        figures += ctx.measured(
            [
                Figure(SCENARIO, "1 worker: saturation", "orders/s", [alone]),
                Figure(SCENARIO, "2 workers: saturation", "orders/s", [together]),
                Figure(
                    SCENARIO, "2 workers / 1 worker", "ratio", [together / alone if alone else 0.0]
                ),
            ]
        )
        return figures
    finally:
        await procs.stop_all_async()
