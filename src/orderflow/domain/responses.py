"""The shapes of the HTTP API's answers, rendered into ``/openapi.json`` (see ``shapes``).

They describe what ``order_to_public`` and the views write; the API's e2e test checks
real answers of a running worker against the document built from them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from orderflow.domain.money import CURRENCY_MINOR_UNITS
from orderflow.domain.order import Order, OrderRefund, OrderStatus
from orderflow.domain.payment import Decline
from orderflow.domain.shapes import Array, Boolean, Field, Integer, Number, Object, String
from orderflow.domain.validation import ID_PATTERN, MAX_ITEMS

__all__ = [
    "ACCEPTED",
    "CONFLICT",
    "ERROR",
    "HEALTH",
    "ORDER",
    "ORDER_ID",
    "PROBLEMS",
    "READY",
    "REFUND_ANSWER",
    "order_to_public",
    "public_version",
    "refund_to_public",
]

ORDER_ID = String(r"^ord_[0-9a-f]{32}$", description="the order's id")
_TIME = String(description="RFC 3339 time, UTC")
_CURRENCY = String(allowed=frozenset(CURRENCY_MINOR_UNITS), description="ISO 4217 code")

_DECLINE = Object(
    (
        Field(
            "code",
            String(
                description="decline code, e.g. card_declined, insufficient_funds, "
                "expired_card, invalid_token, gateway_rejected"
            ),
        ),
        Field("message", String(description="for the customer")),
        Field("retryable", Boolean(description="whether the same payment may succeed later")),
    ),
    nullable=True,
)

_PAYMENT = Object(
    (
        Field(
            "status",
            String(
                allowed=frozenset({"PENDING", "COMPLETED", "FAILED", "CANCELLED"}),
                description="CANCELLED: the order was cancelled before any charge",
            ),
        ),
        Field("charge_id", String(nullable=True), required=False),
        Field("decline_code", String(nullable=True), required=False),
        Field("decline", _DECLINE, required=False),
    ),
    description="the payment: PENDING until the gateway answered; a charge id once charged",
)

REFUND = Object(
    (
        Field("refund_id", String(description="the same for every retry of one request")),
        Field("amount", Integer(1, description="in the order's currency's minor unit")),
        Field(
            "status",
            String(
                allowed=frozenset({"REQUESTED", "COMPLETED", "FAILED"}),
                description="REQUESTED: its amount is reserved; the gateway has not answered",
            ),
        ),
        Field("reason", String()),
        Field("requested_at", _TIME),
        Field("compensation", Boolean(description="the refund of a charge that raced a cancel")),
        Field("decline", _DECLINE, required=False),
    ),
    description="One refund of the order.",
)

_CANCELLATION = Object(
    (Field("reason", String()), Field("at", _TIME)),
    nullable=True,
    description="why and when the order was cancelled (null: it was not)",
)

ORDER = Object(
    (
        Field("order_id", ORDER_ID),
        Field(
            "status",
            String(
                allowed=frozenset({str(s) for s in OrderStatus}),
                description="PENDING until the payment is decided; PAYMENT_FAILED, CANCELLED "
                "and REFUNDED are final; PAID moves to PARTIALLY_REFUNDED and REFUNDED by refunds",
            ),
        ),
        Field("customer_id", String(ID_PATTERN)),
        Field("amount", Integer(0, description="total in the currency's minor unit")),
        Field("currency", _CURRENCY),
        Field(
            "items",
            Array(
                Object(
                    (
                        Field("sku", String()),
                        Field("quantity", Integer(1)),
                        Field("unit_amount", Integer(1)),
                    )
                ),
                min_items=1,
                max_items=MAX_ITEMS,
            ),
        ),
        Field("created_at", _TIME),
        Field("updated_at", _TIME),
        Field("payment", _PAYMENT),
        Field("captured", Integer(0, description="what the payment took (minor units)")),
        Field("refunded", Integer(0, description="what refunds gave back (minor units)")),
        Field("refunds", Array(REFUND)),
        Field("cancellation", _CANCELLATION),
    ),
    description="An order as stored by its owner (the payment token is never shown).",
)

REFUND_ANSWER = Object(
    (Field("refund", REFUND), Field("order", ORDER)),
    description="The refund asked for, and its order.",
)

CONFLICT = Object(
    (
        Field("error", String(allowed=frozenset({"conflict"}))),
        Field("message", String()),
        Field("order_id", ORDER_ID),
        Field("status", String(allowed=frozenset({str(s) for s in OrderStatus}))),
    ),
    description="Not possible in the order's state (the message says why).",
)

ACCEPTED = Object(
    (
        Field("order_id", ORDER_ID),
        Field("status", String(allowed=frozenset({"ACCEPTED"}))),
        Field("message", String()),
    ),
    description="Durably in Kafka, not stored yet: GET the Location to follow it.",
)

PROBLEMS = Object(
    (
        Field("error", String(description="invalid_request, idempotency_key_reused")),
        Field(
            "problems",
            Array(
                Object(
                    (
                        Field(
                            "field",
                            String(
                                description="where: a body path (items[0].quantity), $ for "
                                "the whole body, or a header name"
                            ),
                        ),
                        Field(
                            "code",
                            String(
                                description="missing, type, format, range, empty, too_many, "
                                "unknown, unknown_field, invalid_json, duplicate_key, too_deep, too_large, timeout, "
                                "undecodable, unsupported, reused"
                            ),
                        ),
                        Field("message", String()),
                    )
                ),
                min_items=1,
            ),
        ),
    ),
    description="Every problem of the request at once.",
)

ERROR = Object(
    (
        Field(
            "error",
            String(description="not_found, unavailable, unauthorized, too_many_long_polls, …"),
        ),
        Field("message", String(), required=False),
        Field("order_id", String(), required=False),
    ),
    description="An error that is not about the body's fields.",
)

HEALTH = Object(
    (
        Field("status", String(allowed=frozenset({"ok", "stuck"}))),
        Field(
            "stuck",
            Array(
                Object(
                    (
                        Field("agent", String()),
                        Field("topic", String()),
                        Field("partition", Integer(0)),
                        Field("offset", Integer(0)),
                        Field("since", String()),
                        Field("seconds", Number()),
                    ),
                    closed=False,
                )
            ),
            required=False,
        ),
        Field("recovering_for_s", Number(0), required=False),
    ),
    closed=False,
    extra=Integer(0),
    description="Liveness, with the worker's counters (dead_letters, inconsistent_payments, …).",
)

READY = Object(
    (Field("status", String(allowed=frozenset({"ready", "not_ready"}))),),
    closed=False,
    description="Readiness: partitions assigned and tables recovered.",
)


_CHARGED = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})


def _decline(decline: Decline | None) -> dict[str, Any] | None:
    if decline is None:
        return None
    return {"code": decline.code, "message": decline.message, "retryable": decline.retryable}


def order_to_public(order: Order) -> dict[str, Any]:
    """The order as the HTTP API shows it (``ORDER``; the payment token stays inside).

    The API's own mapping: OrderDB stores its own shape (``orderflow.wire.tables``).
    """
    if order.captured or order.status in _CHARGED:  # (or a charge that raced a cancel)
        payment: dict[str, Any] = {"status": "COMPLETED", "charge_id": order.charge_id}
    elif order.status is OrderStatus.PAYMENT_FAILED or order.decline is not None:
        payment = {
            "status": "FAILED",
            "charge_id": order.charge_id,
            "decline_code": order.decline.code if order.decline else None,
            "decline": _decline(order.decline),
        }
    elif order.status is OrderStatus.CANCELLED:
        payment = {"status": "CANCELLED"}
    else:
        payment = {"status": "PENDING"}
    items = [
        {"sku": i.sku, "quantity": i.quantity, "unit_amount": i.unit_amount} for i in order.items
    ]
    return {
        "order_id": order.order_id,
        "status": str(order.status),
        "customer_id": order.customer_id,
        "amount": order.amount,
        "currency": order.currency,
        "items": items,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "payment": payment,
        "captured": order.captured,
        "refunded": order.refunded,
        "refunds": [refund_to_public(r) for r in order.refunds],
        "cancellation": (
            None
            if order.cancellation is None
            else {"reason": order.cancellation.reason, "at": order.cancellation.at}
        ),
    }


def public_version(public: dict[str, Any]) -> str:
    """A short digest of an order's public view: it changes whenever anything shown changes
    (the id of an order's Server-Sent Event, and what a long-poll's ``after`` names)."""
    canonical = json.dumps(public, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def refund_to_public(refund: OrderRefund) -> dict[str, Any]:
    """One refund as the HTTP API shows it (``REFUND``)."""
    shown: dict[str, Any] = {
        "refund_id": refund.refund_id,
        "amount": refund.amount,
        "status": str(refund.state),
        "reason": refund.reason,
        "requested_at": refund.requested_at,
        "compensation": refund.compensation,
    }
    if refund.decline is not None:
        shown["decline"] = _decline(refund.decline)
    return shown
