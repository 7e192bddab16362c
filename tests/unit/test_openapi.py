"""``/openapi.json``: a valid OpenAPI 3.1 document whose request schema is the validator's own."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from orderflow.domain.validation import (
    MAX_ITEMS,
    OrderRequest,
    validate_endpoint_request,
    validate_order_request,
    validate_resend_request,
)
from orderflow.domain.webhooks import (
    Attempt,
    Delivery,
    DeliveryState,
    Endpoint,
    delivery_to_public,
    endpoint_secret,
    endpoint_to_public,
    event_body,
    sign,
    verify,
)
from orderflow.web.openapi import openapi_document
from tests.unit.builders import valid_body

DOCUMENT = openapi_document()


def schema_validator(name: str) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        "urn:orderflow:openapi", Resource.from_contents(DOCUMENT, DRAFT202012)
    )
    ref = {"$ref": f"urn:orderflow:openapi#/components/schemas/{name}"}
    return Draft202012Validator(ref, registry=registry)


def test_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    validate_openapi(DOCUMENT)  # raises on any violation of the OpenAPI 3.1 meta-schema


def test_document_describes_every_endpoint_status_and_header() -> None:
    paths = DOCUMENT["paths"]
    assert set(paths) == {
        "/orders",
        "/orders/{order_id}",
        "/orders/{order_id}/cancel",
        "/orders/{order_id}/refunds",
        "/orders/{order_id}/events",
        "/webhooks",
        "/webhooks/{endpoint_id}",
        "/orders/{order_id}/webhooks",
        "/orders/{order_id}/webhooks/resend",
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
    }
    post = paths["/orders"]["post"]
    assert set(post["responses"]) == {"201", "202", "400", "401", "408", "413", "415", "422", "503"}
    assert set(post["responses"]["201"]["headers"]) == {"Location", "Idempotent-Replayed"}
    assert set(post["responses"]["503"]["headers"]) == {"Location", "Retry-After"}
    assert post["parameters"] == [{"$ref": "#/components/parameters/Idempotency-Key"}]
    get = paths["/orders/{order_id}"]["get"]
    assert set(get["responses"]) == {"200", "202", "400", "401", "404", "429", "503"}
    assert [p["name"] for p in get["parameters"]] == ["order_id", "wait"]
    cancel = paths["/orders/{order_id}/cancel"]["post"]
    changes = {"202", "401", "404", "408", "409", "413", "415", "503"}
    assert set(cancel["responses"]) == {"200", "400", *changes}
    refund = paths["/orders/{order_id}/refunds"]["post"]
    assert set(refund["responses"]) == {"200", "201", "400", "422", *changes}
    assert refund["parameters"][1] == {"$ref": "#/components/parameters/Refund-Idempotency-Key"}
    assert DOCUMENT["components"]["parameters"]["Refund-Idempotency-Key"]["required"] is True
    assert DOCUMENT["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert DOCUMENT["security"] == [{"bearerAuth": []}]
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):
        assert paths[path]["get"]["security"] == [], path


def test_document_describes_every_webhook_operation_status_and_header() -> None:
    paths = DOCUMENT["paths"]
    body = {"400", "401", "408", "413", "415", "503"}
    register = paths["/webhooks"]["post"]
    assert set(register["responses"]) == {"201", "403", "409", *body}
    assert set(register["responses"]["201"]["headers"]) == {"Location"}
    assert register["requestBody"]["required"] is True
    listed = paths["/webhooks"]["get"]
    assert set(listed["responses"]) == {"200", "401", "503"}
    delete = paths["/webhooks/{endpoint_id}"]["delete"]
    assert set(delete["responses"]) == {"204", "401", "404", "503"}
    assert [p["name"] for p in delete["parameters"]] == ["endpoint_id"]
    deliveries = paths["/orders/{order_id}/webhooks"]["get"]
    assert set(deliveries["responses"]) == {"200", "404", *body}
    resend = paths["/orders/{order_id}/webhooks/resend"]["post"]
    assert set(resend["responses"]) == {"202", "404", *body}
    assert set(resend["responses"]["202"]["headers"]) == {"Location"}
    assert resend["requestBody"]["required"] is False
    operations = [register, listed, delete, deliveries, resend]
    for operation in operations:
        assert "security" not in operation  # the API key, like /orders
        assert set(operation["responses"]["503"]["headers"]) == {"Retry-After"}
    assert len({operation["operationId"] for operation in operations}) == len(operations)


def test_document_describes_the_webhook_post_a_receiver_gets() -> None:
    (receive,) = DOCUMENT["webhooks"].values()
    post = receive["post"]
    assert {p["name"] for p in post["parameters"] if p["in"] == "header"} == {
        "Orderflow-Signature",
        "Orderflow-Event-Id",
        "Orderflow-Delivery-Attempt",
    }
    for word in ("HMAC-SHA256", "sequence", "De-duplicate", "Orderflow-Event-Id"):
        assert word in post["description"], word
    secret = endpoint_secret(b"k" * 32, "we_" + "0" * 24)
    body = event_body("evt_" + "a" * 24, "order.paid", 2, "2026-12-01T05:35:13.072Z", _order())
    schema_validator("WebhookEvent").validate(json.loads(body))
    header = sign(secret, 1796103313, body.encode())
    signature = next(p for p in post["parameters"] if p["name"] == "Orderflow-Signature")
    assert Draft202012Validator(signature["schema"]).is_valid(header)
    assert verify(secret, header, body.encode(), now=1796103313)


def _order() -> dict[str, Any]:
    return {
        "order_id": "ord_" + "b" * 32,
        "status": "PAID",
        "customer_id": "c-1",
        "amount": 3998,
        "currency": "EUR",
        "items": [{"sku": "SKU-1", "quantity": 2, "unit_amount": 1999}],
        "created_at": "2026-12-01T05:35:12.897Z",
        "updated_at": "2026-12-01T05:35:13.072Z",
        "payment": {"status": "COMPLETED", "charge_id": "ch_10d3aec2a14142f59177e6ca08a3e31c"},
        "captured": 3998,
        "refunded": 0,
        "refunds": [],
        "cancellation": None,
    }


def test_webhook_answers_conform_to_their_published_schemas() -> None:
    endpoint = Endpoint(
        "we_" + "1" * 24, "client-1", "https://example.com/h", "2026-12-01T05:35:10.875Z"
    )
    public = endpoint_to_public(endpoint)
    schema_validator("WebhookEndpoint").validate(public)
    schema_validator("WebhookEndpoints").validate({"endpoints": [public]})
    created = {**public, "secret": endpoint_secret(b"k" * 32, endpoint.endpoint_id)}
    schema_validator("WebhookEndpointCreated").validate(created)
    body = event_body("evt_" + "a" * 24, "order.paid", 2, "2026-12-01T05:35:13.072Z", _order())
    failed = Attempt(1, 1796103313.0, 0, "timeout", 10_000)
    answered = Attempt(2, 1796103323.0, 200, "", 3)
    deliveries = [
        Delivery("evt_" + "a" * 24, endpoint.endpoint_id, endpoint.url, body, 1796103313.0),
        Delivery(
            "evt_" + "a" * 24,
            "we_" + "2" * 24,
            endpoint.url,
            body,
            1796103313.0,
            state=DeliveryState.DELIVERED,
            attempt_count=2,
            attempts=(failed, answered),
        ),
    ]
    listed = {
        "order_id": "ord_" + "b" * 32,
        "deliveries": [delivery_to_public(d) for d in deliveries],
    }
    schema_validator("WebhookDeliveries").validate(listed)
    resending = {"order_id": "ord_" + "b" * 32, "resending": 2, "event_id": None}
    schema_validator("WebhookResending").validate(resending)
    schema_validator("EndpointNotFound").validate({"error": "not_found", "endpoint_id": "x"})


def _item(**overrides: Any) -> dict[str, Any]:
    return {"sku": "sku-1", "quantity": 1, "unit_amount": 100, **overrides}


# Bodies the validator refuses; the published schema must refuse each of them as well.
INVALID = [
    [],
    "order",
    {},
    valid_body(customer_id=42),
    valid_body(customer_id=" space"),
    valid_body(customer_id="c1\n"),
    valid_body(currency="XXX"),
    valid_body(currency=978),
    valid_body(items=[]),
    valid_body(items={"sku": "a"}),
    valid_body(items=[_item()] * (MAX_ITEMS + 1)),
    valid_body(items=[_item(quantity=0)]),
    valid_body(items=[_item(quantity=True)]),
    valid_body(items=[_item(unit_amount=19.99)]),
    valid_body(items=[_item(unit_amount=10**13)]),
    valid_body(items=["sku-1"]),
    valid_body(items=[{"quantity": 1, "unit_amount": 1}]),
    valid_body(payment="tok_visa"),
    valid_body(payment={"token": "tok visa"}),
    valid_body(payment={}),
    valid_body(coupon="FREE"),
]

VALID = [
    valid_body(),
    valid_body(currency="JPY", items=[_item(quantity=10_000, unit_amount=10**12 // 10**4)]),
    valid_body(items=[_item()] * MAX_ITEMS),
]


@pytest.mark.parametrize("body", INVALID, ids=range(len(INVALID)))
def test_published_schema_refuses_what_the_validator_refuses(body: Any) -> None:
    assert isinstance(validate_order_request(body), list)
    assert not schema_validator("OrderRequest").is_valid(body)


@pytest.mark.parametrize("body", VALID, ids=range(len(VALID)))
def test_published_schema_accepts_what_the_validator_accepts(body: Any) -> None:
    assert isinstance(validate_order_request(body), OrderRequest)
    schema_validator("OrderRequest").validate(body)


# Webhook request bodies: (body, accepted by the validator?); the published schema agrees (the
# URL's refusal of private addresses is the server's alone: not a shape).
ENDPOINT_BODIES = [
    ({"url": "https://example.com/hooks"}, True),
    ({"url": "http://example.com:8080/a?b=c"}, True),
    ({}, False),
    ({"url": "ftp://example.com/"}, False),
    ({"url": " https://example.com/"}, False),
    ({"url": "https://example.com/ x"}, False),
    ({"url": "https://example.com/\n"}, False),
    ({"url": "https://" + "a" * 2041}, False),
    ({"url": "https://example.com/", "secret": "mine"}, False),
    ({"url": 42}, False),
    (["https://example.com/"], False),
]
RESEND_BODIES = [
    ({}, True),
    ({"event_id": "evt_" + "0" * 24}, True),
    ({"event_id": "evt_" + "0" * 23}, False),
    ({"event_id": "xevt_" + "0" * 24}, False),
    ({"event_id": "evt_" + "0" * 24 + "\n"}, False),
    ({"event_id": None}, False),
    ({"endpoint_id": "we_" + "0" * 24}, False),
    ("evt_" + "0" * 24, False),
]


@pytest.mark.parametrize(("body", "valid"), ENDPOINT_BODIES, ids=range(len(ENDPOINT_BODIES)))
def test_published_endpoint_schema_agrees_with_the_validator(body: Any, valid: bool) -> None:
    assert isinstance(validate_endpoint_request(body, allow_private=True), str) is valid
    assert schema_validator("WebhookEndpointRequest").is_valid(body) is valid


@pytest.mark.parametrize(("body", "valid"), RESEND_BODIES, ids=range(len(RESEND_BODIES)))
def test_published_resend_schema_agrees_with_the_validator(body: Any, valid: bool) -> None:
    assert (not isinstance(validate_resend_request(body), list)) is valid
    assert schema_validator("WebhookResendRequest").is_valid(body) is valid


def test_webhook_request_examples_in_the_document_are_valid() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    (endpoint,) = schemas["WebhookEndpointRequest"]["examples"]
    assert isinstance(validate_endpoint_request(endpoint, allow_private=False), str)
    (again,) = schemas["WebhookResendRequest"]["examples"]
    assert validate_resend_request(again) == again["event_id"]


def test_request_example_in_the_document_is_a_valid_order() -> None:
    (example,) = DOCUMENT["components"]["schemas"]["OrderRequest"]["examples"]
    assert isinstance(validate_order_request(example), OrderRequest)


def test_paths_a_deployment_closes_need_the_key_and_may_answer_401() -> None:
    document = openapi_document(open_paths={"/health"})
    validate_openapi(document)

    assert document["paths"]["/health"]["get"]["security"] == []
    metrics = document["paths"]["/metrics"]["get"]
    assert "security" not in metrics  # the document's default: bearerAuth
    assert "401" in metrics["responses"]


def test_a_document_that_closes_a_path_leaves_the_next_documents_unchanged() -> None:
    openapi_document(open_paths=set())  # every path closed: each may answer 401

    assert openapi_document() == DOCUMENT
    assert "401" not in openapi_document()["paths"]["/metrics"]["get"]["responses"]
