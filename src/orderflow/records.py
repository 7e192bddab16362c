"""Bytes on the wire and in the tables <-> domain objects. JSON, no Faust metadata blob.

Events are read by services we do not own, so they are plain JSON objects (schemas in
``schemas/*.schema.json``). Table values are JSON too: a changelog can be read with any tool.
"""

from __future__ import annotations

from typing import Any

import orjson

from orderflow.domain.errors import EventDecodeError
from orderflow.domain.events import (
    Event,
    FieldReader,
    event_from_dict,
    event_to_dict,
    items_to_list,
)
from orderflow.domain.order import Order, OrderStatus
from orderflow.domain.payment import Decline, PaymentRecord, PaymentStatus

__all__ = [
    "decode_event",
    "decode_json",
    "encode_event",
    "order_from_bytes",
    "order_to_bytes",
    "order_to_public",
    "payment_from_bytes",
    "payment_to_bytes",
]


def decode_json(raw: bytes | None) -> Any:
    if raw is None:
        raise EventDecodeError("value: empty (tombstone)")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"value: not JSON ({exc})") from None


def encode_event(event: Event) -> bytes:
    return orjson.dumps(event_to_dict(event))


def decode_event(raw: bytes | None, expected_type: str | None = None) -> Event:
    """Parse bytes from a topic; raises EventDecodeError (never anything else) when malformed."""
    try:
        return event_from_dict(decode_json(raw), expected_type)
    except EventDecodeError:
        raise
    except (TypeError, ValueError, KeyError) as exc:  # belt and braces: a bug must not crash
        raise EventDecodeError(f"value: {exc}") from None


def _decline_to_dict(decline: Decline | None) -> dict[str, Any] | None:
    if decline is None:
        return None
    return {"code": decline.code, "message": decline.message, "retryable": decline.retryable}


def _decline_from(data: Any) -> Decline | None:
    if data is None:
        return None
    return Decline(str(data["code"]), str(data["message"]), bool(data["retryable"]))


def order_to_public(order: Order) -> dict[str, Any]:
    """The order as the HTTP API shows it (the payment token stays inside)."""
    if order.status is OrderStatus.PAID:
        payment: dict[str, Any] = {"status": "COMPLETED", "charge_id": order.charge_id}
    elif order.status is OrderStatus.PAYMENT_FAILED:
        payment = {
            "status": "FAILED",
            "charge_id": order.charge_id,
            "decline_code": order.decline.code if order.decline else None,
            "decline": _decline_to_dict(order.decline),
        }
    else:
        payment = {"status": "PENDING"}
    return {
        "order_id": order.order_id,
        "status": str(order.status),
        "customer_id": order.customer_id,
        "amount": order.amount,
        "currency": order.currency,
        "items": items_to_list(order.items),
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "payment": payment,
    }


def order_to_bytes(order: Order) -> bytes:
    # No payment token: OrderDB's changelog is kept forever (see domain.order.Order).
    data = order_to_public(order)
    data.update(
        fingerprint=order.fingerprint,
        request_id=order.request_id,
        charge_id=order.charge_id,
        decline=_decline_to_dict(order.decline),
        command_offset=order.command_offset,
    )
    if order.client_id:
        data["client_id"] = order.client_id
    del data["payment"]
    return orjson.dumps(data)


def order_from_bytes(raw: bytes) -> Order:
    data = orjson.loads(raw)
    return Order(
        order_id=data["order_id"],
        customer_id=data["customer_id"],
        currency=data["currency"],
        items=FieldReader(data, "").items("items"),
        amount=data["amount"],
        status=OrderStatus(data["status"]),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        fingerprint=data["fingerprint"],
        request_id=data["request_id"],
        charge_id=data.get("charge_id"),
        decline=_decline_from(data.get("decline")),
        # Entries written before it existed have none, and a payment_token: kept in memory for
        # the stall nudge, the only way left to charge such an order (never written back).
        command_offset=data.get("command_offset"),
        client_id=data.get("client_id") or "",
        legacy_payment_token=_legacy_token(data.get("payment_token")),
    )


def _legacy_token(value: Any) -> str:
    return value if isinstance(value, str) else ""


def payment_to_bytes(record: PaymentRecord) -> bytes:
    return orjson.dumps(
        {
            "order_id": record.order_id,
            "idempotency_key": record.idempotency_key,
            "amount": record.amount,
            "currency": record.currency,
            "status": str(record.status),
            "attempts": record.attempts,
            "charge_id": record.charge_id,
            "decline": _decline_to_dict(record.decline),
            "updated_at": record.updated_at,
            "next_attempt_at": record.next_attempt_at,
            "payment_token": record.payment_token,
            "problem": record.problem,
        }
    )


def payment_from_bytes(raw: bytes) -> PaymentRecord:
    data = orjson.loads(raw)
    return PaymentRecord(
        order_id=data["order_id"],
        idempotency_key=data["idempotency_key"],
        amount=data["amount"],
        currency=data["currency"],
        status=PaymentStatus(data["status"]),
        attempts=data["attempts"],
        charge_id=data.get("charge_id"),
        decline=_decline_from(data.get("decline")),
        updated_at=data["updated_at"],
        next_attempt_at=data["next_attempt_at"],
        payment_token=data.get("payment_token", ""),
        problem=data.get("problem"),
    )
