"""The processes of a chaos run: broker(s), the sandbox gateway, N workers, and the faults on them.

Every method here blocks (process starts wait for readiness); the runner calls them in threads so
the load keeps flowing while a worker restarts.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orderflow.tools.localkafka import KafkaCluster
from tests.harness import (
    ManagedProcess,
    free_port,
    http_json,
    new_gateway_key,
    poll_until,
    sandbox_command,
    start_worker,
)

__all__ = ["Rig", "RigSettings"]


@dataclass(frozen=True)
class RigSettings:
    """What the rig starts and how fast faults play out."""

    work_dir: Path
    workers: int = 2
    brokers: int = 1
    controllers: int = 0  # dedicated KRaft controllers (0: every broker is also a controller)
    base_port: int = 29092
    partitions: int = 8
    seed: int = 1
    session_timeout_s: float = 6.0
    stall_after_s: float = 8.0
    gateway_timeout_s: float = 1.0
    gateway_deadline_s: float = 3.0
    post_wait_s: float = 5.0
    down_s: float = 1.0  # how long a killed process stays down before its restart
    ready_timeout_s: float = 180.0
    # A worker whose /health says it is stuck (an agent on one event, or a rebalance/recovery that
    # never ends) this long is restarted, as a supervisor's liveness probe would.
    recovery_deadline_s: float = 45.0
    liveness_failures: int = 3  # consecutive 503s from /health before the restart
    # Idempotency keys of the sandbox expire after this (0: the sandbox's own default, lax).
    gateway_key_ttl_s: float = 60.0
    sandbox_args: tuple[str, ...] = ()
    worker_env: tuple[tuple[str, str], ...] = ()


@dataclass
class _Slot:
    """A worker's identity across restarts: same port, same data dir, same log."""

    name: str
    port: int
    data_dir: Path
    proc: ManagedProcess | None = None


@dataclass
class Rig:
    """Starts, breaks and stops the processes of one run."""

    settings: RigSettings
    cluster: KafkaCluster = field(init=False)
    sandbox: ManagedProcess | None = None
    slots: dict[str, _Slot] = field(default_factory=dict)
    # Workers the load generator sends to (a removed worker leaves it; a killed one does not:
    # a load balancer without health checks keeps sending, and clients see the errors).
    in_service: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    sandbox_mode: str = ""  # the sandbox's extra flags (strict mode, key expiry), for the report
    _next_worker: int = 1
    _unhealthy: dict[str, int] = field(default_factory=dict)  # consecutive 503s per worker
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.cluster = KafkaCluster(
            state_dir=s.work_dir / "kafka",
            nodes=s.brokers,
            base_port=s.base_port,
            partitions=s.partitions,
            controllers=s.controllers,
        )
        self._rng = random.Random(f"rig-{s.seed}")

    # -- start and stop ----------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    @property
    def gateway_url(self) -> str:
        assert self.sandbox is not None
        return str(self.sandbox.meta["url"])

    def worker_urls(self) -> list[str]:
        with self._lock:
            return [f"http://127.0.0.1:{self.slots[n].port}" for n in self.in_service]

    def start(self) -> None:
        self.cluster.start()
        self.sandbox = self._start_sandbox()
        names = [self._new_slot().name for _ in range(self.settings.workers)]
        for name in names:  # start them together, then wait: startup is the slow part
            self._start_worker(name, wait=False)
        for name in names:
            self._wait_ready(name)
        with self._lock:
            self.in_service.extend(names)

    def stop(self) -> None:
        """Stop everything, whatever state the faults left it in (a stopped worker first wakes)."""
        for slot in self.slots.values():
            proc = slot.proc
            if proc is not None and proc.alive and proc.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.proc.pid, signal.SIGCONT)
        for slot in self.slots.values():
            if slot.proc is not None:
                with contextlib.suppress(Exception):
                    slot.proc.stop(timeout=20)
        if self.sandbox is not None:
            with contextlib.suppress(Exception):
                self.sandbox.stop(timeout=10)
        self.cluster.stop()

    def _sandbox_wronged_args(self) -> list[str]:
        """``--strict --key-ttl S`` when this sandbox has them (issue 14), else nothing.

        With keys that expire, a second charge request for a settled order becomes a second
        charge, and strict mode lists such requests as violations: the audit then checks what
        the service did, not what the sandbox's unique key enforced.
        """
        if self.settings.gateway_key_ttl_s <= 0:
            return []
        usage = subprocess.run(
            [sys.executable, "-m", "orderflow", "sandbox-gateway", "--help"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        ).stdout
        args = []
        if "--strict" in usage:
            args.append("--strict")
        if "--key-ttl" in usage:
            args += ["--key-ttl", str(self.settings.gateway_key_ttl_s)]
        return args

    def _start_sandbox(self) -> ManagedProcess:
        port = free_port()
        tmp = self.settings.work_dir / "sandbox"
        args = sandbox_command(
            port,
            tmp / "ledger.db",
            "--seed",
            str(self.settings.seed),
            *self._sandbox_wronged_args(),
            *self.settings.sandbox_args,
        )
        self.sandbox_mode = " ".join(args[args.index("--seed") + 2 :]) or "lax (no strict mode)"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
        env["PYTHONUNBUFFERED"] = "1"
        url = f"http://127.0.0.1:{port}"
        # Its API key, which start_worker hands the workers (by the sandbox's URL).
        env["ORDERFLOW_SANDBOX_API_KEY"] = new_gateway_key(url)
        proc = ManagedProcess("sandbox", args, env, tmp / "sandbox.log", meta={"url": url}).start()

        def answers() -> bool:
            if not proc.alive:
                raise AssertionError(f"sandbox exited:\n{proc.log_tail()}")
            try:
                return http_json("GET", f"{proc.meta['url']}/_admin/stats", timeout=2)[0] == 200
            except OSError:
                return False

        poll_until(answers, 30, 0.2, "the sandbox gateway to answer")
        return proc

    def _worker_extra(self) -> dict[str, str]:
        s = self.settings
        extra = {
            "ORDERFLOW_PARTITIONS": str(s.partitions),
            "ORDERFLOW_SESSION_TIMEOUT": str(s.session_timeout_s),
            "ORDERFLOW_STALL_AFTER": str(s.stall_after_s),
            "ORDERFLOW_GATEWAY_TIMEOUT": str(s.gateway_timeout_s),
            "ORDERFLOW_GATEWAY_DEADLINE": str(s.gateway_deadline_s),
            "ORDERFLOW_POST_WAIT": str(s.post_wait_s),
            "ORDERFLOW_RECONCILE_INTERVAL": "0.5",
            "ORDERFLOW_RECOVERY_DEADLINE": str(s.recovery_deadline_s),
            # A cancelled payment whose charge request went out is watched this long (the
            # sandbox's hangs are shorter): the drain waits for every one to be decided.
            "ORDERFLOW_CANCEL_WATCH": "20",
            # The run's webhook receiver is on 127.0.0.1; retries come soon, so the drain is short.
            "ORDERFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
            "ORDERFLOW_WEBHOOK_RETRY_FIRST": "0.5",
            "ORDERFLOW_WEBHOOK_RETRY_CAP": "4",
        }
        if s.brokers >= 3:
            extra["ORDERFLOW_REPLICATION_FACTOR"] = "3"
        extra.update(dict(s.worker_env))
        return extra

    def _new_slot(self) -> _Slot:
        name = f"w{self._next_worker}"
        self._next_worker += 1
        slot = _Slot(name, free_port(), self.settings.work_dir / "workers" / f"data-{name}")
        self.slots[name] = slot
        return slot

    def _start_worker(self, name: str, wait: bool = True) -> None:
        slot = self.slots[name]
        slot.proc = start_worker(
            self.settings.work_dir / "workers",
            self.bootstrap,
            self.gateway_url,
            name=name,
            port=slot.port,
            data_dir=slot.data_dir,
            extra=self._worker_extra(),
            wait_ready=False,
        )
        if wait:
            self._wait_ready(name)

    def _wait_ready(self, name: str) -> float:
        """Seconds until the worker's /ready answers 200 (it must stay alive meanwhile)."""
        slot = self.slots[name]
        began = time.monotonic()

        def ready() -> bool:
            proc = slot.proc
            assert proc is not None
            if not proc.alive:
                raise AssertionError(f"{name} exited while starting:\n{proc.log_tail()}")
            try:
                return http_json("GET", f"http://127.0.0.1:{slot.port}/ready", timeout=2)[0] == 200
            except OSError:
                return False

        poll_until(ready, self.settings.ready_timeout_s, 0.3, f"{name} to be ready")
        return round(time.monotonic() - began, 1)

    def _pick(self) -> str:
        with self._lock:
            return self._rng.choice(self.in_service)

    # -- process faults (each returns what happened, for the result file) --------------------

    def worker_kill(self) -> dict[str, Any]:
        name = self._pick()
        proc = self.slots[name].proc
        assert proc is not None and proc.proc is not None
        pid = proc.proc.pid
        proc.kill()
        returncode = proc.proc.returncode
        time.sleep(self.settings.down_s)
        self._start_worker(name, wait=False)
        ready_s = self._wait_ready(name)
        return {"worker": name, "pid": pid, "returncode": returncode, "ready_after_s": ready_s}

    def rolling_restart(self) -> dict[str, Any]:
        with self._lock:
            names = list(self.in_service)
        steps = []
        for name in names:
            proc = self.slots[name].proc
            assert proc is not None
            # A deployment drains a backend before it stops it: out of rotation first (requests
            # already in flight finish: the worker stops gracefully), back once ready again.
            with self._lock:
                self.in_service.remove(name)
            returncode = proc.stop(timeout=30)
            self._start_worker(name, wait=False)
            ready_s = self._wait_ready(name)
            with self._lock:
                self.in_service.append(name)
            steps.append({"worker": name, "returncode": returncode, "ready_after_s": ready_s})
        return {"workers": steps}

    def add_worker(self) -> dict[str, Any]:
        slot = self._new_slot()
        self._start_worker(slot.name, wait=False)
        ready_s = self._wait_ready(slot.name)
        with self._lock:
            self.in_service.append(slot.name)
        return {"worker": slot.name, "ready_after_s": ready_s}

    def remove_worker(self) -> dict[str, Any]:
        with self._lock:
            if len(self.in_service) < 2:
                return {"skipped": "only one worker in service"}
            name = self._rng.choice(self.in_service)
            self.in_service.remove(name)
        proc = self.slots[name].proc
        assert proc is not None
        return {"worker": name, "returncode": proc.stop(timeout=30)}

    def zombie(self) -> dict[str, Any]:
        name = self._pick()
        proc = self.slots[name].proc
        assert proc is not None and proc.proc is not None
        # Longer than the session timeout: the group moves its partitions while it sleeps.
        pause = 2 * self.settings.session_timeout_s + 2
        # Slow charges (still under the worker's gateway timeout) so that the worker is stopped
        # with a batch in the middle of its gateway calls: it wakes up still holding it.
        slow_ms = self.settings.gateway_timeout_s * 1000 * 0.7
        before = self._sandbox_faults({"latency_ms": slow_ms})
        requests_before = self._charge_requests()
        try:
            time.sleep(1.0)
            os.killpg(proc.proc.pid, signal.SIGSTOP)
        finally:
            self._sandbox_faults({"latency_ms": before.get("latency_ms", 0.0)})
        try:
            time.sleep(pause)
        finally:
            os.killpg(proc.proc.pid, signal.SIGCONT)
        ready_s = self._wait_ready(name)
        return {
            "worker": name,
            "stopped_s": pause,
            "alive": proc.alive,
            "ready_after_s": ready_s,
            "slow_charges_ms": slow_ms,
            "charge_requests_while_slow": self._charge_requests() - requests_before,
        }

    def liveness_probe(self) -> list[dict[str, Any]]:
        """Ask every worker in service for /health; restart those stuck for several probes.

        What a supervisor (a Kubernetes liveness probe, systemd's watchdog) does in production;
        a worker that does not answer at all (killed, frozen) is left to the fault that did it.
        """
        restarted = []
        with self._lock:
            names = list(self.in_service)
        for name in names:
            slot = self.slots[name]
            if slot.proc is None or not slot.proc.alive:
                continue
            try:
                status, body, _ = http_json(
                    "GET", f"http://127.0.0.1:{slot.port}/health", timeout=2
                )
            except OSError:
                continue
            failures = self._unhealthy[name] = (
                self._unhealthy.get(name, 0) + 1 if status == 503 else 0
            )
            if failures >= self.settings.liveness_failures:
                self._unhealthy[name] = 0
                slot.proc.kill()
                self._start_worker(name, wait=False)
                restarted.append({"worker": name, "health": body})
        return restarted

    def _sandbox_faults(self, change: dict[str, float]) -> dict[str, Any]:
        """Merge ``change`` into the sandbox's faults; returns the faults it had before."""
        status, before, _ = http_json("GET", f"{self.gateway_url}/_admin/faults", timeout=10)
        assert status == 200, (status, before)
        status, answer, _ = http_json(
            "POST", f"{self.gateway_url}/_admin/faults", {**before, **change}, timeout=10
        )
        assert status == 200, (status, answer)
        return dict(before)

    def _charge_requests(self) -> int:
        status, stats, _ = http_json("GET", f"{self.gateway_url}/_admin/stats", timeout=10)
        return int(stats.get("charge_requests", 0)) if status == 200 else 0

    def broker_restart(self) -> dict[str, Any]:
        node = self._rng.randint(1, self.settings.brokers)
        pid = self.cluster.running_pid(node)
        self.cluster.stop_node(node, signal.SIGKILL)
        killed = self.cluster.running_pid(node) is None
        time.sleep(max(self.settings.down_s, 3.0))
        began = time.monotonic()
        self.cluster.start_node(node)
        self.cluster.wait_ready()
        return {
            "node": node,
            "pid": pid,
            "killed": killed,
            "ready_after_s": round(time.monotonic() - began, 1),
        }

    def processes(self) -> dict[str, Any]:
        """Which worker processes are alive now (for the result file)."""
        return {name: bool(slot.proc and slot.proc.alive) for name, slot in self.slots.items()}
