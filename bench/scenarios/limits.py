"""The limits of this machine, as baselines (issue 11, scenario 1).

1. Kafka's own ``ProducerPerformance`` and ``ConsumerPerformance`` (``bench.baselines.kafka_perf``)
   against a fresh broker: records/s and MB/s for 300-byte records, acks=all.
2. ``bench.baselines.raw_relay``: a minimal aiokafka consume -> produce relay with JSON
   decode/encode, messages/s and its CPU per message.
3. ``bench.baselines.bare_aiohttp`` under the bench's closed-loop load generator (32 and 128
   clients): the HTTP ceiling of this machine with this load generator.

Each part that cannot run (no Maven or JDK for the perf tools) is reported and skipped; the other
parts still give their figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import uuid
from pathlib import Path

from bench.baselines import kafka_perf
from bench.context import BenchContext
from bench.loadgen import closed_loop
from bench.measure import Measured, load_figures, measured
from bench.procs import Broker, ManagedProcess
from bench.report import Figure
from orderflow.tools.localkafka import KafkaLauncherError
from tests.kafka_helpers import create_topic

__all__ = ["HTTP_CLIENTS", "run"]

SCENARIO = "limits"
HTTP_CLIENTS = (32, 128)
ROOT = Path(__file__).resolve().parents[2]


async def run(ctx: BenchContext) -> list[Figure]:
    procs = ctx.procs
    try:
        broker = await procs.broker()
        figures = await _kafka_tools(ctx, broker)
        figures += await _raw_relay(ctx, broker)
        await procs.stop(broker)
        figures += await _bare_aiohttp(ctx)
        return figures
    finally:
        await procs.stop_all_async()


async def _kafka_tools(ctx: BenchContext, broker: Broker) -> list[Figure]:
    records = 50_000 if ctx.quick else 1_000_000
    try:
        libs = await asyncio.to_thread(kafka_perf.ensure_tools_jars)
    except KafkaLauncherError as exc:
        ctx.progress(f"Kafka's perf tools are not available, skipped: {exc}")
        return []
    ctx.note_settings(
        kafka_perf_tools=(
            f"org.apache.kafka.tools.ProducerPerformance/ConsumerPerformance, {records} records "
            f"of {kafka_perf.RECORD_SIZE} B, acks=all, topic of {kafka_perf.PARTITIONS} partitions, "
            "fresh topic and consumer group per repetition; consumer figures are the tool's fetch "
            "rate"
        )
    )
    produced: list[kafka_perf.PerfResult] = []
    consumed: list[kafka_perf.PerfResult] = []
    for rep in range(ctx.reps):
        topic = f"bench-perf-{uuid.uuid4().hex[:8]}"
        await create_topic(broker.bootstrap, topic, partitions=kafka_perf.PARTITIONS)
        p = await asyncio.to_thread(
            kafka_perf.producer_perf, libs, broker.bootstrap, topic, records
        )
        c = await asyncio.to_thread(
            kafka_perf.consumer_perf, libs, broker.bootstrap, topic, records
        )
        produced.append(p)
        consumed.append(c)
        ctx.progress(
            f"kafka perf tools, rep {rep + 1}/{ctx.reps}: producer {p.records_per_s:,.0f} "
            f"records/s ({p.mb_per_s:.1f} MB/s), consumer {c.records_per_s:,.0f} records/s "
            f"({c.mb_per_s:.1f} MB/s)"
        )
    size = f"{kafka_perf.RECORD_SIZE} B"
    return [
        Figure(
            SCENARIO,
            f"kafka producer perf ({size}, acks=all)",
            "records/s",
            [p.records_per_s for p in produced],
        ),
        Figure(
            SCENARIO,
            f"kafka producer perf ({size}, acks=all)",
            "MB/s",
            [p.mb_per_s for p in produced],
        ),
        Figure(
            SCENARIO,
            f"kafka consumer perf ({size})",
            "records/s",
            [c.records_per_s for c in consumed],
        ),
        Figure(SCENARIO, f"kafka consumer perf ({size})", "MB/s", [c.mb_per_s for c in consumed]),
    ]


async def _raw_relay(ctx: BenchContext, broker: Broker) -> list[Figure]:
    messages = 20_000 if ctx.quick else 200_000
    ctx.note_settings(
        raw_relay=(
            f"bench.baselines.raw_relay as its own process: {messages} JSON events of ~300 B "
            "relayed between two 8-partition topics (aiokafka getmany, stdlib json, acks=all, "
            "linger 5 ms, batches up to 256 KiB); timed from the first read to the last ack"
        )
    )
    rates, cpu_us = [], []
    for rep in range(ctx.reps):
        found = await _run_json_tool(
            [
                sys.executable,
                "-m",
                "bench.baselines.raw_relay",
                "--bootstrap",
                broker.bootstrap,
                "--messages",
                str(messages),
            ]
        )
        rates.append(found["per_s"])
        cpu_us.append(found["cpu_s"] * 1e6 / found["messages"])
        ctx.progress(
            f"raw aiokafka relay, rep {rep + 1}/{ctx.reps}: {found['per_s']:,.0f} messages/s, "
            f"{cpu_us[-1]:.1f} us CPU/message"
        )
    return [
        Figure(SCENARIO, "raw aiokafka relay (JSON)", "messages/s", rates),
        Figure(SCENARIO, "raw aiokafka relay (JSON): CPU per message", "us", cpu_us),
    ]


async def _run_json_tool(args: list[str]) -> dict[str, float]:
    """Run a baseline process to its end; the JSON object on its last stdout line."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=600)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{args[2]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    found: dict[str, float] = json.loads(lines[-1])
    return found


async def _bare_aiohttp(ctx: BenchContext) -> list[Figure]:
    procs = ctx.procs
    port = procs.ports.take()
    directory = ctx.work_dir / "bare-aiohttp"
    directory.mkdir(parents=True, exist_ok=True)
    server = ManagedProcess(
        "bare_aiohttp",
        [sys.executable, "-m", "bench.baselines.bare_aiohttp", "--port", str(port)],
        _env(),
        directory / "server.log",
    )
    url = f"http://127.0.0.1:{port}"
    ctx.progress(f"starting the bare aiohttp baseline on {url}")
    await procs.start(server, ready_url=f"{url}/health", timeout=60)
    pids = {"server": procs.pid(server)}
    window, warmup = ctx.seconds(20, 3), ctx.seconds(5, 1)
    ctx.note_settings(
        bare_aiohttp=(
            "bench.baselines.bare_aiohttp as its own process: POST /orders answers 201 PAID, "
            "GET /orders/{id} from a dict; no Kafka, no gateway"
        ),
        bare_aiohttp_clients=list(HTTP_CLIENTS),
    )
    await closed_loop(url, HTTP_CLIENTS[0], ctx.seconds(5, 1), 0.0, procs.headers)
    figures: list[Figure] = []
    for clients in HTTP_CLIENTS:
        label = f"bare aiohttp, closed {clients} clients"
        runs: list[Measured] = []
        for rep in range(ctx.reps):
            load = closed_loop(
                url, clients, window, warmup, procs.headers, processes=ctx.loadgen_processes
            )
            runs.append(await measured(load, pids))
            ctx.progress(
                f"{label}, rep {rep + 1}/{ctx.reps}: {runs[-1].load.summary()}; server "
                f"{runs[-1].cores('server'):.2f} cores"
            )
        figures += load_figures(SCENARIO, label, runs, per_order=("server",), cores=("server",))
        ctx.progress(
            f"{label}: median {statistics.median(r.load.orders_per_s for r in runs):,.0f} orders/s"
        )
    await procs.stop(server)
    return figures


def _env() -> dict[str, str]:
    """The environment of a baseline process: ours, without orderflow's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env
