"""Validation of an order request: every problem at once, each with its field path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from orderflow.domain.money import MAX_AMOUNT, is_known_currency

__all__ = [
    "MAX_ITEMS",
    "MAX_QUANTITY",
    "LineItem",
    "OrderRequest",
    "Problem",
    "validate_order_request",
]

MAX_ITEMS = 100
MAX_QUANTITY = 10_000
MAX_UNIT_AMOUNT = 10**12
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")
_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: where (``items[0].quantity``), a code, and a message."""

    field: str
    code: str
    message: str


@dataclass(frozen=True)
class LineItem:
    """One line of an order; amounts in the currency's minor unit."""

    sku: str
    quantity: int
    unit_amount: int


@dataclass(frozen=True)
class OrderRequest:
    """A validated request to place an order. ``amount`` is computed here, never sent."""

    customer_id: str
    currency: str
    items: tuple[LineItem, ...]
    payment_token: str

    @property
    def amount(self) -> int:
        return sum(item.quantity * item.unit_amount for item in self.items)


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python; `true` is not a quantity.
    return isinstance(value, int) and not isinstance(value, bool)


def _string(
    body: dict[str, Any], key: str, path: str, pattern: re.Pattern[str], problems: list[Problem]
) -> str:
    if key not in body:
        problems.append(Problem(path, "missing", "is required"))
        return ""
    value = body[key]
    if not isinstance(value, str):
        problems.append(Problem(path, "type", "must be a string"))
        return ""
    # fullmatch, not match: with match, `$` also matches before a trailing newline ("c1\n").
    if not pattern.fullmatch(value):
        problems.append(Problem(path, "format", f"must match {pattern.pattern}"))
    return value


def _amount(item: dict[str, Any], key: str, path: str, limit: int, problems: list[Problem]) -> int:
    if key not in item:
        problems.append(Problem(path, "missing", "is required"))
        return 0
    value = item[key]
    if not _is_int(value):
        problems.append(Problem(path, "type", "must be an integer (minor units, no decimals)"))
        return 0
    if value <= 0:
        problems.append(Problem(path, "range", "must be positive"))
    elif value > limit:
        problems.append(Problem(path, "range", f"must be at most {limit}"))
    return int(value)


def _unknown(
    body: dict[str, Any], known: tuple[str, ...], prefix: str, problems: list[Problem]
) -> None:
    """Each field not in ``known`` is refused by its path (``items[0].colour``)."""
    for key in sorted(set(body) - set(known)):
        problems.append(Problem(f"{prefix}{key}", "unknown_field", "is not a known field"))


def _items(body: dict[str, Any], problems: list[Problem]) -> tuple[LineItem, ...]:
    if "items" not in body:
        problems.append(Problem("items", "missing", "is required"))
        return ()
    raw = body["items"]
    if not isinstance(raw, list):
        problems.append(Problem("items", "type", "must be an array"))
        return ()
    if not raw:
        problems.append(Problem("items", "empty", "must hold at least one item"))
        return ()
    if len(raw) > MAX_ITEMS:
        problems.append(Problem("items", "too_many", f"must hold at most {MAX_ITEMS} items"))
        return ()
    items = []
    for index, item in enumerate(raw):
        path = f"items[{index}]"
        if not isinstance(item, dict):
            problems.append(Problem(path, "type", "must be an object"))
            continue
        sku = _string(item, "sku", f"{path}.sku", _ID_PATTERN, problems)
        quantity = _amount(item, "quantity", f"{path}.quantity", MAX_QUANTITY, problems)
        unit = _amount(item, "unit_amount", f"{path}.unit_amount", MAX_UNIT_AMOUNT, problems)
        _unknown(item, ("sku", "quantity", "unit_amount"), f"{path}.", problems)
        items.append(LineItem(sku, quantity, unit))
    return tuple(items)


def validate_order_request(body: Any) -> OrderRequest | list[Problem]:
    """Return the request, or every problem found (never only the first)."""
    if not isinstance(body, dict):
        return [Problem("$", "type", "the body must be a JSON object")]
    problems: list[Problem] = []
    customer_id = _string(body, "customer_id", "customer_id", _ID_PATTERN, problems)
    currency = body.get("currency")
    if "currency" not in body:
        problems.append(Problem("currency", "missing", "is required"))
    elif not isinstance(currency, str):
        problems.append(Problem("currency", "type", "must be a string"))
    elif not is_known_currency(currency):
        problems.append(Problem("currency", "unknown", "must be a supported ISO 4217 code"))
    items = _items(body, problems)
    token = ""
    payment = body.get("payment")
    if "payment" not in body:
        problems.append(Problem("payment", "missing", "is required"))
    elif not isinstance(payment, dict):
        problems.append(Problem("payment", "type", "must be an object"))
    else:
        token = _string(payment, "token", "payment.token", _TOKEN_PATTERN, problems)
        _unknown(payment, ("token",), "payment.", problems)
    _unknown(body, ("customer_id", "currency", "items", "payment"), "", problems)
    if not problems:
        request = OrderRequest(customer_id, str(currency), items, token)
        if request.amount > MAX_AMOUNT:
            problems.append(Problem("items", "range", f"the total exceeds {MAX_AMOUNT}"))
        else:
            return request
    return problems
