"""A Stripe-like sandbox payment gateway: an aiohttp app over an aiosqlite ledger, with faults.

The ledger is a SQLite file, so charges survive restarts. Each idempotency key names at most one
charge (a UNIQUE constraint, and a per-key lock so concurrent requests with one key queue instead of
racing); a repeated key with the same parameters gets the first response again, byte for byte.

Faults (latency, 5xx, hangs, and "charge, then drop the response") make the client's retry and
idempotency paths testable; they are set at construction or through ``/_admin/faults``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import signal
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, astuple, dataclass, field, fields, replace
from pathlib import Path

import aiosqlite
from aiohttp import web

from orderflow.domain.payment import Approved, sandbox_decision

__all__ = [
    "ChargeRow",
    "Faults",
    "Ledger",
    "SandboxGateway",
    "main",
    "run_sandbox",
]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_RATE_FIELDS = ("error_rate", "timeout_rate", "drop_response_rate")


@dataclass(frozen=True)
class Faults:
    """What the sandbox does wrong, and how often; the default does nothing wrong.

    Rates are probabilities per ``/v1`` request. ``error_rate`` answers 500/503 and
    ``timeout_rate`` hangs ``hang_s`` seconds, both before charging; ``drop_response_rate``
    applies to requests that created a charge: committed to the ledger, then the connection is
    closed without an answer.
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    drop_response_rate: float = 0.0
    hang_s: float = 60.0  # longer than any client timeout

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name} must be a number, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{f.name}={value} must be finite and >= 0")
        for name in _RATE_FIELDS:
            if getattr(self, name) > 1:
                raise ValueError(f"{name}={getattr(self, name)} must be between 0 and 1")

    @classmethod
    def from_json(cls, data: object) -> Faults:
        """Build from a JSON object: omitted fields take defaults, unknown ones are refused."""
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class ChargeRow:
    """One ledger row: the charge and the exact response first given for its idempotency key."""

    id: str
    idempotency_key: str
    params: str  # canonical JSON of the request parameters, to refuse a reused key
    order_id: str
    amount: int
    currency: str
    source: str
    status: str  # "succeeded" | "failed"
    failure_code: str | None
    failure_message: str | None
    http_status: int
    response_body: str
    created: int

    def to_charge(self) -> dict[str, object]:
        """The Stripe-like charge object."""
        return {
            "id": self.id,
            "object": "charge",
            "status": self.status,
            "amount": self.amount,
            "currency": self.currency,
            "idempotency_key": self.idempotency_key,
            "order_id": self.order_id,
            "failure_code": self.failure_code,
            "failure_message": self.failure_message,
            "created": self.created,
        }


_COLUMNS = tuple(f.name for f in fields(ChargeRow))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM charges"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    id              TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    params          TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    source          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    failure_code    TEXT,
    failure_message TEXT,
    http_status     INTEGER NOT NULL,
    response_body   TEXT NOT NULL,
    created         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_order_id ON charges (order_id);
"""


class Ledger:
    """The charges table in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = aiosqlite.connect(self.path)
        # aiosqlite runs a thread per connection; a daemon one never keeps a stopping worker
        # (which embeds the sandbox) alive if the sandbox was not closed.
        connection._thread.daemon = True  # (private: aiosqlite offers no option for it)
        db = await connection
        # WAL: readers never block the writer, and a committed charge survives a killed process.
        await db.execute("PRAGMA journal_mode=WAL")
        await db.executescript(_SCHEMA)
        await db.commit()
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("ledger is not open")
        return self._db

    async def _select(self, where: str = "", args: tuple[object, ...] = ()) -> list[ChargeRow]:
        async with self.db.execute(f"{_SELECT} {where}", args) as cursor:
            return [ChargeRow(*row) for row in await cursor.fetchall()]

    async def by_key(self, idempotency_key: str) -> ChargeRow | None:
        rows = await self._select("WHERE idempotency_key = ?", (idempotency_key,))
        return rows[0] if rows else None

    async def by_id(self, charge_id: str) -> ChargeRow | None:
        rows = await self._select("WHERE id = ?", (charge_id,))
        return rows[0] if rows else None

    async def rows(self, order_id: str | None = None) -> list[ChargeRow]:
        if order_id is None:
            return await self._select("ORDER BY created, rowid")
        return await self._select("WHERE order_id = ? ORDER BY created, rowid", (order_id,))

    async def insert(self, row: ChargeRow) -> bool:
        """Store ``row``; False when its idempotency key is taken already (nothing stored)."""
        placeholders = ", ".join("?" for _ in _COLUMNS)
        try:
            await self.db.execute(
                f"INSERT INTO charges ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                astuple(row),
            )
        except sqlite3.IntegrityError:
            await self.db.rollback()
            return False
        await self.db.commit()
        return True

    async def stats(self) -> dict[str, object]:
        async with self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(status = 'succeeded'), 0),"
            " COALESCE(SUM(status = 'failed'), 0) FROM charges"
        ) as cursor:
            total, succeeded, failed = await cursor.fetchone() or (0, 0, 0)
        async with self.db.execute(
            "SELECT order_id, COUNT(*) FROM charges GROUP BY order_id"
        ) as cursor:
            per_order = {order_id: count for order_id, count in await cursor.fetchall()}
        return {"charges": total, "succeeded": succeeded, "failed": failed, "per_order": per_order}


@dataclass
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class _KeyLocks:
    """One lock per idempotency key, forgotten once nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, _KeyLock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._locks.setdefault(key, _KeyLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]


@dataclass(frozen=True)
class _ChargeParams:
    amount: int
    currency: str
    source: str
    metadata: dict[str, str]

    @property
    def order_id(self) -> str:
        return self.metadata["order_id"]

    def canonical(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


def _parse_charge(body: object) -> _ChargeParams | tuple[str, str]:
    """The charge parameters, or ``(param, message)`` naming what is wrong."""
    if not isinstance(body, dict):
        return "body", "the body must be a JSON object"
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return "amount", "amount must be a positive integer (minor units)"
    currency = body.get("currency")
    if not isinstance(currency, str) or not currency:
        return "currency", "currency must be a non-empty string"
    source = body.get("source")
    if not isinstance(source, str) or not source:
        return "source", "source must be a payment token"
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        return "metadata", "metadata must be an object of strings"
    if not metadata.get("order_id"):
        return "metadata[order_id]", "metadata.order_id is required"
    return _ChargeParams(amount, currency, source, metadata)


def _error(status: int, type_: str, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": {"type": type_, "message": message, **extra}}, status=status)


def _json_text(status: int, text: str, *, replayed: bool = False) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


def _abort(request: web.Request) -> web.StreamResponse:
    """Close the connection without answering: the client sees a server disconnect."""
    if request.transport is not None:
        request.transport.close()
    # aiohttp cannot write this to the closed transport and drops it as a client disconnect.
    return web.Response(status=500)


class SandboxGateway:
    """The sandbox gateway server: embedded (``start``/``stop``) or alone (``run_sandbox``)."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        faults: Faults | None = None,
        seed: int | None = None,
    ) -> None:
        self.ledger = Ledger(db_path)
        self.faults = faults or Faults()
        # Seedable so a fault pattern can be replayed; charge ids come from uuid4 instead, so a
        # restart with the same seed cannot mint an id the ledger already holds.
        self._rng = random.Random(seed)
        self._locks = _KeyLocks()
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        self.charge_requests = 0  # POST /v1/charges received, faulted or not

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("sandbox gateway is not started")
        return self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("", "0.0.0.0", "::") else self._host
        return f"http://{host}:{self.port}"

    def make_app(self) -> web.Application:
        """The aiohttp application (routes and the fault middleware)."""
        app = web.Application(middlewares=[self._fault_middleware])
        app.router.add_post("/v1/charges", self._create_charge)
        app.router.add_get("/v1/charges", self._list_charges)
        app.router.add_get("/v1/charges/{charge_id}", self._get_charge)
        app.router.add_post("/_admin/faults", self._set_faults)
        app.router.add_get("/_admin/faults", self._get_faults)
        app.router.add_delete("/_admin/faults", self._reset_faults)
        app.router.add_get("/_admin/ledger", self._ledger)
        app.router.add_get("/_admin/stats", self._stats)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Open the ledger and listen; returns the bound port (``port=0`` picks a free one)."""
        if self._runner is not None:
            raise RuntimeError("sandbox gateway is already started")
        await self.ledger.open()
        self._stopping = asyncio.Event()
        # A short shutdown timeout: hanging handlers are woken by stop(), the rest are quick.
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=5.0)
        try:
            await runner.setup()
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self.ledger.close()
            raise
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])
        log.info("sandbox gateway listening on %s (ledger %s)", self.url, self.ledger.path)
        return self._port

    async def stop(self) -> None:
        """Stop listening, end hanging requests without charging, close the ledger."""
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.ledger.close()
        self._port = None

    # -- faults ----------------------------------------------------------------------------------

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    async def _hang(self) -> bool:
        """Sleep ``hang_s``; True when stop() cut it short."""
        assert self._stopping is not None
        try:
            async with asyncio.timeout(self.faults.hang_s):
                await self._stopping.wait()
        except TimeoutError:
            return False
        return True

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        if request.method == "POST" and request.path == "/v1/charges":
            self.charge_requests += 1
        faults = self.faults
        delay_ms = faults.latency_ms + self._rng.uniform(0, faults.latency_jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if self._roll(faults.timeout_rate) and await self._hang():
            return _abort(request)
        if self._roll(faults.error_rate):
            status = self._rng.choice((500, 503))
            return _error(status, "api_error", f"sandbox fault: injected HTTP {status}")
        return await handler(request)

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            self.faults = Faults.from_json(await request.json())
        except (ValueError, TypeError) as exc:
            return _error(400, "invalid_request_error", str(exc))
        log.info("sandbox faults set: %s", self.faults)
        return web.json_response(self.faults.to_json())

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def _reset_faults(self, request: web.Request) -> web.Response:
        self.faults = Faults()
        return web.json_response(self.faults.to_json())

    # -- charges ---------------------------------------------------------------------------------

    def _new_row(self, key: str, params: _ChargeParams) -> ChargeRow:
        charge_id = f"ch_{uuid.uuid4().hex}"
        decision = sandbox_decision(params.source)
        row = ChargeRow(
            id=charge_id,
            idempotency_key=key,
            params=params.canonical(),
            order_id=params.order_id,
            amount=params.amount,
            currency=params.currency,
            source=params.source,
            status="succeeded",
            failure_code=None,
            failure_message=None,
            http_status=200,
            response_body="",
            created=int(time.time()),
        )
        if isinstance(decision, Approved):
            return replace(row, response_body=json.dumps(row.to_charge()))
        failed = replace(
            row, status="failed", failure_code=decision.code, failure_message=decision.message
        )
        error = {
            "type": "card_error",
            "code": decision.code,
            "message": decision.message,
            "charge": charge_id,
        }
        return replace(failed, http_status=402, response_body=json.dumps({"error": error}))

    async def _create_charge(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return _error(
                400, "invalid_request_error", "the Idempotency-Key header is required",
                param="Idempotency-Key",
            )  # fmt: skip
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_request_error", "the body is not JSON")
        params = _parse_charge(body)
        if isinstance(params, tuple):
            param, message = params
            return _error(400, "invalid_request_error", message, param=param)

        async with self._locks.hold(key):
            row = await self.ledger.by_key(key)
            created = row is None
            if row is None:
                row = self._new_row(key, params)
                if not await self.ledger.insert(row):
                    # Another writer on the same file took the key between our read and write.
                    created = False
                    row = await self.ledger.by_key(key)
                    assert row is not None
        if not created:
            if row.params != params.canonical():
                return _error(
                    400, "idempotency_error",
                    f"Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with (key {key!r}).",
                )  # fmt: skip
            return _json_text(row.http_status, row.response_body, replayed=True)
        if self._roll(self.faults.drop_response_rate):
            # The dangerous case for a client: money moved, and it never heard.
            log.info("sandbox fault: dropping the response for %s (%s)", row.id, key)
            return _abort(request)
        return _json_text(row.http_status, row.response_body)

    async def _get_charge(self, request: web.Request) -> web.Response:
        charge_id = request.match_info["charge_id"]
        row = await self.ledger.by_id(charge_id)
        if row is None:
            return _error(
                404, "invalid_request_error", f"No such charge: {charge_id!r}",
                code="resource_missing",
            )  # fmt: skip
        return web.json_response(row.to_charge())

    async def _list_charges(self, request: web.Request) -> web.Response:
        key = request.query.get("idempotency_key")
        if key is None:
            rows = await self.ledger.rows()
        else:
            row = await self.ledger.by_key(key)
            rows = [] if row is None else [row]
        return web.json_response({"object": "list", "data": [r.to_charge() for r in rows]})

    # -- admin -----------------------------------------------------------------------------------

    async def _ledger(self, request: web.Request) -> web.Response:
        rows = await self.ledger.rows(request.query.get("order_id"))
        return web.json_response({"data": [asdict(r) for r in rows]})

    async def _stats(self, request: web.Request) -> web.Response:
        stats = await self.ledger.stats()
        stats["charge_requests"] = self.charge_requests
        return web.json_response(stats)


async def _serve(host: str, port: int, db_path: Path, faults: Faults, seed: int | None) -> None:
    gateway = SandboxGateway(db_path, faults=faults, seed=seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start(host, port)
        print(f"sandbox-gateway listening on {gateway.url}", flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await gateway.stop()


def run_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    db_path: str | Path = Path(".run/sandbox-gateway.db"),
    faults: Faults | None = None,
    seed: int | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then close cleanly."""
    asyncio.run(_serve(host, port, Path(db_path), faults or Faults(), seed))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orderflow sandbox-gateway", description="Run the sandbox payment gateway."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--db", type=Path, default=Path(".run/sandbox-gateway.db"), help="ledger file")
    p.add_argument("--seed", type=int, default=None, help="seed for the fault dice")
    for f in fields(Faults):
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(flag, dest=f.name, type=float, default=f.default)
    return p


def main(argv: list[str] | None = None) -> int:
    """``orderflow sandbox-gateway``: parse arguments and serve; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        faults = Faults(**{f.name: getattr(args, f.name) for f in fields(Faults)})
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_sandbox(args.host, args.port, args.db, faults, args.seed)
    return 0
