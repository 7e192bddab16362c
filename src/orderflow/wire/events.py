"""The events on the wire: their JSON shape (msgspec Structs), version, and conversion.

Every event is a JSON object: ``event_type`` (the tag), ``event_id``, ``schema_version`` (the
MAJOR version, 1), ``occurred_at`` (RFC 3339), ``order_id``, then the type's own fields.

Compatibility rules (a rolling upgrade mixes old and new workers):

- Readers are tolerant: unknown fields are ignored, at every level, and so is ``schema_minor``
  (absent = 0), which a newer writer raises when it ADDS optional fields. Old readers never
  required it, so a minor change never dead-letters an event.
- A change that old readers cannot read (a field removed, renamed, retyped or made required)
  raises ``schema_version``; readers refuse a MAJOR they do not know, with that as the reason.
- Writers omit optional fields at their default (``client_id`` "", ``keyed`` False, a missing
  ``payment.token``, ``charge_id`` null, ``schema_minor`` 0): events from before they existed
  look the same.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from orderflow.domain.errors import EventDecodeError
from orderflow.domain.events import (
    EVENT_TYPES,
    CancelOrder,
    Event,
    OrderCancelled,
    OrderCreated,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    PlaceOrder,
    RefundFailed,
    RefundOrder,
    RefundRequested,
)
from orderflow.domain.payment import Decline
from orderflow.domain.validation import LineItem
from orderflow.wire.codec import Amount, Currency, NonEmpty, Timestamp, decode_error, parse_json

__all__ = [
    "EVENT_SHAPES",
    "SCHEMA_MAJOR",
    "SCHEMA_MINOR",
    "decode_event",
    "encode_event",
    "event_to_dict",
]

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 0  # raise it with every additive change; readers accept any minor of their major


class LineItemV1(msgspec.Struct, frozen=True):
    """One line of an order; amounts in minor units of the order's currency."""

    sku: NonEmpty
    quantity: int
    unit_amount: Amount


class DeclineV1(msgspec.Struct, frozen=True):
    """Why the gateway declined, and whether a retry could succeed."""

    code: NonEmpty
    message: NonEmpty
    retryable: bool


class CommandPaymentV1(msgspec.Struct, frozen=True):
    """The gateway's payment token (never a card number)."""

    token: NonEmpty


class CreatedPaymentV1(msgspec.Struct, frozen=True, omit_defaults=True):
    """The payment token; absent only in a stall nudge's copy whose token is gone (the payment
    service then finishes the payment from its own record, or dead-letters the event)."""

    token: NonEmpty = ""


class _Envelope(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="event_type"
):
    """The fields every event carries (``event_type`` is the tag of each subclass)."""

    event_id: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            description="The same for every copy of the event: uuid5 of order id and type "
            "(order.place: the HTTP request's id), so consumers can drop duplicates.",
        ),
    ]
    schema_version: Annotated[
        Literal[1],
        msgspec.Meta(description="MAJOR version: a reader refuses one it does not know."),
    ]
    schema_minor: Annotated[
        int, msgspec.Meta(description="MINOR version (absent: 0): additive changes; any is read.")
    ] = 0
    occurred_at: Timestamp
    order_id: NonEmpty


class _OrderTermsV1(_Envelope, frozen=True, kw_only=True):
    """What the PlaceOrder command and the ``order.created`` event both say of an order: who
    ordered what, in which currency, paid with which token, for which API client.

    The token and the owner are also readable under the domain's names (``payment_token``,
    ``client_id``), so that ``decode_event`` converts every field by name.
    """

    customer_id: NonEmpty
    currency: Currency
    items: tuple[LineItemV1, ...]
    payment: CommandPaymentV1 | CreatedPaymentV1
    # The API client that placed it (``client_id`` on the wire); absent: no owner (also an order
    # from before API keys).
    owner: NonEmpty | None = msgspec.field(default=None, name="client_id")

    @property
    def payment_token(self) -> str:
        return self.payment.token

    @property
    def client_id(self) -> str:
        return self.owner or ""


class PlaceOrderV1(_OrderTermsV1, frozen=True, kw_only=True, tag="order.place"):
    """Command from the web view to the order service (internal topic): place this order."""

    payment: CommandPaymentV1
    request_id: NonEmpty
    fingerprint: NonEmpty
    keyed: bool = False  # order_id is generation 0 of an Idempotency-Key


class OrderCreatedV1(_OrderTermsV1, frozen=True, kw_only=True, tag="order.created"):
    """The order service accepted an order; the payment service charges it."""

    payment: CreatedPaymentV1
    amount: Amount


class PaymentCompletedV1(_Envelope, frozen=True, kw_only=True, tag="payment.completed"):
    """The gateway charged the order's amount."""

    amount: Amount
    currency: Currency
    charge_id: NonEmpty


class PaymentFailedV1(_Envelope, frozen=True, kw_only=True, tag="payment.failed"):
    """The gateway declined; ``reason`` says why and whether a retry could succeed."""

    amount: Amount
    currency: Currency
    reason: DeclineV1
    charge_id: NonEmpty | None = None


Reason = Annotated[
    str, msgspec.Meta(max_length=500, description="The client's words; absent: none given.")
]


class CancelOrderV1(_Envelope, frozen=True, kw_only=True, tag="order.cancel"):
    """Command from the web view to the order service: cancel this order if it is not paid."""

    request_id: NonEmpty
    reason: Reason = ""
    owner: NonEmpty | None = msgspec.field(default=None, name="client_id")

    @property
    def client_id(self) -> str:
        return self.owner or ""


class OrderCancelledV1(_Envelope, frozen=True, kw_only=True, tag="order.cancelled"):
    """The order service cancelled a PENDING order: never charge it, refund a racing charge."""

    reason: Reason = ""
    amount: Amount
    currency: Currency


class _RefundV1(_Envelope, frozen=True, kw_only=True):
    """One refund of an order: its id (several per order), amount and the order's currency."""

    refund_id: NonEmpty
    amount: Amount
    currency: Currency


class RefundOrderV1(_RefundV1, frozen=True, kw_only=True, tag="order.refund"):
    """Command from the web view to the order service: give back ``amount`` of the order."""

    request_id: NonEmpty
    fingerprint: NonEmpty
    reason: Reason = ""
    owner: NonEmpty | None = msgspec.field(default=None, name="client_id")

    @property
    def client_id(self) -> str:
        return self.owner or ""


class RefundRequestedV1(_RefundV1, frozen=True, kw_only=True, tag="refund.requested"):
    """The order service reserved the amount: the payment service refunds it at the gateway."""

    reason: Reason = ""


class PaymentRefundedV1(_RefundV1, frozen=True, kw_only=True, tag="payment.refunded"):
    """The gateway gave the amount back (``compensation``: a charge that raced a cancel)."""

    gateway_refund_id: NonEmpty
    compensation: bool = False
    charge_id: NonEmpty | None = None  # the charge given back (always set on a compensation)


class RefundFailedV1(_RefundV1, frozen=True, kw_only=True, tag="refund.failed"):
    """The gateway refused the refund; nothing was given back."""

    reason: DeclineV1
    compensation: bool = False


WireEvent = (
    PlaceOrderV1
    | OrderCreatedV1
    | PaymentCompletedV1
    | PaymentFailedV1
    | CancelOrderV1
    | OrderCancelledV1
    | RefundOrderV1
    | RefundRequestedV1
    | PaymentRefundedV1
    | RefundFailedV1
)
# event_type -> its shape (the schema generator and the decode-error path read it).
EVENT_SHAPES: dict[str, type[WireEvent]] = {
    PlaceOrder.event_type: PlaceOrderV1,
    OrderCreated.event_type: OrderCreatedV1,
    PaymentCompleted.event_type: PaymentCompletedV1,
    PaymentFailed.event_type: PaymentFailedV1,
    CancelOrder.event_type: CancelOrderV1,
    OrderCancelled.event_type: OrderCancelledV1,
    RefundOrder.event_type: RefundOrderV1,
    RefundRequested.event_type: RefundRequestedV1,
    PaymentRefunded.event_type: PaymentRefundedV1,
    RefundFailed.event_type: RefundFailedV1,
}
_EVENT_TYPE_OF: dict[type[WireEvent], str] = {v: k for k, v in EVENT_SHAPES.items()}
_DECODER = msgspec.json.Decoder(WireEvent)
_ENCODER = msgspec.json.Encoder()


def _wire_items(items: tuple[LineItem, ...]) -> tuple[LineItemV1, ...]:
    return tuple(LineItemV1(i.sku, i.quantity, i.unit_amount) for i in items)


def _order_event_to_wire(
    event: PlaceOrder | OrderCreated, common: dict[str, Any]
) -> PlaceOrderV1 | OrderCreatedV1:
    terms: dict[str, Any] = {
        **common,
        "customer_id": event.customer_id,
        "currency": event.currency,
        "items": _wire_items(event.items),
        "owner": event.client_id or None,
    }
    if isinstance(event, PlaceOrder):
        return PlaceOrderV1(
            **terms,
            payment=CommandPaymentV1(event.payment_token),
            request_id=event.request_id,
            fingerprint=event.fingerprint,
            keyed=event.keyed,
        )
    return OrderCreatedV1(
        **terms, payment=CreatedPaymentV1(event.payment_token), amount=event.amount
    )


def _to_wire(event: Event) -> WireEvent:
    common: dict[str, Any] = {
        "event_id": event.event_id,
        "schema_version": SCHEMA_MAJOR,
        "schema_minor": SCHEMA_MINOR,
        "occurred_at": event.occurred_at,
        "order_id": event.order_id,
    }
    match event:
        case PlaceOrder() | OrderCreated():
            return _order_event_to_wire(event, common)
        case PaymentCompleted():
            return PaymentCompletedV1(
                **common, amount=event.amount, currency=event.currency, charge_id=event.charge_id
            )
        case PaymentFailed():
            return PaymentFailedV1(
                **common,
                amount=event.amount,
                currency=event.currency,
                reason=_wire_decline(event.reason),
                charge_id=event.charge_id,
            )
        case CancelOrder():
            return CancelOrderV1(
                **common,
                request_id=event.request_id,
                reason=event.reason,
                owner=event.client_id or None,
            )
        case OrderCancelled():
            return OrderCancelledV1(
                **common, reason=event.reason, amount=event.amount, currency=event.currency
            )
        case _:
            return _refund_to_wire(event, common)


def _wire_decline(decline: Decline) -> DeclineV1:
    return DeclineV1(decline.code, decline.message, decline.retryable)


def _refund_to_wire(
    event: RefundOrder | RefundRequested | PaymentRefunded | RefundFailed, common: dict[str, Any]
) -> WireEvent:
    terms: dict[str, Any] = {
        **common,
        "refund_id": event.refund_id,
        "amount": event.amount,
        "currency": event.currency,
    }
    match event:
        case RefundOrder():
            return RefundOrderV1(
                **terms,
                request_id=event.request_id,
                fingerprint=event.fingerprint,
                reason=event.reason,
                owner=event.client_id or None,
            )
        case RefundRequested():
            return RefundRequestedV1(**terms, reason=event.reason)
        case PaymentRefunded():
            return PaymentRefundedV1(
                **terms,
                gateway_refund_id=event.gateway_refund_id,
                compensation=event.compensation,
                charge_id=event.charge_id,
            )
        case RefundFailed():
            return RefundFailedV1(
                **terms, reason=_wire_decline(event.reason), compensation=event.compensation
            )


def encode_event(event: Event) -> bytes:
    """The event's JSON bytes (what every topic carries)."""
    return _ENCODER.encode(_to_wire(event))


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event's wire form as plain JSON values (for diffs and schema checks)."""
    data: dict[str, Any] = msgspec.json.decode(encode_event(event))
    return data


def decode_event(raw: bytes | None, expected_type: str | None = None) -> Event:
    """Parse bytes from a topic; raises EventDecodeError (never anything else) naming the field."""
    if raw is None:
        raise EventDecodeError("value: empty (tombstone)")
    try:
        wire: WireEvent = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise _explain(raw, expected_type, exc) from None
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"value: not JSON ({exc})") from None
    event_type = _EVENT_TYPE_OF[type(wire)]
    if expected_type is not None and event_type != expected_type:
        raise _wrong_type(event_type, expected_type)
    # By field name (nested items and declines too), like table reads; faster than the
    # positional copies it replaced. Writes (_to_wire) stay by hand, unlike table writes: the
    # wire nests the token under ``payment``, writes no owner as absent and carries versions the
    # domain does not, which a by-name conversion cannot do without wire names in the domain.
    domain: Event = msgspec.convert(wire, EVENT_TYPES[event_type], from_attributes=True)
    return domain


def _wrong_type(event_type: str, expected_type: str) -> EventDecodeError:
    return EventDecodeError(f"event_type: {event_type!r} where {expected_type!r} belongs")


def _explain(
    raw: bytes, expected_type: str | None, exc: msgspec.ValidationError
) -> EventDecodeError:
    """The reason an event failed: its envelope first (type, then version), then the field.

    A newer MAJOR may have changed any field, so the version is the reason, not the field.
    """
    data = parse_json(raw)
    if not isinstance(data, dict):
        return decode_error(exc)
    event_type = data.get("event_type")
    if not isinstance(event_type, str):
        return decode_error(exc)
    if event_type not in EVENT_SHAPES:
        return EventDecodeError(f"event_type: unknown type {event_type!r}")
    if expected_type is not None and event_type != expected_type:
        return _wrong_type(event_type, expected_type)
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_MAJOR:
        return EventDecodeError(f"schema_version: {version} is not supported for {event_type}")
    return decode_error(exc)
