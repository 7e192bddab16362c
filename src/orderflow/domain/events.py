"""The events between the services, as plain dataclasses (their wire form: ``orderflow.wire``).

Every event carries ``event_id``, ``event_type``, ``schema_version``, ``occurred_at`` (RFC 3339)
and ``order_id``. ``event_id`` is derived from the order id and event type, so an event published
again after a crash carries the same id as the first copy: consumers and ``trace`` can tell a
duplicate from a second event.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from orderflow.domain.payment import Decline
from orderflow.domain.validation import LineItem

__all__ = [
    "EVENT_TYPES",
    "Event",
    "OrderCreated",
    "PaymentCompleted",
    "PaymentFailed",
    "PlaceOrder",
    "event_id_for",
    "rfc3339",
]

_EVENT_NAMESPACE = uuid.UUID("6f1d3c1e-6a55-4c43-9a43-6a0f5a3b2e10")


_NAMESPACE_BYTES = _EVENT_NAMESPACE.bytes


def event_id_for(order_id: str, event_type: str) -> str:
    """``str(uuid.uuid5(_EVENT_NAMESPACE, f"{order_id}/{event_type}"))``, computed directly.

    Every event written computes one; building the ``uuid.UUID`` object cost more than the hash.
    """
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + f"{order_id}/{event_type}".encode()).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rfc3339(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True, slots=True)
class _OrderEvent:
    """What every event has: its type, the order it is about, and an id every copy shares."""

    event_type: ClassVar[str]
    order_id: str

    @property
    def event_id(self) -> str:
        return event_id_for(self.order_id, self.event_type)


@dataclass(frozen=True, slots=True)
class PlaceOrder(_OrderEvent):
    """Command from the web view to the order service (internal topic): place this order."""

    event_type: ClassVar[str] = "order.place"
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


@dataclass(frozen=True, slots=True)
class OrderCreated(_OrderEvent):
    """The order service accepted an order; the payment service charges it."""

    event_type: ClassVar[str] = "order.created"
    customer_id: str
    currency: str
    amount: int
    items: tuple[LineItem, ...]
    payment_token: str
    occurred_at: str
    client_id: str = ""  # "": an order from before API keys (no owner)


@dataclass(frozen=True, slots=True)
class _PaymentOutcome(_OrderEvent):
    """What the payment service says about an order: the amount it charged or tried to."""

    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class PaymentCompleted(_PaymentOutcome):
    """The gateway charged the order's amount."""

    event_type: ClassVar[str] = "payment.completed"
    charge_id: str
    occurred_at: str


@dataclass(frozen=True, slots=True)
class PaymentFailed(_PaymentOutcome):
    """The gateway declined; ``reason`` says why and whether a retry could succeed."""

    event_type: ClassVar[str] = "payment.failed"
    reason: Decline
    occurred_at: str
    charge_id: str | None = None


Event = PlaceOrder | OrderCreated | PaymentCompleted | PaymentFailed
EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls for cls in (PlaceOrder, OrderCreated, PaymentCompleted, PaymentFailed)
}
