"""``/openapi.json``: a valid OpenAPI 3.1 document whose request schema is the validator's own."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from orderflow.domain.validation import MAX_ITEMS, OrderRequest, validate_order_request
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
