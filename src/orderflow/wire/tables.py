"""Table values as stored in OrderDB and PaymentDB (and their changelogs): their own shape.

The stored shape is not the HTTP API's view (``domain/responses.py`` maps that), so changing
the API response never changes a changelog. Values are JSON objects with ``schema_version``
(absent in values written before it existed: 1); readers ignore unknown fields, like event
readers, and refuse a MAJOR they do not know.

Compatibility kept: OrderDB values written before payment tokens left it carry a
``payment_token`` (read into ``Order.legacy_payment_token``, never written back) and no
``command_offset``/``client_id``; PaymentDB values from before INCONSISTENT have no ``problem``.
OrderDB values from before cancels and refunds have no ``captured`` (a PAID one reads as having
captured its amount); those fields, and the later ones of PaymentDB, are written only when not
at their default, so an order that is only placed and paid is stored as it always was.

Each stored shape is declared once, from its domain dataclass (``Order``, ``PaymentRecord``):
names, types (nested ones mapped to their stored Structs) and defaults, minus in-memory-only
fields, plus ``schema_version`` and the read-only legacy ``payment_token``. So a change to the
domain changes the changelog; what stops that happening silently is the generated JSON Schema
checked in (``tests/unit/wire/test_schema_drift.py`` fails until it is regenerated and reviewed)
and the pinned bytes (``tests/unit/wire/test_compatibility.py``, ``encoded_34587e2.json``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, cast, get_type_hints

import msgspec

from orderflow.domain.order import Order, OrderStatus
from orderflow.domain.payment import PaymentRecord
from orderflow.wire.codec import NonEmpty, decode_error
from orderflow.wire.events import LineItemV1

__all__ = [
    "OrderValueV1",
    "PaymentValueV1",
    "order_from_bytes",
    "order_to_bytes",
    "payment_from_bytes",
    "payment_to_bytes",
]


class StoredDeclineV1(msgspec.Struct, frozen=True):
    """A decline as stored (the gateway's words, kept as they came)."""

    code: str
    message: str
    retryable: bool


class StoredOrderRefundV1(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One refund of an order as OrderDB keeps it."""

    refund_id: NonEmpty
    amount: int
    state: str
    reason: str
    requested_at: str
    fingerprint: str = ""
    request_id: str = ""
    gateway_refund_id: str | None = None
    decline: StoredDeclineV1 | None = None
    compensation: bool = False


class _StoredValueV1(msgspec.Struct, frozen=True, kw_only=True):
    """What every table value starts with: its MAJOR version and the order it is kept for."""

    schema_version: Literal[1] = 1
    order_id: NonEmpty


# The nested domain types, read as their stored Structs when the domain's annotations are.
class StoredCancellationV1(msgspec.Struct, frozen=True):
    """Why and when the order was cancelled."""

    reason: str
    at: str


class StoredRefundAttemptV1(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One refund as PaymentDB keeps it: the gateway attempt and its outcome."""

    refund_id: NonEmpty
    idempotency_key: NonEmpty
    amount: int
    status: str
    reason: str = ""
    compensation: bool = False
    attempts: int = 0
    gateway_refund_id: str | None = None
    decline: StoredDeclineV1 | None = None
    updated_at: float = 0.0
    next_attempt_at: float = 0.0


_STORED_NESTED = {
    "LineItem": LineItemV1,
    "Decline": StoredDeclineV1,
    "OrderRefund": StoredOrderRefundV1,
    "RefundAttempt": StoredRefundAttemptV1,
    "Cancellation": StoredCancellationV1,
}


def _stored_shape(
    name: str,
    domain: type[Any],
    doc: str,
    *,
    keys_first: tuple[str, ...] = (),
    in_memory: tuple[str, ...] = (),
    always_stored: tuple[str, ...] = (),
    read_only: tuple[tuple[str, Any, Any], ...] = (),
    sparse: tuple[str, ...] = (),
    for_writing: bool = False,
) -> type[_StoredValueV1]:
    """A table value's Struct made from the domain dataclass's fields (names, types, defaults).

    ``keys_first``: fields whose JSON keys come first, in that order (the order the changelog has
    always had, before the rest in the domain's order); ``in_memory``: domain fields never stored;
    ``always_stored``: fields every value carries although the domain has a default for them;
    ``read_only``: stored fields with no domain attribute (read from old values, never written);
    ``sparse``: fields added later, written only when not at their default. ``for_writing``: the
    writer's shape, where a sparse field may be left unset (``_sparse_unset`` does it at its
    default), so a value with no sparse field set is written byte for byte as before.
    """
    hints = get_type_hints(domain, localns=_STORED_NESTED)
    # order_id comes from the base (non-empty there).
    by_name = {
        f.name: f for f in dataclasses.fields(domain) if f.name not in ("order_id", *in_memory)
    }
    ordered = [by_name.pop(key) for key in keys_first] + list(by_name.values())
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        (f.name, hints[f.name] | msgspec.UnsetType, msgspec.UNSET)
        if for_writing and f.name in sparse
        else (f.name, hints[f.name])
        if f.default is dataclasses.MISSING or f.name in always_stored
        else (f.name, hints[f.name], _default_of(f))
        for f in ordered
    ]
    shape = msgspec.defstruct(
        name,
        [*fields, *read_only],
        bases=(_StoredValueV1,),
        module=__name__,
        namespace={"__doc__": doc},
        frozen=True,
        kw_only=True,
    )
    return cast(type[_StoredValueV1], shape)


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


_ORDER_SHAPE: dict[str, Any] = {
    "keys_first": ("status", "customer_id", "amount", "currency", "items"),
    "in_memory": ("legacy_payment_token",),
    # Only in values written before tokens left OrderDB; read, never written.
    "read_only": (("payment_token", str | msgspec.UnsetType, msgspec.UNSET),),
    "sparse": ("captured", "refunded", "refunds", "cancellation"),
}
_ORDER_DOC = "An OrderDB value: an order, never its payment token (the changelog is kept forever)."
OrderValueV1 = _stored_shape("OrderValueV1", Order, _ORDER_DOC, **_ORDER_SHAPE)
_OrderWrite = _stored_shape("OrderValueV1", Order, _ORDER_DOC, **_ORDER_SHAPE, for_writing=True)
_PAYMENT_SHAPE: dict[str, Any] = {
    "always_stored": ("attempts", "updated_at", "next_attempt_at"),
    "sparse": ("cancelled", "refunds", "voidable_at"),
}
_PAYMENT_DOC = "A PaymentDB value: the payment's state; the token only while a charge may follow."
PaymentValueV1 = _stored_shape("PaymentValueV1", PaymentRecord, _PAYMENT_DOC, **_PAYMENT_SHAPE)
_PaymentWrite = _stored_shape(
    "PaymentValueV1", PaymentRecord, _PAYMENT_DOC, **_PAYMENT_SHAPE, for_writing=True
)


def _sparse_defaults(obj: Order | PaymentRecord) -> dict[str, Any]:
    """The values at which a writer leaves each sparse field out (see ``order_from_bytes``)."""
    if isinstance(obj, PaymentRecord):
        return {"cancelled": False, "refunds": (), "voidable_at": 0.0}
    captured = obj.amount if obj.status is OrderStatus.PAID else 0  # implied by PAID
    return {"captured": captured, "refunded": 0, "refunds": (), "cancellation": None}


_ENCODER = msgspec.json.Encoder()
_ORDER = msgspec.json.Decoder(OrderValueV1)
_PAYMENT = msgspec.json.Decoder(PaymentValueV1)


def _decode(decoder: msgspec.json.Decoder[Any], raw: bytes) -> Any:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise ValueError(str(decode_error(exc))) from None


# The stored shapes name their fields like the domain's dataclasses, so writes and reads convert
# attribute by attribute (nested items and declines too). In-memory-only fields (the order's
# ``legacy_payment_token``) have no stored field and are never written; the read-only legacy
# ``payment_token`` has no domain attribute and stays unset.
def _to_bytes(obj: Order | PaymentRecord, shape: type[_StoredValueV1]) -> bytes:
    # About twice the time of a Struct built by hand (~2 us, against ~4.5 ms of worker CPU per
    # order), for one definition of each field list instead of a keyword copy per table.
    value = msgspec.convert(obj, shape, from_attributes=True)
    at_default = {
        name: msgspec.UNSET
        for name, default in _sparse_defaults(obj).items()
        if getattr(obj, name) == default
    }
    if at_default:  # unset: not written at all
        value = msgspec.structs.replace(value, **at_default)
    return _ENCODER.encode(value)


def order_to_bytes(order: Order) -> bytes:
    return _to_bytes(order, _OrderWrite)


def order_from_bytes(raw: bytes) -> Order:
    """The stored order; ValueError naming the field when malformed (msgspec's DecodeError for
    bytes that are not JSON is one too)."""
    value = _decode(_ORDER, raw)
    order = msgspec.convert(value, Order, from_attributes=True)
    if isinstance(value.payment_token, str):
        # Kept in memory for the stall nudge, the only way left to charge such an order.
        order = dataclasses.replace(order, legacy_payment_token=value.payment_token)
    if order.status is OrderStatus.PAID and not order.captured:
        # Stored before ``captured`` existed: a PAID order captured its whole amount.
        order = dataclasses.replace(order, captured=order.amount)
    return order


def payment_to_bytes(record: PaymentRecord) -> bytes:
    return _to_bytes(record, _PaymentWrite)


def payment_from_bytes(raw: bytes) -> PaymentRecord:
    """The stored payment; ValueError naming the field when malformed."""
    value = _decode(_PAYMENT, raw)
    return msgspec.convert(value, PaymentRecord, from_attributes=True)
