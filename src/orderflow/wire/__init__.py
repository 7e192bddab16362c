"""Everything on the wire, in one place: events, the reconcile request, dead-letter headers, and
the values stored in OrderDB and PaymentDB (and their changelogs).

Each shape is a versioned msgspec Struct that converts to and from the pure domain objects;
``schemas/*.schema.json`` are generated from them (``python -m orderflow.wire.schema``).
Readers are tolerant: unknown fields and a newer minor version are accepted, a newer MAJOR
``schema_version`` or a missing/invalid required field is refused with the field in the reason.
"""

from __future__ import annotations

from orderflow.wire.codec import parse_json
from orderflow.wire.events import decode_event, encode_event, event_to_dict
from orderflow.wire.reconcile import decode_reconcile, encode_reconcile
from orderflow.wire.tables import (
    order_from_bytes,
    order_to_bytes,
    payment_from_bytes,
    payment_to_bytes,
)

__all__ = [
    "decode_event",
    "decode_reconcile",
    "encode_event",
    "encode_reconcile",
    "event_to_dict",
    "order_from_bytes",
    "order_to_bytes",
    "parse_json",
    "payment_from_bytes",
    "payment_to_bytes",
]
