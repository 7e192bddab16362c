"""Processes for tests: a worker (``faust -A orderflow.app worker``) and the sandbox gateway.

Every process is started in its own session and stopped (SIGTERM, then SIGKILL) by its fixture,
so no test leaves a process behind for the next run or for CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from orderflow.domain.auth import hash_key, new_api_key, sign_forward
from orderflow.domain.idempotency import order_id_for_key
from orderflow.web.auth import CLIENT_HEADER, FORWARDED_HEADER

__all__ = [
    "GATEWAY_KEYS",
    "OTHER_API_KEY",
    "OTHER_CLIENT",
    "TEST_API_KEY",
    "TEST_CLIENT",
    "TEST_CLUSTER_SECRET",
    "TEST_KEY_TTL_S",
    "ManagedProcess",
    "auth_headers",
    "forwarded_headers",
    "free_port",
    "http_json",
    "key_order_id",
    "new_gateway_key",
    "poll_until",
    "sandbox_command",
    "start_sandbox",
    "start_worker",
    "write_keys_file",
]

T = TypeVar("T")

# One pair of API keys and one cluster secret per test run: every worker a test starts gets them
# (start_worker), and http_json sends TEST_API_KEY to /orders unless told otherwise.
TEST_CLIENT = "test-client"
TEST_API_KEY = new_api_key()
OTHER_CLIENT = "other-client"
OTHER_API_KEY = new_api_key()
TEST_CLUSTER_SECRET = secrets.token_hex(32)


def auth_headers(key: str = TEST_API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def key_order_id(key: str, client_id: str = TEST_CLIENT) -> str:
    """The order id (generation 0) a test client's Idempotency-Key names."""
    return order_id_for_key(TEST_CLUSTER_SECRET.encode(), client_id, key)


def forwarded_headers(method: str, path_qs: str, client_id: str = TEST_CLIENT) -> dict[str, str]:
    """The headers of a request a worker forwards (signed with the cluster secret): the worker
    receiving it answers itself, never forwards it again (503 when it does not own the order)."""
    timestamp, signature = sign_forward(
        TEST_CLUSTER_SECRET.encode(), method, path_qs, client_id, b"", time.time()
    )
    return {FORWARDED_HEADER: f"{timestamp} {signature}", CLIENT_HEADER: client_id}


def write_keys_file(directory: Path) -> Path:
    """The keys file of the test clients (hashes only), in ``directory``."""
    path = directory / "api-keys"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"# test clients\n{TEST_CLIENT} {hash_key(TEST_API_KEY)}\n"
            f"{OTHER_CLIENT} {hash_key(OTHER_API_KEY)}\n"
        )
    return path


# Every process a test started: the session's last fixture stops any a failing test left behind.
STARTED: list[ManagedProcess] = []

# The API key of each sandbox started here, by URL: start_worker sends the right one.
GATEWAY_KEYS: dict[str, str] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll_until(
    check: Callable[[], T | None], timeout: float, interval: float = 0.1, what: str = "condition"
) -> T:
    """Call ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 35.0,
) -> tuple[int, Any, dict[str, str]]:
    """A small blocking HTTP client: (status, decoded JSON or None, headers).

    Requests to ``/orders`` carry the test client's API key unless ``headers`` names an
    ``Authorization`` (an empty one: no header at all).
    """
    data = (
        body if isinstance(body, bytes) else (None if body is None else json.dumps(body).encode())
    )
    sent = dict(headers or {})
    if "Authorization" not in sent and urlsplit(url).path.startswith("/orders"):
        sent.update(auth_headers())
    if sent.get("Authorization") == "":
        del sent["Authorization"]
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    if data is not None and "Content-Type" not in sent:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status, hdrs = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, hdrs = exc.read(), exc.code, dict(exc.headers)
    try:
        return status, json.loads(raw) if raw else None, hdrs
    except ValueError:
        return status, raw.decode(errors="replace"), hdrs


@dataclass
class ManagedProcess:
    """A subprocess with its log file; ``stop`` is graceful, ``kill`` is SIGKILL."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def start(self) -> ManagedProcess:
        STARTED.append(self)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole process group; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap_group()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def _reap_group(self) -> None:
        # Children (none expected) must not outlive the test either.
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def _base_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# Tests run the sandbox strict, with keys that expire after 20 s: longer than any gateway
# deadline the tests use (so a legitimate retry never crosses it), short enough that a re-charge
# of a settled payment later in a test makes a second charge, which the audits then see.
TEST_KEY_TTL_S = 20.0


def sandbox_command(port: int, db: Path, *extra: str) -> list[str]:
    """The command line of the sandbox gateway as its own process, ledger at ``db``."""
    return [
        sys.executable,
        "-m",
        "orderflow",
        "sandbox-gateway",
        "--port",
        str(port),
        "--db",
        str(db),
        *extra,
    ]


def new_gateway_key(url: str) -> str:
    """A new API key for the sandbox at ``url``, remembered in ``GATEWAY_KEYS`` for workers."""
    key = GATEWAY_KEYS[url] = f"sk_test_{secrets.token_hex(12)}"
    return key


def start_sandbox(
    tmp: Path,
    port: int | None = None,
    db: Path | None = None,
    *,
    strict: bool = True,
    key_ttl_s: float = TEST_KEY_TTL_S,
) -> ManagedProcess:
    """The sandbox gateway as its own process, with its SQLite ledger at ``db``."""
    port = port or free_port()
    db = db or tmp / "ledger.db"
    args = sandbox_command(port, db, "--key-ttl", str(key_ttl_s))
    if strict:
        args.append("--strict")
    url = f"http://127.0.0.1:{port}"
    # A key per sandbox, in its environment (not its command line): workers must send it.
    api_key = new_gateway_key(url)
    proc = ManagedProcess(
        "sandbox",
        args,
        _base_env({"ORDERFLOW_SANDBOX_API_KEY": api_key}),
        tmp / f"sandbox-{port}.log",
        meta={"url": url, "db": db, "port": port, "api_key": api_key},
    ).start()
    poll_until(
        lambda: _answers(f"http://127.0.0.1:{port}/_admin/stats") or _dead(proc),
        30,
        what="the sandbox gateway to answer",
    )
    return proc


def _answers(url: str) -> bool:
    try:
        return http_json("GET", url, timeout=2)[0] == 200
    except OSError:
        return False


def _dead(proc: ManagedProcess) -> bool:
    if not proc.alive:
        raise AssertionError(f"{proc.name} exited:\n{proc.log_tail()}")
    return False


def start_worker(
    tmp: Path,
    bootstrap: str,
    gateway_url: str,
    *,
    name: str = "w1",
    port: int | None = None,
    data_dir: Path | None = None,
    extra: Mapping[str, str] | None = None,
    wait_ready: bool = True,
    timeout: float = 120.0,
    gateway_api_key: str | None = None,
) -> ManagedProcess:
    """``faust -A orderflow.app worker`` with its own web port and data dir; waits for /ready.

    The worker calls the gateway at ``gateway_url`` with ``gateway_api_key``, by default the key
    of the sandbox started there (``start_sandbox``).
    """
    port = port or free_port()
    data_dir = data_dir or tmp / f"data-{name}"
    env = _base_env(
        {
            "ORDERFLOW_KAFKA_BOOTSTRAP": bootstrap,
            "ORDERFLOW_WEB_PORT": str(port),
            "ORDERFLOW_DATA_DIR": str(data_dir),
            "ORDERFLOW_GATEWAY": "http",
            "ORDERFLOW_GATEWAY_URL": gateway_url,
            "ORDERFLOW_GATEWAY_API_KEY": gateway_api_key
            or GATEWAY_KEYS.get(gateway_url.rstrip("/"), "sk_test_no_sandbox_here"),
            "ORDERFLOW_RECONCILE_INTERVAL": "0.5",
            # The tests read the stored order from the POST's answer (201): a loaded CI machine
            # must not turn it into a 202 (the chaos rig keeps the default).
            "ORDERFLOW_STORE_WAIT": "10",
            "ORDERFLOW_API_KEYS_FILE": str(write_keys_file(tmp)),
            "ORDERFLOW_CLUSTER_SECRET": TEST_CLUSTER_SECRET,
            **(extra or {}),
        }
    )
    proc = ManagedProcess(
        name,
        [sys.executable, "-m", "faust", "-A", "orderflow.app", "worker", "-l", "info"],
        env,
        tmp / f"worker-{name}.log",
        meta={"url": f"http://127.0.0.1:{port}", "port": port, "data_dir": data_dir},
    ).start()
    if wait_ready:
        wait_worker_ready(proc, timeout)
    return proc


def wait_worker_ready(proc: ManagedProcess, timeout: float = 120.0) -> None:
    url = f"{proc.meta['url']}/ready"
    poll_until(lambda: _answers(url) or _dead(proc), timeout, 0.2, f"{proc.name} to be ready")
