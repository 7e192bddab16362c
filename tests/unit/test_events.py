"""Events on the wire: round trips, deterministic ids, decode errors, and the JSON schemas."""

from __future__ import annotations

import copy
import dataclasses
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError

from orderflow.domain.errors import EventDecodeError
from orderflow.domain.events import (
    EVENT_TYPES,
    Event,
    OrderCreated,
    PaymentCompleted,
    PaymentFailed,
    event_id_for,
    rfc3339,
)
from orderflow.domain.payment import decline_for
from orderflow.wire import decode_event, encode_event, event_to_dict
from orderflow.wire.schema import load_schema, validate_event_dict
from tests.unit.builders import ITEMS, ITEMS_TOTAL, T0, T1, place_command

ORDER_CREATED = OrderCreated("ord-1", "cust-42", "USD", ITEMS_TOTAL, ITEMS, "tok_visa", T0)
PAYMENT_COMPLETED = PaymentCompleted("ord-1", ITEMS_TOTAL, "USD", "ch_123", T1)
PAYMENT_FAILED = PaymentFailed("ord-1", ITEMS_TOTAL, "USD", decline_for("card_declined"), T1)
PAYMENT_FAILED_WITH_CHARGE = PaymentFailed(
    "ord-1", ITEMS_TOTAL, "USD", decline_for("insufficient_funds"), T1, charge_id="ch_9"
)

OWNED_PLACE = dataclasses.replace(place_command(), client_id="shop-a", keyed=True)
OWNED_CREATED = dataclasses.replace(ORDER_CREATED, client_id="shop-a")
# The fields an event writes only when set (older events lack them and still decode).
OPTIONAL_FIELDS = {
    "order.place": {"client_id", "keyed"},
    "order.created": {"client_id"},
    "payment.failed": {"charge_id"},
}


def event_from_dict(data: Any, expected_type: str | None = None) -> Event:
    """Decode a wire form given as JSON values (what a hand-edited event looks like)."""
    return decode_event(json.dumps(data).encode(), expected_type)


EVENTS = [
    pytest.param(place_command(), id="order.place"),
    pytest.param(OWNED_PLACE, id="order.place-owned-keyed"),
    pytest.param(ORDER_CREATED, id="order.created"),
    pytest.param(OWNED_CREATED, id="order.created-owned"),
    pytest.param(PAYMENT_COMPLETED, id="payment.completed"),
    pytest.param(PAYMENT_FAILED, id="payment.failed"),
    pytest.param(PAYMENT_FAILED_WITH_CHARGE, id="payment.failed-with-charge-id"),
]


@pytest.mark.parametrize("event", EVENTS)
def test_event_survives_a_dict_round_trip(event: Event) -> None:
    assert event_from_dict(event_to_dict(event)) == event


@pytest.mark.parametrize("event", EVENTS)
def test_event_survives_a_bytes_round_trip(event: Event) -> None:
    assert decode_event(encode_event(event), event.event_type) == event


def test_wire_form_puts_envelope_fields_first_and_money_as_integers() -> None:
    data = event_to_dict(ORDER_CREATED)

    assert list(data)[:5] == ["event_type", "event_id", "schema_version", "occurred_at", "order_id"]
    assert data["event_type"] == "order.created"
    assert data["schema_version"] == 1
    assert type(data["amount"]) is int
    assert data["items"][0] == {"sku": "sku-1", "quantity": 2, "unit_amount": 1999}
    assert data["payment"] == {"token": "tok_visa"}


def test_event_id_is_the_same_for_a_republished_event() -> None:
    later_copy = PaymentCompleted("ord-1", ITEMS_TOTAL, "USD", "ch_other", "2030-01-01T00:00:00Z")

    assert later_copy.event_id == PAYMENT_COMPLETED.event_id
    assert PAYMENT_COMPLETED.event_id == event_id_for("ord-1", "payment.completed")
    assert uuid.UUID(PAYMENT_COMPLETED.event_id).version == 5


@pytest.mark.parametrize("order_id", ["ord-1", "", "ord_" + "f" * 32, "Zürich/東京", "a" * 500])
@pytest.mark.parametrize("event_type", ["order.created", "payment.completed", "payment.failed"])
def test_event_id_is_the_uuid5_of_order_id_and_type(order_id: str, event_type: str) -> None:
    namespace = uuid.UUID("6f1d3c1e-6a55-4c43-9a43-6a0f5a3b2e10")

    assert event_id_for(order_id, event_type) == str(
        uuid.uuid5(namespace, f"{order_id}/{event_type}")
    )


def test_event_ids_differ_across_types_and_orders() -> None:
    ids = {
        ORDER_CREATED.event_id,
        PAYMENT_COMPLETED.event_id,
        PAYMENT_FAILED.event_id,
        event_id_for("ord-2", "order.created"),
    }

    assert len(ids) == 4


def test_place_order_event_id_is_its_request_id() -> None:
    command = place_command()

    assert command.event_id == command.request_id
    assert place_command(request_id=str(uuid.uuid4())).event_id != command.event_id


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1714564800.25) == "2024-05-01T12:00:00.250Z"


# --- decode errors name the field ----------------------------------------------------------


def _without(*path: str | int) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _setting(value: Any, *path: str | int) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


DECODE_ERRORS: list[tuple[Event, Callable[[dict[str, Any]], None], str]] = [
    (PAYMENT_COMPLETED, _without("order_id"), "order_id: missing"),
    (PAYMENT_COMPLETED, _without("amount"), "amount: missing"),
    (PAYMENT_COMPLETED, _without("charge_id"), "charge_id: missing"),
    # No "token" in payment is a tokenless stall nudge (tests/unit/test_tokenless_nudge.py).
    (ORDER_CREATED, _without("payment"), "payment: missing"),
    (PAYMENT_FAILED, _without("reason", "code"), "reason.code: missing"),
    (PAYMENT_COMPLETED, _setting("6", "amount"), "amount: expected an integer"),
    (PAYMENT_COMPLETED, _setting(44.98, "amount"), "amount: expected an integer"),
    (PAYMENT_COMPLETED, _setting(True, "amount"), "amount: expected an integer"),
    (PAYMENT_COMPLETED, _setting(7, "currency"), "currency: expected a string"),
    (PAYMENT_FAILED, _setting("no", "reason", "retryable"), "reason.retryable: expected a boolean"),
    (PAYMENT_FAILED, _setting("x", "reason"), "reason: expected an object"),
    (
        ORDER_CREATED,
        _setting(2.0, "items", 1, "quantity"),
        "items[1].quantity: expected an integer",
    ),
    (ORDER_CREATED, _setting([3], "items"), "items[0]: expected an object"),
    (ORDER_CREATED, _setting({}, "items"), "items: expected an array"),
    (PAYMENT_COMPLETED, _without("event_type"), "event_type: missing"),
    (PAYMENT_COMPLETED, _setting(5, "event_type"), "event_type: expected a string"),
    (PAYMENT_COMPLETED, _setting("x.y", "event_type"), "event_type: unknown type 'x.y'"),
    (PAYMENT_COMPLETED, _setting(2, "schema_version"), "schema_version: 2 is not supported"),
    (PAYMENT_COMPLETED, _setting("1", "schema_version"), "schema_version: expected an integer"),
    (PAYMENT_COMPLETED, _without("schema_version"), "schema_version: missing"),
    # Regression: an empty top-level string was reported as ".order_id: empty".
    (PAYMENT_COMPLETED, _setting("", "order_id"), "order_id: empty"),
    (ORDER_CREATED, _setting("", "payment", "token"), "payment.token: empty"),
]


@pytest.mark.parametrize(
    ("event", "mutate", "message"), DECODE_ERRORS, ids=[case[2] for case in DECODE_ERRORS]
)
def test_decode_error_names_the_field(
    event: Event, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = event_to_dict(event)
    mutate(data)

    with pytest.raises(EventDecodeError) as caught:
        event_from_dict(data)

    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize("data", [None, [], "order.created", 42])
def test_decode_of_a_non_object_is_an_event_decode_error(data: Any) -> None:
    with pytest.raises(EventDecodeError, match="expected an object"):
        event_from_dict(data)


def test_decode_refuses_an_event_of_another_type_than_expected() -> None:
    with pytest.raises(EventDecodeError, match=r"^event_type: 'payment\.completed' where"):
        event_from_dict(event_to_dict(PAYMENT_COMPLETED), "order.created")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(None, id="tombstone"),
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"event_type": ', id="truncated"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'{"event_type": "order.created"}', id="object-missing-fields"),
    ],
)
def test_decode_event_on_malformed_bytes_raises_only_event_decode_error(raw: bytes | None) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(raw)


# --- JSON schemas ---------------------------------------------------------------------------


def test_there_is_one_schema_per_event_type() -> None:
    for event_type in EVENT_TYPES:
        schema = load_schema(event_type)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["properties"]["event_type"] == {"enum": [event_type]}
        assert schema["properties"]["schema_version"]["enum"] == [1]
        # Readers ignore unknown fields, so the schema allows them.
        assert schema.get("additionalProperties", True) is not False


def test_load_schema_of_an_unknown_type_raises_key_error() -> None:
    with pytest.raises(KeyError):
        load_schema("order.shipped")
    with pytest.raises(KeyError):
        load_schema("../order.created")


@pytest.mark.parametrize("event", EVENTS)
def test_wire_form_validates_against_its_schema(event: Event) -> None:
    validate_event_dict(event_to_dict(event))


@pytest.mark.parametrize("event", EVENTS)
def test_schema_requires_exactly_the_fields_event_to_dict_writes(event: Event) -> None:
    schema = load_schema(event.event_type)
    optional = OPTIONAL_FIELDS.get(event.event_type, set())
    written = set(event_to_dict(event))

    assert set(schema["required"]) == set(schema["properties"]) - optional - {"schema_minor"}
    assert set(schema["required"]) <= written <= set(schema["properties"])


def test_an_event_from_before_client_ids_decodes_as_unowned_and_unkeyed() -> None:
    old = event_to_dict(place_command())
    assert "client_id" not in old and "keyed" not in old
    decoded = event_from_dict(old)
    assert decoded.client_id == "" and decoded.keyed is False  # type: ignore[union-attr]


MUTATIONS = [
    pytest.param(PAYMENT_COMPLETED, _setting(1, "extra"), True, id="unknown-field"),
    pytest.param(PAYMENT_FAILED, _setting(1, "reason", "extra"), True, id="reason-extra-field"),
    pytest.param(ORDER_CREATED, _setting(1, "items", 0, "extra"), True, id="item-extra-field"),
    pytest.param(PAYMENT_COMPLETED, _setting(3, "schema_minor"), True, id="newer-minor"),
    pytest.param(PAYMENT_COMPLETED, _without("charge_id"), False, id="missing-field"),
    pytest.param(PAYMENT_COMPLETED, _setting(44.98, "amount"), False, id="float-amount"),
    pytest.param(PAYMENT_COMPLETED, _setting(4498.0, "amount"), False, id="integral-float-amount"),
    pytest.param(PAYMENT_COMPLETED, _setting(True, "amount"), False, id="bool-amount"),
    pytest.param(PAYMENT_COMPLETED, _setting(2, "schema_version"), False, id="schema-version-2"),
    pytest.param(PAYMENT_COMPLETED, _setting("1", "schema_version"), False, id="version-string"),
    pytest.param(PAYMENT_COMPLETED, _setting("", "event_id"), False, id="empty-event-id"),
    pytest.param(PAYMENT_FAILED, _setting("", "charge_id"), False, id="empty-charge-id"),
    pytest.param(PAYMENT_FAILED, _without("reason", "retryable"), False, id="reason-incomplete"),
    pytest.param(ORDER_CREATED, _setting({}, "payment"), True, id="tokenless-nudge"),
    pytest.param(ORDER_CREATED, _setting("", "payment", "token"), False, id="empty-token"),
    pytest.param(ORDER_CREATED, _setting([3], "items"), False, id="item-not-object"),
]


@pytest.mark.parametrize(("event", "mutate", "accepted"), MUTATIONS)
def test_schema_says_what_the_decoder_accepts(
    event: Event, mutate: Callable[[dict[str, Any]], None], accepted: bool
) -> None:
    data = copy.deepcopy(event_to_dict(event))
    mutate(data)

    try:
        event_from_dict(data)
        decoded = True
    except EventDecodeError:
        decoded = False
    try:
        validate_event_dict(data)
        valid = True
    except ValidationError:
        valid = False

    assert (decoded, valid) == (accepted, accepted)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([], id="array"),
        pytest.param({"event_type": "payment.refunded"}, id="unknown-type"),
        pytest.param({"amount": 1}, id="no-type"),
    ],
)
def test_validate_event_dict_refuses_what_names_no_schema(data: Any) -> None:
    with pytest.raises(ValidationError):
        validate_event_dict(data)


def test_rfc3339_output_matches_the_schema_timestamp() -> None:
    event = PaymentCompleted("ord-1", 1, "JPY", "ch_1", rfc3339(1714564800.0))

    validate_event_dict(event_to_dict(event))
