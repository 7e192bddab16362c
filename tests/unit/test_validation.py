"""validate_order_request: every problem at once, each with its field path."""

from __future__ import annotations

from typing import Any

import pytest

from orderflow.domain.money import MAX_AMOUNT
from orderflow.domain.validation import (
    MAX_ITEMS,
    MAX_QUANTITY,
    MAX_UNIT_AMOUNT,
    LineItem,
    OrderRequest,
    Problem,
    validate_order_request,
)
from tests.unit.builders import ITEMS_TOTAL, valid_body


def problems_of(body: Any) -> list[tuple[str, str]]:
    result = validate_order_request(body)
    assert isinstance(result, list), f"expected problems, got {result!r}"
    assert all(isinstance(problem, Problem) for problem in result)
    return [(problem.field, problem.code) for problem in result]


def item(sku: str = "sku-1", quantity: Any = 1, unit_amount: Any = 100) -> dict[str, Any]:
    return {"sku": sku, "quantity": quantity, "unit_amount": unit_amount}


def test_valid_request_is_returned_with_its_computed_amount() -> None:
    result = validate_order_request(valid_body())

    assert result == OrderRequest(
        customer_id="cust-42",
        currency="USD",
        items=(LineItem("sku-1", 2, 1999), LineItem("sku-2", 1, 500)),
        payment_token="tok_visa",
    )
    assert result.amount == ITEMS_TOTAL == 4498


@pytest.mark.parametrize(
    ("currency", "items", "amount"),
    [
        pytest.param("JPY", [item(quantity=3, unit_amount=500)], 1500, id="JPY-no-minor-unit"),
        pytest.param("KWD", [item(quantity=2, unit_amount=1250)], 2500, id="KWD-three-digits"),
        pytest.param("ISK", [item(quantity=1, unit_amount=7)], 7, id="ISK"),
    ],
)
def test_currencies_with_zero_or_three_minor_digits_are_accepted_in_minor_units(
    currency: str, items: list[dict[str, Any]], amount: int
) -> None:
    result = validate_order_request(valid_body(currency=currency, items=items))

    assert isinstance(result, OrderRequest)
    assert result.currency == currency
    assert result.amount == amount


def test_empty_body_reports_every_missing_field() -> None:
    assert problems_of({}) == [
        ("customer_id", "missing"),
        ("currency", "missing"),
        ("items", "missing"),
        ("payment", "missing"),
    ]


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    body = {
        "customer_id": 42,
        "items": [item(quantity=True, unit_amount=19.99), item(quantity=0, unit_amount=-1)],
        "payment": {"token": "tok_visa"},
        "coupon": "FREE",
    }

    assert problems_of(body) == [
        ("customer_id", "type"),
        ("currency", "missing"),
        ("items[0].quantity", "type"),
        ("items[0].unit_amount", "type"),
        ("items[1].quantity", "range"),
        ("items[1].unit_amount", "range"),
        ("coupon", "unknown_field"),
    ]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"customer_id": 7}, ("customer_id", "type"), id="customer-id-int"),
        pytest.param({"customer_id": ""}, ("customer_id", "format"), id="customer-id-empty"),
        pytest.param({"customer_id": "a b"}, ("customer_id", "format"), id="customer-id-space"),
        pytest.param({"currency": 840}, ("currency", "type"), id="currency-number"),
        pytest.param({"currency": "XXX"}, ("currency", "unknown"), id="currency-unknown"),
        pytest.param({"currency": "usd"}, ("currency", "unknown"), id="currency-lower-case"),
        pytest.param({"items": {}}, ("items", "type"), id="items-object"),
        pytest.param({"items": []}, ("items", "empty"), id="items-empty"),
        pytest.param({"items": [item()] * (MAX_ITEMS + 1)}, ("items", "too_many"), id="too-many"),
        pytest.param({"items": ["sku-1"]}, ("items[0]", "type"), id="item-not-object"),
        pytest.param({"payment": "tok_visa"}, ("payment", "type"), id="payment-not-object"),
        pytest.param({"payment": {}}, ("payment.token", "missing"), id="token-missing"),
        pytest.param(
            {"payment": {"token": "4242 4242"}}, ("payment.token", "format"), id="token-card-number"
        ),
        pytest.param({"amount": 1}, ("amount", "unknown_field"), id="client-sent-amount"),
    ],
)
def test_single_problem_is_reported_with_its_field_path(
    overrides: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert problems_of(valid_body(**overrides)) == [expected]


@pytest.mark.parametrize(
    ("key", "value", "code"),
    [
        pytest.param("quantity", True, "type", id="quantity-bool"),
        pytest.param("quantity", 2.0, "type", id="quantity-float"),
        pytest.param("quantity", "2", "type", id="quantity-string"),
        pytest.param("quantity", 0, "range", id="quantity-zero"),
        pytest.param("quantity", -3, "range", id="quantity-negative"),
        pytest.param("quantity", MAX_QUANTITY + 1, "range", id="quantity-above-max"),
        pytest.param("unit_amount", False, "type", id="unit-amount-bool"),
        pytest.param("unit_amount", 19.99, "type", id="unit-amount-float"),
        pytest.param("unit_amount", "1999", "type", id="unit-amount-string"),
        pytest.param("unit_amount", 0, "range", id="unit-amount-zero"),
        pytest.param("unit_amount", -1, "range", id="unit-amount-negative"),
        pytest.param("unit_amount", MAX_UNIT_AMOUNT + 1, "range", id="unit-amount-above-max"),
        pytest.param("sku", 12, "type", id="sku-number"),
        pytest.param("sku", "", "format", id="sku-empty"),
    ],
)
def test_bad_line_item_value_is_reported_at_its_path(key: str, value: Any, code: str) -> None:
    body = valid_body(items=[{**item(), key: value}])

    assert problems_of(body) == [(f"items[0].{key}", code)]


@pytest.mark.parametrize("key", ["sku", "quantity", "unit_amount"])
def test_missing_line_item_field_is_reported_at_its_path(key: str) -> None:
    line = item()
    del line[key]

    assert problems_of(valid_body(items=[line])) == [(f"items[0].{key}", "missing")]


@pytest.mark.parametrize("field", ["customer_id", "currency", "items", "payment"])
def test_each_missing_field_is_reported(field: str) -> None:
    body = valid_body()
    del body[field]

    assert problems_of(body) == [(field, "missing")]


def test_problem_in_second_item_names_that_item() -> None:
    body = valid_body(items=[item(), item(sku="sku-2", quantity=-1)])

    assert problems_of(body) == [("items[1].quantity", "range")]


@pytest.mark.parametrize("body", [None, [], "order", 3, [valid_body()]])
def test_non_object_body_is_one_problem_at_the_root(body: Any) -> None:
    assert problems_of(body) == [("$", "type")]


def test_exactly_max_items_is_accepted() -> None:
    result = validate_order_request(valid_body(items=[item()] * MAX_ITEMS))

    assert isinstance(result, OrderRequest)
    assert len(result.items) == MAX_ITEMS


def test_total_above_max_amount_is_refused_even_when_each_line_is_in_range() -> None:
    lines = [item(quantity=MAX_QUANTITY, unit_amount=10**12)]  # 10**16 > MAX_AMOUNT

    assert MAX_QUANTITY * 10**12 > MAX_AMOUNT
    assert problems_of(valid_body(items=lines)) == [("items", "range")]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"customer_id": "cust-42\n"}, id="customer-id"),
        pytest.param({"items": [item(sku="sku-1\n")]}, id="sku"),
        pytest.param({"payment": {"token": "tok_visa\n"}}, id="token"),
    ],
)
def test_trailing_newline_does_not_pass_the_id_patterns(overrides: dict[str, Any]) -> None:
    # Regression: re.match lets `$` match before a final "\n", so "cust-42\n" was accepted.
    problems = problems_of(valid_body(**overrides))

    assert len(problems) == 1
    assert problems[0][1] == "format"


def test_unknown_fields_inside_items_and_payment_are_refused_by_their_path() -> None:
    body = valid_body(
        items=[item(), {**item(), "colour": "red", "discount": 5}],
        payment={"token": "tok_visa", "cvc": "123"},
    )
    assert problems_of(body) == [
        ("items[1].colour", "unknown_field"),
        ("items[1].discount", "unknown_field"),
        ("payment.cvc", "unknown_field"),
    ]
