"""Readers tolerate what a newer worker adds, and refuse what they cannot read, naming why."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from orderflow.domain.errors import EventDecodeError
from orderflow.domain.events import OrderCreated, PaymentFailed
from orderflow.domain.order import OrderStatus
from orderflow.domain.payment import decline_for
from orderflow.wire import (
    decode_event,
    decode_reconcile,
    encode_event,
    encode_reconcile,
    order_from_bytes,
    order_to_bytes,
    payment_from_bytes,
)
from tests.unit.builders import ITEMS, ITEMS_TOTAL, T0, T1

CREATED = OrderCreated("ord-1", "cust-42", "USD", ITEMS_TOTAL, ITEMS, "tok_visa", T0, "shop-a")
FAILED = PaymentFailed("ord-1", ITEMS_TOTAL, "USD", decline_for("card_declined"), T1, "ch_9")


def _newer_worker(event: Any, **extra: Any) -> bytes:
    """The event as a worker one MINOR version ahead writes it: more fields, at every level."""
    data = json.loads(encode_event(event))
    data.update(schema_minor=1, loyalty_points=12, **extra)
    for item in data.get("items", []):
        item["tax_code"] = "T1"
    for nested in ("payment", "reason"):
        if nested in data:
            data[nested]["issuer"] = "acme"
    return json.dumps(data).encode()


@pytest.mark.parametrize("event", [CREATED, FAILED], ids=["order.created", "payment.failed"])
def test_event_of_a_newer_minor_version_decodes_to_the_same_event(event: Any) -> None:
    assert decode_event(_newer_worker(event), event.event_type) == event


def test_event_of_a_newer_major_version_is_refused_naming_the_version() -> None:
    # A new MAJOR may have changed any field: the version is the reason, not the first field.
    raw = _newer_worker(CREATED, schema_version=2, amount="44.98")

    with pytest.raises(EventDecodeError, match=r"^schema_version: 2 is not supported"):
        decode_event(raw, "order.created")


def test_writers_omit_optional_fields_at_their_default() -> None:
    data = json.loads(encode_event(OrderCreated("o", "c", "USD", 1, ITEMS, "", T0)))

    assert data["payment"] == {} and "client_id" not in data and "schema_minor" not in data


def test_order_db_value_is_versioned_and_not_the_public_view() -> None:
    order = order_from_bytes(
        b'{"order_id":"o","status":"PAID","customer_id":"c","amount":1,"currency":"USD",'
        b'"items":[],"created_at":"t","updated_at":"t","fingerprint":"f","request_id":"r"}'
    )
    data = json.loads(order_to_bytes(order))

    assert data["schema_version"] == 1 and order.status is OrderStatus.PAID
    assert "payment" not in data and "payment_token" not in data


def test_table_value_with_unknown_fields_decodes() -> None:
    raw = (
        b'{"schema_version":1,"order_id":"o","idempotency_key":"o","amount":1,"currency":"USD",'
        b'"status":"COMPLETED","attempts":1,"updated_at":1,"next_attempt_at":0,"future":true}'
    )

    assert payment_from_bytes(raw).updated_at == 1.0


def test_table_value_of_an_unknown_major_is_refused() -> None:
    with pytest.raises(ValueError, match="schema_version"):
        payment_from_bytes(b'{"schema_version":2,"order_id":"o"}')


def test_malformed_table_value_is_a_value_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^attempts: expected an integer"):
        payment_from_bytes(
            b'{"order_id":"o","idempotency_key":"o","amount":1,"currency":"USD",'
            b'"status":"UNKNOWN","attempts":"1","updated_at":1,"next_attempt_at":0}'
        )


def test_reconcile_request_round_trips_and_names_a_missing_order_id() -> None:
    assert decode_reconcile(encode_reconcile("ord-1")) == "ord-1"
    assert decode_reconcile(b'{"order_id":"ord-1","reason":"unknown"}') == "ord-1"
    with pytest.raises(EventDecodeError, match="order_id: missing"):
        decode_reconcile(b"{}")
    with pytest.raises(EventDecodeError, match="not JSON"):
        decode_reconcile(b"{")
    assert msgspec.json.decode(encode_reconcile("o")) == {"order_id": "o"}
