"""A Stripe-like sandbox payment gateway: an aiohttp app over an aiosqlite ledger, with faults.

The ledger is a SQLite file, so charges survive restarts. A repeated idempotency key with the same
parameters gets the first response again, byte for byte, while the key is active; a per-key lock
(and a write transaction across processes) makes concurrent requests with one key queue instead of
racing. The same key with other parameters is refused (``idempotency_error``).

**Keys expire** like a real gateway's: ``key_ttl_s`` (default 86400 s, ``--key-ttl``) after the
first use of a key, a charge request with that key creates a NEW charge (new ledger row, new id).
Expiry is judged at the request's arrival time. ``GET /v1/charges?idempotency_key=K`` still finds
charges after expiry: it returns the newest charge made with K.

**Request log**: every ``/v1`` request (charge, lookup by key, get by id, list) is recorded in the
``requests`` table of the same file: arrival time, kind, idempotency key, order reference
(``metadata.order_id``, or the found charge's), outcome (``created``, ``declined``, ``replayed``,
``expired_new``, ``invalid``, ``idempotency_error``, ``found``, ``not_found``, ``fault_5xx``,
``fault_hang``, ``dropped_response``), HTTP status, charge id and ``delivered``: the answer was
written to a still-open connection (a dropped response, or a client that timed out and closed, is
not delivered). Rows are written in batches a fraction of a second later (the admin endpoints
flush first); a request still hanging is logged when it ends.

**Strict mode** (``strict``, ``--strict``): a charge request for a key whose settled answer (a
succeeded or declined charge, or a lookup that returned it) was already delivered to a client is a
*violation*: the service should have known. It is flagged in the log (``violation``) and listed at
``/_admin/violations``, and still answered as a real gateway would.

**Refunds** (``POST /v1/refunds`` with ``charge``, ``amount`` and ``metadata``; ``GET
/v1/refunds?idempotency_key=K``) follow the same idempotency rules, and never give back more than
a succeeded charge took (``tools/sandbox/refunds.py``).

Faults (latency, 5xx, hangs, and "charge or refund, then drop the response") make the client's
retry and idempotency paths testable; they are set at construction or through ``/_admin/faults``.

Admin endpoints: ``/_admin/faults`` (GET, POST, DELETE), ``/_admin/config`` (GET, POST
``{"key_ttl_s": 5, "strict": true}``), ``/_admin/ledger[?order_id=]``,
``/_admin/refunds[?order_id=]``, ``/_admin/requests``
(``?order_id=``, ``?idempotency_key=``), ``/_admin/violations``, ``/_admin/stats``.

**Keys**: with an API key (``--api-key``, or ``ORDERFLOW_SANDBOX_API_KEY``), ``/v1`` requests
without ``Authorization: Bearer <key>`` get 401, like a real gateway's. ``/_admin`` is open on a
loopback address (the test rig drives it); on any other address it needs ``Authorization:
Bearer <admin token>`` (``--admin-token`` or ``ORDERFLOW_SANDBOX_ADMIN_TOKEN``), and without a
configured token the sandbox refuses to start there. The environment is the better place for
both: a command line is visible to every user of the machine (``ps``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, astuple, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
from aiohttp import web

from orderflow.domain.payment import Approved
from orderflow.domain.tokens import mask_secrets
from orderflow.tools.sandbox.keyed import KeyedRows
from orderflow.tools.sandbox.refunds import (
    REFUNDS_SCHEMA,
    RefundBook,
    RefundParams,
    RefundRow,
    parse_refund,
)
from orderflow.tools.sandbox.rules import sandbox_decision

__all__ = [
    "ChargeRow",
    "Faults",
    "Ledger",
    "RequestRow",
    "SandboxConfig",
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
    created_at: float = 0.0  # epoch seconds, precise: when the key's window opened

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


@dataclass(frozen=True)
class RequestRow:
    """One ``/v1`` request as the sandbox saw it (the ``requests`` table)."""

    at: float  # arrival, epoch seconds
    kind: str  # "charge" | "lookup" | "get" | "list"
    idempotency_key: str | None
    order_id: str | None
    outcome: str
    http_status: int | None  # None: no answer was written (dropped, hung up)
    charge_id: str | None
    delivered: bool
    violation: str | None = None  # strict mode: why this charge request should not have come


_COLUMNS = tuple(f.name for f in fields(ChargeRow))
_REQUEST_COLUMNS = tuple(f.name for f in fields(RequestRow))
_SCHEMA_VERSION = 2
# Version 2: no UNIQUE idempotency key (keys expire, so one key may name several charges over
# time; one active charge per key is enforced under the per-key lock), created_at, requests.
_CHARGES = """
CREATE TABLE IF NOT EXISTS charges (
    id              TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
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
    created         INTEGER NOT NULL,
    created_at      REAL NOT NULL
)"""
_SCHEMA = f"""
{_CHARGES};
CREATE INDEX IF NOT EXISTS charges_order_id ON charges (order_id);
CREATE INDEX IF NOT EXISTS charges_key ON charges (idempotency_key, created_at);
CREATE TABLE IF NOT EXISTS requests (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              REAL NOT NULL,
    kind            TEXT NOT NULL,
    idempotency_key TEXT,
    order_id        TEXT,
    outcome         TEXT NOT NULL,
    http_status     INTEGER,
    charge_id       TEXT,
    delivered       INTEGER NOT NULL,
    violation       TEXT
);
CREATE INDEX IF NOT EXISTS requests_order_id ON requests (order_id);
CREATE INDEX IF NOT EXISTS requests_key ON requests (idempotency_key);
{REFUNDS_SCHEMA}
PRAGMA user_version = {_SCHEMA_VERSION};
"""
# Version 0 (before key expiry): UNIQUE idempotency_key, no created_at. Rebuilt in place.
_MIGRATE_FROM_0 = f"""
ALTER TABLE charges RENAME TO charges_v0;
{_CHARGES.replace("IF NOT EXISTS ", "")};
INSERT INTO charges ({", ".join(_COLUMNS)})
    SELECT {", ".join(_COLUMNS[:-1])}, created FROM charges_v0;
DROP TABLE charges_v0;
"""
# Settled answers: once one of these reached a client, the client knows the charge's fate.
_SETTLED_OUTCOMES = ("created", "declined", "replayed", "expired_new", "found")
# The requests whose settled answer tells a client what happened under a key.
_SETTLING_KINDS = ("charge", "lookup", "refund", "refund_lookup")


class Ledger:
    """The charges and requests tables in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        # One write transaction at a time on the connection: a charge's BEGIN IMMEDIATE ...
        # COMMIT must not interleave with a request-log batch.
        self._write = asyncio.Lock()
        self.charges = KeyedRows(lambda: self.db, self._write, "charges", ChargeRow)
        self._refunds: RefundBook | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = aiosqlite.connect(self.path)
        # aiosqlite runs a thread per connection; a daemon one never keeps a stopping worker
        # (which embeds the sandbox) alive if the sandbox was not closed.
        connection._thread.daemon = True  # (private: aiosqlite offers no option for it)
        db = await connection
        # WAL: readers never block the writer, and a committed charge survives a killed process.
        await db.execute("PRAGMA journal_mode=WAL")
        # Several sandboxes may share a file: wait for the other's write lock, do not fail.
        await db.execute("PRAGMA busy_timeout=5000")
        async with db.execute("PRAGMA user_version") as cursor:
            version = ((await cursor.fetchone()) or (0,))[0]
        async with db.execute("SELECT 1 FROM sqlite_master WHERE name = 'charges'") as cursor:
            has_charges = await cursor.fetchone() is not None
        if has_charges and version < _SCHEMA_VERSION:
            log.info("ledger %s: migrating schema %d -> %d", self.path, version, _SCHEMA_VERSION)
            await db.executescript(f"BEGIN IMMEDIATE; {_MIGRATE_FROM_0} {_SCHEMA} COMMIT;")
        else:
            await db.executescript(_SCHEMA)
        await db.commit()
        self._db = db
        self._refunds = RefundBook(
            db, KeyedRows(lambda: self.db, self._write, "refunds", RefundRow)
        )

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
            self._refunds = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("ledger is not open")
        return self._db

    @property
    def refunds(self) -> RefundBook:
        if self._refunds is None:
            raise RuntimeError("ledger is not open")
        return self._refunds

    async def by_key(self, idempotency_key: str) -> ChargeRow | None:
        """The newest charge made with the key (expired or not)."""
        return await self.charges.by_key(idempotency_key)

    async def by_id(self, charge_id: str) -> ChargeRow | None:
        rows = await self.charges.select("WHERE id = ?", (charge_id,))
        return rows[0] if rows else None

    async def rows(self, order_id: str | None = None) -> list[ChargeRow]:
        return await self.charges.rows(order_id)

    async def charge_once(
        self, key: str, arrived_at: float, ttl_s: float, new_row: Callable[[], ChargeRow]
    ) -> tuple[ChargeRow, str]:
        """The key's active charge, or a new one: ``(row, "replayed" | "created" | "expired")``
        (``KeyedRows.once``: two processes sharing the file never both charge one key)."""

        async def made() -> ChargeRow:
            return new_row()

        return await self.charges.once(key, arrived_at, ttl_s, made)

    async def log_requests(self, rows: list[RequestRow]) -> None:
        """Append request rows in one transaction."""
        if not rows:
            return
        placeholders = ", ".join("?" for _ in _REQUEST_COLUMNS)
        async with self._write:
            await self.db.executemany(
                f"INSERT INTO requests ({', '.join(_REQUEST_COLUMNS)}) VALUES ({placeholders})",
                [astuple(r) for r in rows],
            )
            await self.db.commit()

    async def requests(
        self,
        order_id: str | None = None,
        idempotency_key: str | None = None,
        *,
        violations_only: bool = False,
    ) -> list[dict[str, object]]:
        """Logged requests in arrival order, filtered."""
        where, args = [], []
        if order_id is not None:
            where.append("order_id = ?")
            args.append(order_id)
        if idempotency_key is not None:
            where.append("idempotency_key = ?")
            args.append(idempotency_key)
        if violations_only:
            where.append("violation IS NOT NULL")
        sql = f"SELECT id, {', '.join(_REQUEST_COLUMNS)} FROM requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        async with self.db.execute(sql + " ORDER BY at, id", args) as cursor:
            names = ("id", *_REQUEST_COLUMNS)
            out = [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]
        for row in out:
            row["delivered"] = bool(row["delivered"])
        return out

    async def delivered_settled_keys(self) -> dict[str, tuple[float, str | None]]:
        """Key -> (first time, charge id) of a settled answer delivered for it (strict mode)."""
        marks = ", ".join("?" for _ in _SETTLED_OUTCOMES)
        async with self.db.execute(
            "SELECT idempotency_key, MIN(at), charge_id FROM requests WHERE delivered = 1"
            f" AND idempotency_key IS NOT NULL AND outcome IN ({marks}) GROUP BY idempotency_key",
            _SETTLED_OUTCOMES,
        ) as cursor:
            return {key: (at, charge) for key, at, charge in await cursor.fetchall()}

    async def stats(self) -> dict[str, object]:
        async with self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(status = 'succeeded'), 0),"
            " COALESCE(SUM(status = 'failed'), 0) FROM charges"
        ) as cursor:
            total, succeeded, failed = await cursor.fetchone() or (0, 0, 0)
        per_order = await self._counts("SELECT order_id, COUNT(*) FROM charges GROUP BY order_id")
        succeeded_per_order = await self._counts(
            "SELECT order_id, COUNT(*) FROM charges WHERE status = 'succeeded' GROUP BY order_id"
        )
        charge_requests = await self._counts(
            "SELECT order_id, COUNT(*) FROM requests WHERE kind = 'charge'"
            " AND order_id IS NOT NULL GROUP BY order_id"
        )
        lookups = await self._counts(
            "SELECT order_id, COUNT(*) FROM requests WHERE kind = 'lookup'"
            " AND order_id IS NOT NULL GROUP BY order_id"
        )
        async with self.db.execute(
            "SELECT COALESCE(SUM(violation IS NOT NULL), 0),"
            " COALESCE(SUM(outcome = 'dropped_response'), 0) FROM requests"
        ) as cursor:
            violations, dropped = await cursor.fetchone() or (0, 0)
        return {
            "charges": total,
            "succeeded": succeeded,
            "failed": failed,
            "per_order": per_order,
            "succeeded_per_order": succeeded_per_order,
            "charge_requests_per_order": charge_requests,
            "lookups_per_order": lookups,
            "violations": violations,
            "dropped_responses": dropped,
        }

    async def _counts(self, sql: str) -> dict[str, int]:
        async with self.db.execute(sql) as cursor:
            return {name: count for name, count in await cursor.fetchall()}


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


class _Params(Protocol):
    """A charge's or a refund's parameters, as compared for a reused key."""

    def canonical(self) -> str: ...


class _Answer(Protocol):
    """A ledger row as a create request answers it (``ChargeRow``, ``RefundRow``)."""

    @property
    def id(self) -> str: ...
    @property
    def params(self) -> str: ...
    @property
    def order_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def http_status(self) -> int: ...
    @property
    def response_body(self) -> str: ...


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


@dataclass
class _Seen:
    """What the request log needs of one ``/v1`` request, filled in as it is handled."""

    at: float
    kind: str
    idempotency_key: str | None = None
    order_id: str | None = None
    outcome: str = "error"
    charge_id: str | None = None
    violation: str | None = None


_SEEN = web.RequestKey("sandbox_seen", _Seen)


def _bearer_is(request: web.Request, secret: str) -> bool:
    """Does the request carry ``Authorization: Bearer <secret>``? (constant time)"""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return (
        bool(secret)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(value.strip().encode(), secret.encode())
    )


def _is_loopback(host: str) -> bool:
    """Only this machine can connect (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name, "", "0.0.0.0"-like wildcards: reachable from elsewhere


def _kind(request: web.Request) -> str:
    if request.path == "/v1/refunds":
        if request.method == "POST":
            return "refund"
        return "refund_lookup" if "idempotency_key" in request.query else "refund_list"
    if request.method == "POST" and request.path == "/v1/charges":
        return "charge"
    if request.path == "/v1/charges":
        return "lookup" if "idempotency_key" in request.query else "list"
    return "get"


@dataclass(frozen=True)
class SandboxConfig:
    """Settings that can change at runtime (``/_admin/config``)."""

    key_ttl_s: float = 86400.0
    strict: bool = False

    def __post_init__(self) -> None:
        ttl = self.key_ttl_s
        if isinstance(ttl, bool) or not isinstance(ttl, int | float):
            raise ValueError(f"key_ttl_s must be a number, not {ttl!r}")
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"key_ttl_s={ttl} must be finite and > 0")
        if not isinstance(self.strict, bool):
            raise ValueError(f"strict must be true or false, not {self.strict!r}")

    def updated(self, data: object) -> SandboxConfig:
        """A copy with the fields of a JSON object changed; unknown fields are refused."""
        if not isinstance(data, dict):
            raise ValueError("config must be a JSON object")
        unknown = sorted(set(data) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(unknown)}")
        return replace(self, **data)


class SandboxGateway:
    """The sandbox gateway server: embedded (``start``/``stop``) or alone (``run_sandbox``)."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        faults: Faults | None = None,
        seed: int | None = None,
        key_ttl_s: float = 86400.0,
        strict: bool = False,
        clock: Callable[[], float] = time.time,
        api_key: str = "",
        admin_token: str = "",
    ) -> None:
        self.ledger = Ledger(db_path)
        # Empty: /v1 is open (unit tests); the worker's embedded sandbox and the test harness
        # always set one. Not in repr, not logged.
        self._api_key = api_key
        self._admin_token = admin_token
        self.faults = faults or Faults()
        self.config = SandboxConfig(key_ttl_s, strict)
        self._clock = clock  # epoch seconds; injectable so tests can expire keys instantly
        # Seedable so a fault pattern can be replayed; charge ids come from uuid4 instead, so a
        # restart with the same seed cannot mint an id the ledger already holds.
        self._rng = random.Random(seed)
        self._locks = _KeyLocks()
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        self.charge_requests = 0  # POST /v1/charges received, faulted or not
        self.refund_requests = 0  # POST /v1/refunds received, faulted or not
        # Request log rows waiting for the next batch write (one commit per batch, not per
        # request, keeps the charge path fast).
        self._pending: list[RequestRow] = []
        self._flusher: asyncio.Task[None] | None = None
        # key -> (when, charge id) of the first settled answer delivered for it (strict mode).
        self._delivered: dict[str, tuple[float, str | None]] = {}

    @property
    def key_ttl_s(self) -> float:
        return self.config.key_ttl_s

    @property
    def strict(self) -> bool:
        return self.config.strict

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
        # Auth first: a refused request reaches neither the ledger nor the request log.
        app = web.Application(middlewares=[self._auth_middleware, self._fault_middleware])
        app.router.add_post("/v1/charges", self._create_charge)
        app.router.add_get("/v1/charges", self._list_charges)
        app.router.add_get("/v1/charges/{charge_id}", self._get_charge)
        app.router.add_post("/v1/refunds", self._create_refund)
        app.router.add_get("/v1/refunds", self._list_refunds)
        # /_admin: what a test reads (GET); the faults and config it sets (POST, DELETE resets).
        reads = {
            "faults": self._get_faults,
            "config": self._get_config,
            "ledger": self._ledger,
            "refunds": self._refund_ledger,
            "requests": self._requests,
            "violations": self._violations,
            "stats": self._stats,
        }
        for name, read in reads.items():
            app.router.add_get(f"/_admin/{name}", read)
        app.router.add_post("/_admin/faults", self._set_faults)
        app.router.add_delete("/_admin/faults", self._reset_faults)
        app.router.add_post("/_admin/config", self._set_config)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Open the ledger and listen; returns the bound port (``port=0`` picks a free one)."""
        if self._runner is not None:
            raise RuntimeError("sandbox gateway is already started")
        if not _is_loopback(host) and not self._admin_token:
            raise ValueError(
                f"the sandbox gateway on {host!r} (not loopback) needs an admin token "
                "(--admin-token or ORDERFLOW_SANDBOX_ADMIN_TOKEN): /_admin can move money"
            )
        await self.ledger.open()
        self._delivered = await self.ledger.delivered_settled_keys()
        self._stopping = asyncio.Event()
        self._host = host  # before listening: the auth middleware reads it
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
        self._port = int(runner.addresses[0][1])
        self._flusher = asyncio.create_task(self._flush_every(0.2))
        log.info("sandbox gateway listening on %s (ledger %s)", self.url, self.ledger.path)
        return self._port

    async def stop(self) -> None:
        """Stop listening, end hanging requests without charging, write the log, close."""
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self.ledger.is_open:
            await self.flush()
        await self.ledger.close()
        self._port = None

    # -- request log -----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write the request log rows received so far."""
        rows, self._pending = self._pending, []
        await self.ledger.log_requests(rows)

    async def _flush_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:  # a full disk must not stop the gateway; the log is best-effort
                log.exception("sandbox: could not write the request log")

    async def _deliver(self, request: web.Request, response: web.StreamResponse) -> bool:
        """Write the answer now; True when it went to a connection that was still open."""
        if response.prepared:
            return False  # only _abort's placeholder gets here unsent; nothing else streams
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:  # aiohttp's ClientConnectionResetError: the client hung up
            return False
        return True

    def _record(self, seen: _Seen, status: int | None, delivered: bool) -> None:
        row = RequestRow(
            seen.at,
            seen.kind,
            seen.idempotency_key,
            seen.order_id,
            seen.outcome,
            status,
            seen.charge_id,
            delivered,
            seen.violation,
        )
        self._pending.append(row)
        settled = seen.outcome in _SETTLED_OUTCOMES and seen.kind in _SETTLING_KINDS
        if delivered and settled and seen.idempotency_key is not None:
            self._delivered.setdefault(seen.idempotency_key, (seen.at, seen.charge_id))

    async def _order_ref(self, request: web.Request) -> str | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        metadata = body.get("metadata") if isinstance(body, dict) else None
        order_id = metadata.get("order_id") if isinstance(metadata, dict) else None
        return order_id if isinstance(order_id, str) else None

    # -- auth ------------------------------------------------------------------------------------

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/v1") and self._api_key and not _bearer_is(request, self._api_key):
            return _error(401, "authentication_error", "Invalid API key provided.")
        guarded = not _is_loopback(self._host)
        if path.startswith("/_admin") and guarded and not _bearer_is(request, self._admin_token):
            return _error(401, "authentication_error", "Invalid admin token provided.")
        return await handler(request)

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
        seen = _Seen(self._clock(), _kind(request))
        request[_SEEN] = seen
        if seen.kind in ("charge", "refund"):
            if seen.kind == "charge":
                self.charge_requests += 1
            else:
                self.refund_requests += 1
            seen.idempotency_key = request.headers.get("Idempotency-Key", "").strip() or None
            seen.order_id = await self._order_ref(request)
            first = self._delivered.get(seen.idempotency_key or "")
            if self.strict and first is not None:
                seen.violation = (
                    f"{seen.kind} {first[1]} for this key was answered at {first[0]:.3f}"
                )
        elif seen.kind in ("lookup", "refund_lookup"):
            seen.idempotency_key = request.query["idempotency_key"]
        response = await self._faulty(request, handler, seen)
        delivered = await self._deliver(request, response)
        self._record(seen, response.status if delivered else None, delivered)
        return response

    async def _faulty(
        self, request: web.Request, handler: Handler, seen: _Seen
    ) -> web.StreamResponse:
        faults = self.faults
        delay_ms = faults.latency_ms + self._rng.uniform(0, faults.latency_jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if self._roll(faults.timeout_rate) and await self._hang():
            seen.outcome = "fault_hang"
            return _abort(request)
        if self._roll(faults.error_rate):
            status = self._rng.choice((500, 503))
            seen.outcome = "fault_5xx"
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

    def _new_row(self, key: str, params: _ChargeParams, now: float) -> ChargeRow:
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
            created=int(now),
            created_at=now,
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
        async def once(key: str, params: _ChargeParams, at: float) -> tuple[_Answer, str]:
            return await self.ledger.charge_once(
                key, at, self.key_ttl_s, lambda: self._new_row(key, params, at)
            )

        return await self._create_once(request, _parse_charge, once)

    async def _create_once(
        self,
        request: web.Request,
        parse: Callable[[object], _Params | tuple[str, str]],
        once: Callable[[str, Any, float], Awaitable[tuple[_Answer, str]]],
    ) -> web.StreamResponse:
        """A charge or a refund: validated, then made once per active key (or answered again
        byte for byte), and perhaps its answer dropped (the fault)."""
        seen = request[_SEEN]
        seen.outcome = "invalid"
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return _error(
                400,
                "invalid_request_error",
                "the Idempotency-Key header is required",
                param="Idempotency-Key",
            )
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_request_error", "the body is not JSON")
        params = parse(body)
        if isinstance(params, tuple):
            param, message = params
            return _error(400, "invalid_request_error", message, param=param)
        async with self._locks.hold(key):
            # Expiry is judged at arrival: a request delayed by a fault is not late.
            row, how = await once(key, params, seen.at)
        seen.charge_id = row.id
        seen.order_id = row.order_id or seen.order_id
        if how == "replayed":
            if row.params != params.canonical():
                seen.outcome = "idempotency_error"
                return _error(
                    400,
                    "idempotency_error",
                    f"Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with (key {key!r}).",
                )
            seen.outcome = "replayed"
            return _json_text(row.http_status, row.response_body, replayed=True)
        if how == "expired":
            seen.outcome = "expired_new"
        else:
            seen.outcome = "created" if row.status == "succeeded" else "declined"
        if self._roll(self.faults.drop_response_rate):
            # The dangerous case for a client: money moved, and it never heard.
            log.info("sandbox fault: dropping the response for %s (%s)", row.id, key)
            seen.outcome = "dropped_response"
            return _abort(request)
        return _json_text(row.http_status, row.response_body)

    async def _get_charge(self, request: web.Request) -> web.Response:
        seen = request[_SEEN]
        charge_id = request.match_info["charge_id"]
        row = await self.ledger.by_id(charge_id)
        if row is None:
            seen.outcome = "not_found"
            return _error(
                404,
                "invalid_request_error",
                f"No such charge: {charge_id!r}",
                code="resource_missing",
            )
        seen.outcome, seen.charge_id, seen.order_id = "found", row.id, row.order_id
        seen.idempotency_key = row.idempotency_key
        return web.json_response(row.to_charge())

    async def _list_charges(self, request: web.Request) -> web.Response:
        seen = request[_SEEN]
        key = request.query.get("idempotency_key")
        if key is None:
            rows = await self.ledger.rows()
        else:
            # The newest charge made with the key, even when the key has expired.
            row = await self.ledger.by_key(key)
            rows = [] if row is None else [row]
        seen.outcome = "found" if rows else "not_found"
        if key is not None and rows:
            seen.charge_id, seen.order_id = rows[0].id, rows[0].order_id
        return web.json_response({"object": "list", "data": [r.to_charge() for r in rows]})

    # -- refunds ---------------------------------------------------------------------------------

    async def _create_refund(self, request: web.Request) -> web.StreamResponse:
        async def once(key: str, params: RefundParams, at: float) -> tuple[_Answer, str]:
            return await self.ledger.refunds.refund_once(key, params, at, self.key_ttl_s)

        return await self._create_once(request, parse_refund, once)

    async def _list_refunds(self, request: web.Request) -> web.Response:
        seen = request[_SEEN]
        key = request.query.get("idempotency_key")
        if key is None:
            rows = await self.ledger.refunds.rows(request.query.get("order_id"))
        else:
            row = await self.ledger.refunds.by_key(key)
            rows = [] if row is None else [row]
        seen.outcome = "found" if rows else "not_found"
        if key is not None and rows:
            seen.charge_id, seen.order_id = rows[0].id, rows[0].order_id
        return web.json_response({"object": "list", "data": [r.to_refund() for r in rows]})

    # -- admin -----------------------------------------------------------------------------------

    async def _set_config(self, request: web.Request) -> web.Response:
        try:
            self.config = self.config.updated(await request.json())
        except (ValueError, TypeError) as exc:
            return _error(400, "invalid_request_error", str(exc))
        log.info("sandbox config set: %s", self.config)
        return web.json_response(asdict(self.config))

    async def _get_config(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.config))

    async def _ledger(self, request: web.Request) -> web.Response:
        rows = await self.ledger.rows(request.query.get("order_id"))
        # The ledger file keeps the source (a gateway must); what the admin endpoint shows is
        # masked, ``params`` (the request's canonical JSON) included.
        return web.json_response({"data": [mask_secrets(asdict(r)) for r in rows]})

    async def _refund_ledger(self, request: web.Request) -> web.Response:
        rows = await self.ledger.refunds.rows(request.query.get("order_id"))
        return web.json_response({"data": [asdict(r) for r in rows]})

    async def _requests(self, request: web.Request) -> web.Response:
        await self.flush()
        rows = await self.ledger.requests(
            request.query.get("order_id"), request.query.get("idempotency_key")
        )
        return web.json_response({"data": mask_secrets(rows)})

    async def _violations(self, request: web.Request) -> web.Response:
        await self.flush()
        return web.json_response({"data": await self.ledger.requests(violations_only=True)})

    async def _stats(self, request: web.Request) -> web.Response:
        await self.flush()
        stats = await self.ledger.stats()
        stats.update(await self.ledger.refunds.totals())
        stats["charge_requests"] = self.charge_requests
        stats["refund_requests"] = self.refund_requests
        return web.json_response(stats)


async def _serve(
    host: str,
    port: int,
    db_path: Path,
    faults: Faults,
    seed: int | None,
    config: SandboxConfig,
    api_key: str = "",
    admin_token: str = "",
) -> None:
    gateway = SandboxGateway(
        db_path,
        faults=faults,
        seed=seed,
        key_ttl_s=config.key_ttl_s,
        strict=config.strict,
        api_key=api_key,
        admin_token=admin_token,
    )
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
    config: SandboxConfig | None = None,
    api_key: str = "",
    admin_token: str = "",
) -> None:
    """Serve until SIGTERM or SIGINT, then close cleanly."""
    serving = _serve(
        host,
        port,
        Path(db_path),
        faults or Faults(),
        seed,
        config or SandboxConfig(),
        api_key,
        admin_token,
    )
    asyncio.run(serving)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orderflow sandbox-gateway", description="Run the sandbox payment gateway."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--db", type=Path, default=Path(".run/sandbox-gateway.db"), help="ledger file")
    p.add_argument("--seed", type=int, default=None, help="seed for the fault dice")
    p.add_argument(
        "--key-ttl",
        dest="key_ttl_s",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="idempotency keys expire this long after first use (default 86400)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="/v1 requests need 'Authorization: Bearer KEY' "
        "[default: ORDERFLOW_SANDBOX_API_KEY; unset: open]",
    )
    p.add_argument(
        "--admin-token",
        default=None,
        metavar="TOKEN",
        help="/_admin needs 'Authorization: Bearer TOKEN' off loopback "
        "[default: ORDERFLOW_SANDBOX_ADMIN_TOKEN]",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="flag charge requests for keys whose settled answer was delivered",
    )
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
        config = SandboxConfig(args.key_ttl_s, args.strict)
    except ValueError as exc:
        parser.error(str(exc))
    # The sandbox is a separate program from the worker: its own two variables, read here.
    api_key = args.api_key or os.environ.get("ORDERFLOW_SANDBOX_API_KEY", "")
    admin_token = args.admin_token or os.environ.get("ORDERFLOW_SANDBOX_ADMIN_TOKEN", "")
    if not _is_loopback(args.host) and not admin_token:
        parser.error(
            f"--host {args.host} is not loopback: /_admin needs a token "
            "(--admin-token or ORDERFLOW_SANDBOX_ADMIN_TOKEN)"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_sandbox(args.host, args.port, args.db, faults, args.seed, config, api_key, admin_token)
    return 0
