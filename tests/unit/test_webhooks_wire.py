"""The webhook shapes on the wire (``orderflow.wire.webhooks``): each round-trips whole, and a
record that cannot be read raises ``EventDecodeError`` naming the field."""

from __future__ import annotations

import json
import re

import pytest

from orderflow.domain.errors import EventDecodeError
from orderflow.domain.webhooks import Attempt, Delivery, DeliveryState, Endpoint, OrderWebhooks
from orderflow.wire.webhooks import (
    WebhookAttempt,
    WebhookResend,
    decode_attempts_record,
    encode_attempts_record,
    endpoint_from_bytes,
    endpoint_to_bytes,
    webhooks_from_bytes,
    webhooks_to_bytes,
)

ENDPOINT = Endpoint("we_1", "client-a", "https://hooks.example.com/x", "2024-05-01T12:00:00.000Z")
FAILED_ONCE = Attempt(1, 1000.25, 503, "", 12)
TIMED_OUT = Attempt(2, 1010.5, 0, "timeout", 10_000)
RECORD = OrderWebhooks(
    "ord-1",
    last_version="abcd",
    last_status="PAID",
    sequence=2,
    deliveries=(
        Delivery(
            "evt_1",
            "we_1",
            ENDPOINT.url,
            '{"id":"evt_1"}',
            created_at=1000.0,
            state=DeliveryState.DELIVERED,
            next_at=1000.0,
            attempt_count=1,
            attempts=(Attempt(1, 1000.0, 200, "", 3),),
        ),
        Delivery(
            "evt_2",
            "we_1",
            ENDPOINT.url,
            '{"id":"evt_2","data":{"order":{"note":"\\u00e9\\n"}}}',
            created_at=1000.0,
            next_at=1050.5,
            attempt_count=2,
            attempts=(FAILED_ONCE, TIMED_OUT),
            resent_at=1001.0,
        ),
    ),
)
ATTEMPT = WebhookAttempt(order_id="ord-1", event_id="evt_2", endpoint_id="we_1", attempt=TIMED_OUT)


def test_an_order_s_webhooks_round_trip() -> None:
    decoded = webhooks_from_bytes(webhooks_to_bytes(RECORD))

    assert decoded == RECORD
    assert decoded.deliveries[0].state is DeliveryState.DELIVERED


def test_an_empty_order_record_round_trips() -> None:
    assert webhooks_from_bytes(webhooks_to_bytes(OrderWebhooks("ord-1"))) == OrderWebhooks("ord-1")


def test_an_endpoint_round_trips() -> None:
    assert endpoint_from_bytes(endpoint_to_bytes(ENDPOINT)) == ENDPOINT


@pytest.mark.parametrize(
    "record",
    [
        ATTEMPT,
        WebhookAttempt(order_id="ord-1", event_id="evt_1", endpoint_id="we_1", attempt=FAILED_ONCE),
        WebhookResend(order_id="ord-1", requested_at=1000.5),
        WebhookResend(order_id="ord-1", event_id="evt_2", requested_at=1.0, client_id="client-a"),
    ],
)
def test_an_attempts_topic_record_round_trips(record: WebhookAttempt | WebhookResend) -> None:
    decoded = decode_attempts_record(encode_attempts_record(record))

    assert decoded == record
    assert type(decoded) is type(record)


def test_a_reader_ignores_fields_a_newer_minor_version_adds() -> None:
    raw = json.loads(encode_attempts_record(ATTEMPT))
    raw.update(schema_version="1.3", retry_hint="soon")

    assert decode_attempts_record(json.dumps(raw).encode()) == WebhookAttempt(
        order_id="ord-1",
        event_id="evt_2",
        endpoint_id="we_1",
        attempt=TIMED_OUT,
        schema_version="1.3",
    )


# -- records that cannot be read --------------------------------------------------------------


def _without(raw: bytes, *path: str) -> bytes:
    """``raw`` (a JSON object) without the member at ``path``."""
    value = json.loads(raw)
    inner = value
    for name in path[:-1]:
        inner = inner[name]
    del inner[path[-1]]
    return json.dumps(value).encode()


def _with(raw: bytes, **members: object) -> bytes:
    return json.dumps({**json.loads(raw), **members}).encode()


ATTEMPT_RAW = encode_attempts_record(ATTEMPT)
RECORD_RAW = webhooks_to_bytes(RECORD)
ENDPOINT_RAW = endpoint_to_bytes(ENDPOINT)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "value: not JSON"),
        (b"", "value: not JSON"),
        (_without(ATTEMPT_RAW, "event_id"), "event_id: missing"),
        (_without(ATTEMPT_RAW, "attempt", "status"), "attempt.status: missing"),
        (_with(ATTEMPT_RAW, order_id=""), "order_id: empty"),
        (_with(ATTEMPT_RAW, type="webhook.cancel"), "type: "),
        (_without(ATTEMPT_RAW, "type"), "type: missing"),
        (_with(ATTEMPT_RAW, schema_version="2.0"), "schema_version: '2.0'"),
    ],
)
def test_an_undecodable_attempts_record_names_the_field(raw: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError, match="^" + re.escape(reason)):
        decode_attempts_record(raw)


def test_a_null_attempts_record_is_refused() -> None:
    with pytest.raises(EventDecodeError, match=r"^value: missing"):
        decode_attempts_record(None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"value": ', "value: not JSON"),
        (_without(RECORD_RAW, "value"), "value: missing"),
        (_without(RECORD_RAW, "value", "order_id"), "value.order_id: missing"),
        (
            json.dumps(
                {"value": {"order_id": "ord-1", "deliveries": [{"event_id": "evt_1"}]}}
            ).encode(),
            "value.deliveries[0].endpoint_id: missing",
        ),
        (_with(RECORD_RAW, schema_version="2.0"), "schema_version: '2.0'"),
    ],
)
def test_an_undecodable_webhooks_value_names_the_field(raw: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError, match="^" + re.escape(reason)):
        webhooks_from_bytes(raw)


def test_an_unknown_delivery_state_names_the_field() -> None:
    value = json.loads(RECORD_RAW)
    value["value"]["deliveries"][0]["state"] = "BOUNCED"

    with pytest.raises(EventDecodeError, match=r"^value\.deliveries\[0\]\.state: "):
        webhooks_from_bytes(json.dumps(value).encode())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff", "value: not JSON"),
        (_without(ENDPOINT_RAW, "value", "url"), "value.url: missing"),
        (_with(ENDPOINT_RAW, schema_version="2.0"), "schema_version: '2.0'"),
    ],
)
def test_an_undecodable_endpoint_names_the_field(raw: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError, match="^" + re.escape(reason)):
        endpoint_from_bytes(raw)
