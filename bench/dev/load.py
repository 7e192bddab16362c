"""Throwaway closed-loop load for profiling one worker (issue 11, helper D; not `make bench`).

A fresh broker (own ports), the sandbox gateway as its own process, one worker; N clients each
POST an order then long-poll it until terminal, again and again. Prints orders/s, p50/p99
POST->terminal and the worker's CPU ms per order over the measured window. Optionally runs py-spy
on the worker during the window.

    .venv/bin/python -m bench.dev.load --clients 32 --seconds 30 [--env K=V ...] [--profile out]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from orderflow.tools.localkafka import KafkaCluster
from tests.harness import auth_headers, start_sandbox, start_worker

TERMINAL = {"PAID", "PAYMENT_FAILED"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def thread_cpu(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            out[f"{name}-{task.name}"] = _task_cpu(task)
        except OSError:
            pass
    return out


def _task_cpu(task: Path) -> float:
    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def counters(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        k, v = line.split(":")
        if k in ("syscr", "syscw"):
            out[k] = int(v)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if "ctxt_switches" in line:
            k, v = line.split(":")
            out[k] = int(v)
    return out


class Receiver:
    """A webhook endpoint answering 200 to every POST, in the load's loop (``--webhook``)."""

    def __init__(self) -> None:
        self.posts = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.posts += 1
        return web.Response(status=200)

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hooks"

    async def register(self, session: aiohttp.ClientSession, worker_url: str) -> None:
        """Register the endpoint for the load's client (the worker reads the topic first)."""
        for _ in range(100):
            async with session.post(f"{worker_url}/webhooks", json={"url": self.url}) as resp:
                if resp.status == 201:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError("POST /webhooks never answered 201")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Load:
    def __init__(self, url: str, clients: int, receiver: Receiver | None = None) -> None:
        self.url = url
        self.clients = clients
        self.receiver = receiver
        self.done: list[tuple[float, float]] = []  # (end time, POST->terminal seconds)
        self.errors: dict[str, int] = {}
        self.stop = False
        self.tickets: asyncio.Queue[None] | None = None

    async def ticketer(self, rate: float) -> None:
        assert self.tickets is not None
        start, i = time.monotonic(), 0
        while not self.stop:
            i += 1
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            if self.tickets.qsize() < self.clients:
                self.tickets.put_nowait(None)

    async def client(self, session: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while not self.stop:
            if self.tickets is not None:
                await self.tickets.get()
            i += 1
            body = {
                "customer_id": f"c-{n}",
                "currency": "EUR",
                "items": [{"sku": "SKU-1", "quantity": 2, "unit_amount": 1999}],
                "payment": {"token": "tok_visa" if i % 10 else "tok_chargeDeclined"},
            }
            start = time.monotonic()
            try:
                async with session.post(
                    f"{self.url}/orders",
                    json=body,
                    headers={"Idempotency-Key": f"bench-{n}-{i}-{start}"},
                ) as resp:
                    answer = await resp.json()
                    if resp.status not in (201, 202):
                        self.errors[f"post {resp.status}"] = (
                            self.errors.get(f"post {resp.status}", 0) + 1
                        )
                        await asyncio.sleep(0.2)
                        continue
                order_id = answer["order_id"]
                status = answer.get("status")
                while status not in TERMINAL and not self.stop:
                    async with session.get(f"{self.url}/orders/{order_id}?wait=10") as resp:
                        if resp.status != 200:
                            key = f"get {resp.status}"
                            self.errors[key] = self.errors.get(key, 0) + 1
                            await asyncio.sleep(0.1)
                            continue
                        status = (await resp.json())["status"]
                if status in TERMINAL:
                    end = time.monotonic()
                    self.done.append((end, end - start))
            except (TimeoutError, aiohttp.ClientError) as exc:
                key = type(exc).__name__
                self.errors[key] = self.errors.get(key, 0) + 1
                await asyncio.sleep(0.2)

    async def run(
        self, warmup: float, seconds: float, pid: int, on_window: Any, rate: float
    ) -> dict[str, Any]:
        if rate:
            self.tickets = asyncio.Queue()
            self.ticketer_task = asyncio.create_task(self.ticketer(rate))
        connector = aiohttp.TCPConnector(limit=self.clients * 2)
        async with aiohttp.ClientSession(connector=connector, headers=auth_headers()) as session:
            if self.receiver is not None:
                await self.receiver.register(session, self.url)
            tasks = [asyncio.create_task(self.client(session, n)) for n in range(self.clients)]
            await asyncio.sleep(warmup)
            t0, c0, n0 = time.monotonic(), cpu_s(pid), len(self.done)
            posts0 = self.receiver.posts if self.receiver is not None else 0
            th0 = thread_cpu(pid)
            k0 = counters(pid)
            profiler = on_window()
            await asyncio.sleep(seconds)
            t1, c1 = time.monotonic(), cpu_s(pid)
            posts1 = self.receiver.posts if self.receiver is not None else 0
            th1 = thread_cpu(pid)
            k1 = counters(pid)
            window = [lat for end, lat in self.done[n0:] if end <= t1]
            self.stop = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if profiler is not None:
                await asyncio.to_thread(profiler.wait)
        n = len(window)
        lat = sorted(window)
        return {
            "orders": n,
            "orders_per_s": round(n / (t1 - t0), 1),
            "worker_cpu_ms_per_order": round(1000 * (c1 - c0) / max(n, 1), 3),
            "worker_cpu_share": round((c1 - c0) / (t1 - t0), 2),
            "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
            "p99_ms": round(1000 * lat[int(0.99 * (n - 1))], 1) if lat else None,
            "errors": self.errors,
            "webhook_posts_per_order": round((posts1 - posts0) / max(n, 1), 2),
            "per_order": {k: round((k1[k] - k0[k]) / max(n, 1), 1) for k in k1},
            "threads_cpu_share": {
                k: round((v - th0.get(k, 0.0)) / (t1 - t0), 3)
                for k, v in th1.items()
                if v - th0.get(k, 0.0) > 0.005 * (t1 - t0)
            },
        }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--base-port", type=int, default=27150)
    parser.add_argument("--env", action="append", default=[], help="worker env K=V")
    parser.add_argument("--profile", default=None, help="py-spy output prefix (svg+speedscope)")
    parser.add_argument("--native", action="store_true")
    parser.add_argument("--strace", default=None, help="strace -c output file")
    parser.add_argument("--label", default="")
    parser.add_argument("--rate", type=float, default=0.0, help="orders/s cap (0: closed loop)")
    parser.add_argument(
        "--webhook", action="store_true", help="register a webhook endpoint (200 to every POST)"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-d-", dir=Path(".run").absolute()))
    cluster = KafkaCluster(state_dir=tmp / "kafka", base_port=args.base_port)
    cluster.start()
    sandbox = worker = None
    try:
        sandbox = start_sandbox(tmp, port=args.base_port + 10, strict=False, key_ttl_s=86400)
        extra = dict(e.split("=", 1) for e in args.env)
        if args.webhook:  # (the receiver is on 127.0.0.1)
            extra.setdefault("ORDERFLOW_WEBHOOK_ALLOW_PRIVATE", "true")
        worker = start_worker(
            tmp, cluster.bootstrap, sandbox.meta["url"], port=args.base_port + 11, extra=extra
        )
        pid = worker.proc.pid  # type: ignore[union-attr]

        def on_window() -> subprocess.Popen[bytes] | None:
            if args.strace:
                return subprocess.Popen(
                    [
                        "timeout",
                        "-s",
                        "INT",
                        str(int(args.seconds)),
                        "strace",
                        "-f",
                        "-c",
                        "-o",
                        args.strace,
                        "-p",
                        str(pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            if not args.profile:
                return None
            cmd = [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(args.seconds)),
                "--rate",
                "200",
                "--format",
                "raw",
                "--nonblocking",
                "--threads",
                "-o",
                f"{args.profile}.txt",
            ]
            if args.native:
                cmd.append("--native")
            return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        async def measure() -> dict[str, Any]:
            receiver = Receiver() if args.webhook else None
            if receiver is not None:
                await receiver.start(args.base_port + 12)
            try:
                return await Load(worker_url, args.clients, receiver).run(
                    args.warmup, args.seconds, pid, on_window, args.rate
                )
            finally:
                if receiver is not None:
                    await receiver.stop()

        worker_url = worker.meta["url"]
        result = asyncio.run(measure())
        result["webhook"] = args.webhook
        result["rate"] = args.rate
        result["label"] = args.label
        result["env"] = extra
        result["load1"] = os.getloadavg()[0]
        print(json.dumps(result))
        with open(".run/bench-dev-results.jsonl", "a") as out:
            out.write(json.dumps(result) + "\n")
    finally:
        if worker is not None:
            worker.stop()
        if sandbox is not None:
            sandbox.stop()
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
