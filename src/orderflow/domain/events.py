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
    "CancelOrder",
    "Event",
    "OrderCancelled",
    "OrderCreated",
    "PaymentCompleted",
    "PaymentFailed",
    "PaymentRefunded",
    "PlaceOrder",
    "RefundFailed",
    "RefundOrder",
    "RefundRequested",
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


@dataclass(frozen=True, slots=True)
class CancelOrder(_OrderEvent):
    """Command from the web view to the order service: cancel this order if it is not paid."""

    event_type: ClassVar[str] = "order.cancel"
    request_id: str  # unique per HTTP request
    reason: str  # the client's words ("" when none was given); shown back, never parsed
    occurred_at: str
    client_id: str = ""  # who asked (the API client); only the order's owner may

    @property
    def event_id(self) -> str:
        return self.request_id


@dataclass(frozen=True, slots=True)
class OrderCancelled(_OrderEvent):
    """The order service cancelled a PENDING order: the payment service must never charge it,
    and must give back whatever a racing charge took (a compensation refund)."""

    event_type: ClassVar[str] = "order.cancelled"
    reason: str
    occurred_at: str
    # The order's money: what a compensation refunds, and what the payment service records of a
    # payment it has never seen (the cancel may arrive before ``order.created``).
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class _RefundEvent(_OrderEvent):
    """One refund of an order: an order may have several, so the refund id is in the event id."""

    refund_id: str
    amount: int  # minor units of the order's currency
    currency: str

    @property
    def event_id(self) -> str:
        return event_id_for(self.order_id, f"{self.event_type}/{self.refund_id}")


@dataclass(frozen=True, slots=True)
class RefundOrder(_RefundEvent):
    """Command from the web view to the order service: give back ``amount`` of this order."""

    event_type: ClassVar[str] = "order.refund"
    request_id: str
    fingerprint: str  # hash of the canonical request body: same refund id + other body = conflict
    reason: str
    occurred_at: str
    client_id: str = ""

    @property
    def event_id(self) -> str:
        return self.request_id


@dataclass(frozen=True, slots=True)
class RefundRequested(_RefundEvent):
    """The order service reserved ``amount`` of the captured money: the payment service refunds
    it through the gateway (its idempotency key derived from the refund id)."""

    event_type: ClassVar[str] = "refund.requested"
    reason: str
    occurred_at: str


@dataclass(frozen=True, slots=True)
class PaymentRefunded(_RefundEvent):
    """The gateway gave ``amount`` back. ``compensation``: the refund of a charge that raced a
    cancellation, made by the payment service on its own (no RefundOrder asked for it)."""

    event_type: ClassVar[str] = "payment.refunded"
    gateway_refund_id: str
    occurred_at: str
    compensation: bool = False
    # The charge given back (a compensation's ``payment.completed`` travels on another topic
    # and may be read after this event: the order learns of the charge from either).
    charge_id: str | None = None


@dataclass(frozen=True, slots=True)
class RefundFailed(_RefundEvent):
    """The gateway refused the refund; nothing was given back, the reservation is released."""

    event_type: ClassVar[str] = "refund.failed"
    reason: Decline
    occurred_at: str
    compensation: bool = False


Event = (
    PlaceOrder
    | OrderCreated
    | PaymentCompleted
    | PaymentFailed
    | CancelOrder
    | OrderCancelled
    | RefundOrder
    | RefundRequested
    | PaymentRefunded
    | RefundFailed
)
EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls
    for cls in (
        PlaceOrder,
        OrderCreated,
        PaymentCompleted,
        PaymentFailed,
        CancelOrder,
        OrderCancelled,
        RefundOrder,
        RefundRequested,
        PaymentRefunded,
        RefundFailed,
    )
}
