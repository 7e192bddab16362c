"""The reconcile request: "owner of this order, ask the gateway about its UNKNOWN payment"."""

from __future__ import annotations

import msgspec

from orderflow.domain.errors import EventDecodeError
from orderflow.wire.codec import NonEmpty, decode_error

__all__ = ["ReconcileRequestV1", "decode_reconcile", "encode_reconcile"]


class ReconcileRequestV1(msgspec.Struct, frozen=True):
    """Sent by the reconciler to the payment-reconcile topic, keyed by the order id."""

    order_id: NonEmpty


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(ReconcileRequestV1)


def encode_reconcile(order_id: str) -> bytes:
    return _ENCODER.encode(ReconcileRequestV1(order_id))


def decode_reconcile(raw: bytes | None) -> str:
    """The order id to reconcile; EventDecodeError naming the field when malformed."""
    if raw is None:
        raise EventDecodeError("value: empty (tombstone)")
    try:
        return _DECODER.decode(raw).order_id
    except msgspec.ValidationError as exc:
        raise EventDecodeError(f"reconcile request: {decode_error(exc)}") from None
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"value: not JSON ({exc})") from None
