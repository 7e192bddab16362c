"""The processes a scenario needs, on ports from the bench's range, and what they cost in CPU.

``Procs`` starts a broker (``orderflow.tools.localkafka``), the sandbox gateway as its own process
(so its CPU is not counted as the worker's) and orderflow workers (``faust -A orderflow.app worker
-l info``, configured as ``make run`` configures its worker, except that the gateway is that
separate sandbox process, reached with ``ORDERFLOW_GATEWAY=http``). Its starting and stopping
methods are coroutines that block in a thread (a broker's start runs its own event loop); every
process is remembered and ``stop_all`` (called by ``python -m bench`` in ``finally``, Ctrl-C
included) stops whatever a scenario left running.

CPU and memory come from ``/proc/<pid>/stat`` of the process and its descendants: utime + stime
(every thread included) and resident set size.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orderflow.tools.localkafka import DEFAULT_KAFKA_VERSION, KafkaCluster
from tests.harness import (
    TEST_API_KEY,
    TEST_CLUSTER_SECRET,
    ManagedProcess,
    auth_headers,
    http_json,
    new_gateway_key,
    poll_until,
    sandbox_command,
    write_keys_file,
)

__all__ = [
    "CLOCK_TICKS",
    "Broker",
    "ManagedProcess",
    "PortRange",
    "ProcessUsage",
    "Procs",
    "kafka_version",
    "proc_stat",
    "process_tree",
    "tree_cpu_seconds",
    "tree_rss_bytes",
    "usage",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def kafka_version() -> str:
    return os.environ.get("ORDERFLOW_KAFKA_VERSION", DEFAULT_KAFKA_VERSION)


# -- ports ----------------------------------------------------------------------------------------


@dataclass
class PortRange:
    """Ports ``base`` .. ``base + size - 1``, handed out in turn (wrapping), skipping busy ones."""

    base: int
    size: int = 100
    _next: int = 0

    def take(self, count: int = 1) -> int:
        """The first of ``count`` consecutive ports free right now."""
        for _ in range(self.size):
            if self._next + count > self.size:
                self._next = 0
            first = self.base + self._next
            self._next += count
            if all(_port_free(p) for p in range(first, first + count)):
                return first
        raise RuntimeError(
            f"no {count} free consecutive port(s) in {self.base}..{self.base + self.size - 1}"
        )


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- CPU and memory of a process tree ------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 is index 0)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its living descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := proc_stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its living descendants (all their threads)."""
    total = 0
    for p in process_tree(pid):
        if (fields := proc_stat(p)) is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def tree_rss_bytes(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        if (fields := proc_stat(p)) is not None:
            total += int(fields[21]) * PAGE_SIZE
    return total


@dataclass(frozen=True)
class ProcessUsage:
    """A process tree's CPU seconds and RSS at one moment (``usage``); subtract two for a delta."""

    cpu_s: float
    rss_bytes: int
    at: float  # time.monotonic()

    def cpu_since(self, before: ProcessUsage) -> float:
        return self.cpu_s - before.cpu_s


def usage(pid: int | None) -> ProcessUsage:
    if pid is None:
        return ProcessUsage(0.0, 0, time.monotonic())
    return ProcessUsage(tree_cpu_seconds(pid), tree_rss_bytes(pid), time.monotonic())


# -- the processes --------------------------------------------------------------------------------


@dataclass
class Broker:
    """A private KRaft cluster the bench started, or (``cluster`` None) a broker it was given."""

    cluster: KafkaCluster | None
    external: str = ""  # the given broker's bootstrap

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap if self.cluster is not None else self.external

    @property
    def pid(self) -> int | None:
        """The first node's JVM (None for a given broker: its CPU is not measured)."""
        return self.cluster.running_pid(1) if self.cluster is not None else None


@dataclass
class Procs:
    """Starts and stops a scenario's processes on ports from ``ports``, logs under ``work_dir``."""

    work_dir: Path
    ports: PortRange
    progress: Callable[[str], None] = print
    # A broker to use instead of starting one per scenario (python -m bench --bootstrap).
    external_bootstrap: str = ""
    _brokers: list[Broker] = field(default_factory=list)
    _processes: list[ManagedProcess] = field(default_factory=list)
    _count: int = 0

    @property
    def headers(self) -> dict[str, str]:
        """The request headers of the bench's API client (the workers started here know its key)."""
        return auth_headers(TEST_API_KEY)

    def _dir(self, name: str) -> Path:
        self._count += 1
        path = self.work_dir / f"{self._count:02d}-{name}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def broker(self, partitions: int = 8, nodes: int = 1) -> Broker:
        """A fresh broker (its own empty state directory); ``partitions`` per auto-created topic.
        With ``external_bootstrap``, that broker instead (shared by the scenarios, never stopped)."""
        if self.external_bootstrap:
            return Broker(None, self.external_bootstrap)
        port = self.ports.take(2 * nodes)
        cluster = KafkaCluster(
            state_dir=self._dir("kafka"), nodes=nodes, base_port=port, partitions=partitions
        )
        broker = Broker(cluster)
        self._brokers.append(broker)
        self.progress(f"starting a broker on {cluster.bootstrap}")
        await asyncio.to_thread(cluster.start)
        return broker

    async def sandbox(
        self, latency_ms: float = 0.0, extra_args: tuple[str, ...] = ()
    ) -> ManagedProcess:
        """The sandbox gateway as its own process (lax, as ``make run``'s embedded one), with
        ``latency_ms`` before each answer; ``meta``: url, port, api_key."""
        port = self.ports.take()
        directory = self._dir("sandbox")
        url = f"http://127.0.0.1:{port}"
        api_key = new_gateway_key(url)
        args = sandbox_command(
            port, directory / "ledger.db", "--latency-ms", str(latency_ms), *extra_args
        )
        proc = ManagedProcess(
            "sandbox",
            args,
            _env({"ORDERFLOW_SANDBOX_API_KEY": api_key}),
            directory / "sandbox.log",
            meta={"url": url, "port": port, "api_key": api_key},
        )
        self._processes.append(proc)
        proc.start()
        await asyncio.to_thread(_wait_answers, proc, f"{url}/_admin/stats", 60.0)
        return proc

    async def set_latency(self, sandbox: ManagedProcess, latency_ms: float) -> None:
        """Change the sandbox's latency while it runs (``/_admin/faults``)."""
        url = f"{sandbox.meta['url']}/_admin/faults"
        status, body, _ = await asyncio.to_thread(
            http_json, "POST", url, {"latency_ms": latency_ms}
        )
        if status != 200:
            raise RuntimeError(f"sandbox refused latency {latency_ms}: {status} {body}")

    def worker_env(
        self, bootstrap: str, sandbox: ManagedProcess, port: int, data_dir: Path
    ) -> dict[str, str]:
        """A worker's environment: ``make run``'s defaults, a separate sandbox over HTTP."""
        return _env(
            {
                "ORDERFLOW_KAFKA_BOOTSTRAP": bootstrap,
                "ORDERFLOW_WEB_PORT": str(port),
                "ORDERFLOW_DATA_DIR": str(data_dir),
                "ORDERFLOW_GATEWAY": "http",
                "ORDERFLOW_GATEWAY_URL": str(sandbox.meta["url"]),
                "ORDERFLOW_GATEWAY_API_KEY": str(sandbox.meta["api_key"]),
                "ORDERFLOW_API_KEYS_FILE": str(write_keys_file(self.work_dir)),
                "ORDERFLOW_CLUSTER_SECRET": TEST_CLUSTER_SECRET,
                "ORDERFLOW_LOG_LEVEL": "info",
            }
        )

    async def worker(
        self,
        broker: Broker,
        sandbox: ManagedProcess,
        *,
        name: str = "worker",
        env: Mapping[str, str] | None = None,
        wait_ready: bool = True,
        timeout: float = 180.0,
    ) -> ManagedProcess:
        """An orderflow worker; ``env`` adds or overrides ``ORDERFLOW_*`` settings; ``meta``: url,
        port, data_dir."""
        port = self.ports.take()
        directory = self._dir(name)
        full_env = self.worker_env(broker.bootstrap, sandbox, port, directory / "data")
        full_env.update(env or {})
        proc = ManagedProcess(
            name,
            [sys.executable, "-m", "faust", "-A", "orderflow.app", "worker", "-l", "info"],
            full_env,
            directory / "worker.log",
            meta={"url": f"http://127.0.0.1:{port}", "port": port, "data_dir": directory / "data"},
        )
        self._processes.append(proc)
        self.progress(f"starting {name} on {proc.meta['url']}")
        proc.start()
        if wait_ready:
            await self.wait_ready(proc, timeout)
        return proc

    async def wait_ready(self, proc: ManagedProcess, timeout: float = 180.0) -> None:
        await asyncio.to_thread(_wait_answers, proc, f"{proc.meta['url']}/ready", timeout)

    async def start(
        self, proc: ManagedProcess, ready_url: str | None = None, timeout: float = 120.0
    ) -> ManagedProcess:
        """Start any other process (a baseline), stopped with the rest; waits for ``ready_url``."""
        self._processes.append(proc)
        proc.start()
        if ready_url:
            await asyncio.to_thread(_wait_answers, proc, ready_url, timeout)
        return proc

    async def stop(self, thing: ManagedProcess | Broker) -> None:
        await asyncio.to_thread(self._stop, thing)

    def _stop(self, thing: ManagedProcess | Broker) -> None:
        if isinstance(thing, Broker):
            if thing.cluster is not None:
                thing.cluster.stop()
            with contextlib.suppress(ValueError):
                self._brokers.remove(thing)
        else:
            thing.stop(timeout=30)
            with contextlib.suppress(ValueError):
                self._processes.remove(thing)

    def stop_all(self) -> None:
        """Stop every process started here and still running: workers first, the broker last."""
        for proc in reversed(list(self._processes)):
            with contextlib.suppress(Exception):
                self._stop(proc)
        for broker in reversed(list(self._brokers)):
            with contextlib.suppress(Exception):
                self._stop(broker)

    async def stop_all_async(self) -> None:
        await asyncio.to_thread(self.stop_all)

    @staticmethod
    def pid(thing: ManagedProcess | Broker) -> int | None:
        if isinstance(thing, Broker):
            return thing.pid
        return thing.proc.pid if thing.proc is not None else None

    def pids(
        self, worker: ManagedProcess, broker: Broker, sandbox: ManagedProcess
    ) -> dict[str, int | None]:
        """The pids a scenario measures, by name: its worker, broker and sandbox gateway."""
        return {
            "worker": self.pid(worker),
            "broker": self.pid(broker),
            "sandbox": self.pid(sandbox),
        }

    def usage(self, thing: ManagedProcess | Broker) -> ProcessUsage:
        """CPU seconds and RSS of the process tree now."""
        return usage(self.pid(thing))


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _wait_answers(proc: ManagedProcess, url: str, timeout: float) -> Any:
    def check() -> bool:
        if not proc.alive:
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        try:
            return http_json("GET", url, timeout=2)[0] == 200
        except OSError:
            return False

    return poll_until(check, timeout, 0.2, f"{proc.name} to answer {url}")
