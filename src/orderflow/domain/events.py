"""The events on the wire, as plain dataclasses with dict converters (JSON lives in records.py).

Every event carries ``event_id``, ``event_type``, ``schema_version``, ``occurred_at`` (RFC 3339)
and ``order_id``. ``event_id`` is derived from the order id and event type, so an event published
again after a crash carries the same id as the first copy: consumers and ``trace`` can tell a
duplicate from a second event.
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from orderflow.domain.errors import EventDecodeError
from orderflow.domain.payment import Decline
from orderflow.domain.validation import LineItem

__all__ = [
    "EVENT_TYPES",
    "Event",
    "FieldReader",
    "OrderCreated",
    "PaymentCompleted",
    "PaymentFailed",
    "PlaceOrder",
    "event_from_dict",
    "event_id_for",
    "event_to_dict",
    "items_to_list",
    "rfc3339",
]

_EVENT_NAMESPACE = uuid.UUID("6f1d3c1e-6a55-4c43-9a43-6a0f5a3b2e10")


def event_id_for(order_id: str, event_type: str) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{order_id}/{event_type}"))


def rfc3339(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class FieldReader:
    """Typed field access over a decoded JSON object, raising EventDecodeError with the path."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise EventDecodeError(f"{where or 'value'}: expected an object")
        self.data = data
        self.where = where

    def _path(self, key: builtins.str) -> builtins.str:
        return f"{self.where}.{key}" if self.where else key

    def _get(
        self, key: builtins.str, kind: type | tuple[type, ...], kind_name: builtins.str
    ) -> Any:
        path = self._path(key)
        if key not in self.data:
            raise EventDecodeError(f"{path}: missing")
        value = self.data[key]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise EventDecodeError(f"{path}: expected {kind_name}")
        return value

    def str(self, key: builtins.str) -> builtins.str:
        value: builtins.str = self._get(key, builtins.str, "a string")
        if not value:
            raise EventDecodeError(f"{self._path(key)}: empty")
        return value

    def opt_str(self, key: builtins.str) -> builtins.str | None:
        return None if self.data.get(key) is None else self.str(key)

    def int(self, key: builtins.str) -> builtins.int:
        value: builtins.int = self._get(key, builtins.int, "an integer")
        return value

    def bool(self, key: builtins.str) -> builtins.bool:
        value: builtins.bool = self._get(key, builtins.bool, "a boolean")
        return value

    def obj(self, key: builtins.str) -> FieldReader:
        return FieldReader(self._get(key, dict, "an object"), self._path(key))

    def items(self, key: builtins.str) -> tuple[LineItem, ...]:
        raw = self._get(key, list, "an array")
        out = []
        for i, entry in enumerate(raw):
            r = FieldReader(entry, f"{self._path(key)}[{i}]")
            out.append(LineItem(r.str("sku"), r.int("quantity"), r.int("unit_amount")))
        return tuple(out)


def _owner(client_id: str) -> dict[str, str]:
    """``client_id`` in a payload only when there is one (older readers need not know it)."""
    return {"client_id": client_id} if client_id else {}


def items_to_list(items: tuple[LineItem, ...]) -> list[dict[str, Any]]:
    return [{"sku": i.sku, "quantity": i.quantity, "unit_amount": i.unit_amount} for i in items]


@dataclass(frozen=True)
class PlaceOrder:
    """Command from the web view to the order service (internal topic): place this order."""

    event_type: ClassVar[str] = "order.place"
    schema_version: ClassVar[int] = 1
    order_id: str
    request_id: str  # unique per HTTP request: tells a replayed POST from the first one
    fingerprint: str  # hash of the canonical request body: same key + other body = conflict
    customer_id: str
    currency: str
    items: tuple[LineItem, ...]
    payment_token: str
    occurred_at: str
    # The authenticated client that placed it ("" in commands from before API keys: no owner).
    client_id: str = ""
    # True when order_id is generation 0 of an Idempotency-Key: the order service picks the
    # key's live generation (domain/idempotency.py); False: order_id is the order's own id.
    keyed: bool = False

    @property
    def event_id(self) -> str:
        return self.request_id

    def payload(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "fingerprint": self.fingerprint,
            "customer_id": self.customer_id,
            "currency": self.currency,
            "items": items_to_list(self.items),
            "payment": {"token": self.payment_token},
            **_owner(self.client_id),
            **({"keyed": True} if self.keyed else {}),
        }

    @classmethod
    def from_reader(cls, r: FieldReader) -> PlaceOrder:
        keyed = r.bool("keyed") if "keyed" in r.data else False
        return cls(
            r.str("order_id"),
            r.str("request_id"),
            r.str("fingerprint"),
            r.str("customer_id"),
            r.str("currency"),
            r.items("items"),
            r.obj("payment").str("token"),
            r.str("occurred_at"),
            r.opt_str("client_id") or "",
            keyed,
        )


@dataclass(frozen=True)
class OrderCreated:
    """The order service accepted an order; the payment service charges it."""

    event_type: ClassVar[str] = "order.created"
    schema_version: ClassVar[int] = 1
    order_id: str
    customer_id: str
    currency: str
    amount: int
    items: tuple[LineItem, ...]
    payment_token: str
    occurred_at: str
    client_id: str = ""  # "": an order from before API keys (no owner)

    @property
    def event_id(self) -> str:
        return event_id_for(self.order_id, self.event_type)

    def payload(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "currency": self.currency,
            "amount": self.amount,
            "items": items_to_list(self.items),
            # No token at all in a stall nudge's copy whose token is gone (never an empty one):
            # the payment service finishes it from PaymentDB or dead-letters it.
            "payment": {"token": self.payment_token} if self.payment_token else {},
            **_owner(self.client_id),
        }

    @classmethod
    def from_reader(cls, r: FieldReader) -> OrderCreated:
        # No "token" is a tokenless nudge (see payload); one that is there must not be empty.
        payment = r.obj("payment")
        token = payment.str("token") if "token" in payment.data else ""
        return cls(
            r.str("order_id"),
            r.str("customer_id"),
            r.str("currency"),
            r.int("amount"),
            r.items("items"),
            token,
            r.str("occurred_at"),
            r.opt_str("client_id") or "",
        )


@dataclass(frozen=True)
class PaymentCompleted:
    """The gateway charged the order's amount."""

    event_type: ClassVar[str] = "payment.completed"
    schema_version: ClassVar[int] = 1
    order_id: str
    amount: int
    currency: str
    charge_id: str
    occurred_at: str

    @property
    def event_id(self) -> str:
        return event_id_for(self.order_id, self.event_type)

    def payload(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency, "charge_id": self.charge_id}

    @classmethod
    def from_reader(cls, r: FieldReader) -> PaymentCompleted:
        return cls(
            r.str("order_id"),
            r.int("amount"),
            r.str("currency"),
            r.str("charge_id"),
            r.str("occurred_at"),
        )


@dataclass(frozen=True)
class PaymentFailed:
    """The gateway declined; ``reason`` says why and whether a retry could succeed."""

    event_type: ClassVar[str] = "payment.failed"
    schema_version: ClassVar[int] = 1
    order_id: str
    amount: int
    currency: str
    reason: Decline
    occurred_at: str
    charge_id: str | None = None

    @property
    def event_id(self) -> str:
        return event_id_for(self.order_id, self.event_type)

    def payload(self) -> dict[str, Any]:
        reason = {
            "code": self.reason.code,
            "message": self.reason.message,
            "retryable": self.reason.retryable,
        }
        return {
            "amount": self.amount,
            "currency": self.currency,
            "reason": reason,
            "charge_id": self.charge_id,
        }

    @classmethod
    def from_reader(cls, r: FieldReader) -> PaymentFailed:
        reason = r.obj("reason")
        decline = Decline(reason.str("code"), reason.str("message"), reason.bool("retryable"))
        return cls(
            r.str("order_id"),
            r.int("amount"),
            r.str("currency"),
            decline,
            r.str("occurred_at"),
            r.opt_str("charge_id"),
        )


Event = PlaceOrder | OrderCreated | PaymentCompleted | PaymentFailed
EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls for cls in (PlaceOrder, OrderCreated, PaymentCompleted, PaymentFailed)
}


def event_to_dict(event: Event) -> dict[str, Any]:
    """The wire form: the common envelope fields, then the type's payload."""
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "occurred_at": event.occurred_at,
        "order_id": event.order_id,
        **event.payload(),
    }


def event_from_dict(data: Any, expected_type: str | None = None) -> Event:
    """Parse the wire form; raises EventDecodeError naming the offending field."""
    r = FieldReader(data, "")
    event_type = r.str("event_type")
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise EventDecodeError(f"event_type: unknown type {event_type!r}")
    if expected_type is not None and event_type != expected_type:
        raise EventDecodeError(f"event_type: {event_type!r} where {expected_type!r} belongs")
    version = r.int("schema_version")
    if version != cls.schema_version:
        raise EventDecodeError(f"schema_version: {version} is not supported for {event_type}")
    return cls.from_reader(r)
