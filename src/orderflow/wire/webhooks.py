"""The webhook shapes on the wire: WebhookDB values, endpoint records, and the records of
``orderflow.webhook-attempts`` (a POST's outcome, or a person's "send it again").

The domain dataclasses (``domain/webhooks.py``) are their own stored shape here (msgspec reads
and writes dataclasses), wrapped with ``schema_version`` like every other value; readers ignore
unknown fields and refuse a MAJOR they do not know.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from orderflow.domain.errors import EventDecodeError
from orderflow.domain.webhooks import Attempt, Endpoint, OrderWebhooks
from orderflow.wire.codec import NonEmpty, decode_error

__all__ = [
    "WebhookAttempt",
    "WebhookResend",
    "decode_attempts_record",
    "encode_attempts_record",
    "endpoint_from_bytes",
    "endpoint_to_bytes",
    "webhooks_from_bytes",
    "webhooks_to_bytes",
]

_MAJOR = 1
V = TypeVar("V", bound="_Versioned")


class _Versioned(msgspec.Struct, kw_only=True):
    schema_version: str = "1.0"


class _StoredWebhooksV1(_Versioned, kw_only=True):
    value: OrderWebhooks


class _EndpointV1(_Versioned, kw_only=True):
    value: Endpoint


class WebhookAttempt(msgspec.Struct, frozen=True, kw_only=True, tag="webhook.attempt"):
    """One POST of a delivery and its outcome, from the worker that sent it."""

    order_id: NonEmpty
    event_id: NonEmpty
    endpoint_id: NonEmpty
    attempt: Attempt
    schema_version: str = "1.0"


class WebhookResend(msgspec.Struct, frozen=True, kw_only=True, tag="webhook.resend"):
    """Send an order's deliveries again (all of them, or those of ``event_id``)."""

    order_id: NonEmpty
    event_id: str | None = None
    requested_at: float
    client_id: str = ""
    schema_version: str = "1.0"


AttemptsRecord = WebhookAttempt | WebhookResend
_attempts_decoder = msgspec.json.Decoder(AttemptsRecord)


def _check_major(version: str) -> None:
    major = version.partition(".")[0]
    if major != str(_MAJOR):
        raise EventDecodeError(f"schema_version: {version!r} (this reader knows {_MAJOR}.x)")


def encode_attempts_record(record: AttemptsRecord) -> bytes:
    return msgspec.json.encode(record)


def decode_attempts_record(raw: bytes | None) -> AttemptsRecord:
    if raw is None:
        raise EventDecodeError("value: missing (null record)")
    try:
        record: AttemptsRecord = _attempts_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise decode_error(exc) from None
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"value: not JSON ({exc})") from None
    _check_major(record.schema_version)
    return record


def webhooks_to_bytes(record: OrderWebhooks) -> bytes:
    return msgspec.json.encode(_StoredWebhooksV1(value=record))


def webhooks_from_bytes(raw: bytes) -> OrderWebhooks:
    return _decode(raw, _StoredWebhooksV1).value


def endpoint_to_bytes(endpoint: Endpoint) -> bytes:
    return msgspec.json.encode(_EndpointV1(value=endpoint))


def endpoint_from_bytes(raw: bytes) -> Endpoint:
    return _decode(raw, _EndpointV1).value


def _decode(raw: bytes, shape: type[V]) -> V:
    """``raw`` read as ``shape``, its MAJOR checked; errors name the field."""
    try:
        stored = msgspec.json.decode(raw, type=shape)
    except msgspec.ValidationError as exc:
        raise decode_error(exc) from None
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"value: not JSON ({exc})") from None
    _check_major(stored.schema_version)
    return stored
