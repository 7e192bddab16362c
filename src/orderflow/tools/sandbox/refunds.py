"""The sandbox gateway's refunds: the ``refunds`` table of its ledger and the refund rule.

Like charges: one refund per active idempotency key (the same key and parameters get the first
answer again, byte for byte; other parameters are refused), keys expire after the same TTL, and a
refused refund is a row too (``failed``, HTTP 402, with its code), so a retry gets the same
refusal. The rule a real gateway applies, inside the write transaction that records the refund:
only a succeeded charge can be refunded, and never beyond its amount (``charge_already_refunded``
once nothing is left, ``amount_too_large`` when the amount is more than what is left).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, replace

import aiosqlite

from orderflow.tools.sandbox.keyed import KeyedRows

__all__ = ["REFUNDS_SCHEMA", "RefundBook", "RefundParams", "RefundRow", "parse_refund"]

REFUNDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS refunds (
    id              TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    params          TEXT NOT NULL,
    charge_id       TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    refund_ref      TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    failure_code    TEXT,
    http_status     INTEGER NOT NULL,
    response_body   TEXT NOT NULL,
    created         INTEGER NOT NULL,
    created_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_key ON refunds (idempotency_key, created_at);
CREATE INDEX IF NOT EXISTS refunds_charge ON refunds (charge_id);
CREATE INDEX IF NOT EXISTS refunds_order_id ON refunds (order_id);
"""


@dataclass(frozen=True)
class RefundRow:
    """One refund in the ledger and the exact response first given for its idempotency key."""

    id: str
    idempotency_key: str
    params: str  # canonical JSON of the request parameters, to refuse a reused key
    charge_id: str
    order_id: str
    refund_ref: str  # the client's own refund reference (metadata.refund_id)
    amount: int
    currency: str
    status: str  # "succeeded" | "failed"
    failure_code: str | None
    http_status: int
    response_body: str
    created: int
    created_at: float

    def to_refund(self) -> dict[str, object]:
        """The Stripe-like refund object."""
        return {
            "id": self.id,
            "object": "refund",
            "status": self.status,
            "amount": self.amount,
            "currency": self.currency,
            "charge": self.charge_id,
            "idempotency_key": self.idempotency_key,
            "order_id": self.order_id,
            "metadata": {"order_id": self.order_id, "refund_id": self.refund_ref},
            "failure_reason": self.failure_code,
            "created": self.created,
        }


@dataclass(frozen=True)
class RefundParams:
    charge: str
    amount: int
    metadata: dict[str, str]

    @property
    def order_id(self) -> str:
        return self.metadata.get("order_id", "")

    def canonical(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


def parse_refund(body: object) -> RefundParams | tuple[str, str]:
    """The refund parameters, or ``(param, message)`` naming what is wrong."""
    if not isinstance(body, dict):
        return "body", "the body must be a JSON object"
    charge = body.get("charge")
    if not isinstance(charge, str) or not charge:
        return "charge", "charge must be the id of the charge to refund"
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return "amount", "amount must be a positive integer (minor units)"
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        return "metadata", "metadata must be an object of strings"
    return RefundParams(charge, amount, metadata)


class RefundBook:
    """The ``refunds`` table: its rows (``KeyedRows``) and the refund rule."""

    def __init__(self, db: aiosqlite.Connection, rows: KeyedRows[RefundRow]) -> None:
        self.db = db
        self.table = rows

    async def by_key(self, idempotency_key: str) -> RefundRow | None:
        """The newest refund made with the key (expired or not)."""
        return await self.table.by_key(idempotency_key)

    async def rows(self, order_id: str | None = None) -> list[RefundRow]:
        return await self.table.rows(order_id)

    async def refund_once(
        self, key: str, params: RefundParams, arrived_at: float, ttl_s: float
    ) -> tuple[RefundRow, str]:
        """The key's active refund, or a new one decided against its charge:
        ``(row, "replayed" | "created" | "expired")``, all in one write transaction."""

        async def made() -> RefundRow:
            return await self._new_row(key, params, arrived_at)

        return await self.table.once(key, arrived_at, ttl_s, made)

    async def _new_row(self, key: str, params: RefundParams, now: float) -> RefundRow:
        async with self.db.execute(
            "SELECT status, amount, currency, order_id FROM charges WHERE id = ?", (params.charge,)
        ) as cursor:
            found = await cursor.fetchone()
        charge = _Charge(*found) if found is not None else None
        async with self.db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE charge_id = ?"
            " AND status = 'succeeded'",
            (params.charge,),
        ) as cursor:
            (refunded,) = await cursor.fetchone() or (0,)
        row = RefundRow(
            id=f"re_{uuid.uuid4().hex}",
            idempotency_key=key,
            params=params.canonical(),
            charge_id=params.charge,
            order_id=params.order_id or (charge.order_id if charge else ""),
            refund_ref=params.metadata.get("refund_id", ""),
            amount=params.amount,
            currency=charge.currency if charge else "",
            status="succeeded",
            failure_code=None,
            http_status=200,
            response_body="",
            created=int(now),
            created_at=now,
        )
        code = _refusal(charge, refunded, params.amount)
        if code is None:
            return replace(row, response_body=json.dumps(row.to_refund()))
        failed = replace(row, status="failed", failure_code=code, http_status=402)
        error = {"type": "refund_error", "code": code, "refund": failed.to_refund()}
        return replace(failed, response_body=json.dumps({"error": error}))

    async def totals(self) -> dict[str, object]:
        """Refund counts and the money given back per order (``/_admin/stats``)."""
        async with self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(status = 'succeeded'), 0) FROM refunds"
        ) as cursor:
            total, succeeded = await cursor.fetchone() or (0, 0)
        async with self.db.execute(
            "SELECT order_id, SUM(amount) FROM refunds WHERE status = 'succeeded' GROUP BY order_id"
        ) as cursor:
            per_order = {order: amount for order, amount in await cursor.fetchall()}
        return {"refunds": total, "refunds_succeeded": succeeded, "refunded_per_order": per_order}


@dataclass(frozen=True)
class _Charge:
    """What a refund needs of the charge it gives back."""

    status: str
    amount: int
    currency: str
    order_id: str


def _refusal(charge: _Charge | None, refunded: int, amount: int) -> str | None:
    """Why the gateway refuses a refund of ``amount`` (None: it refunds)."""
    if charge is None or charge.status != "succeeded":
        return "charge_not_found"
    if refunded >= charge.amount:
        return "charge_already_refunded"
    if refunded + amount > charge.amount:
        return "amount_too_large"
    return None
