"""Money: exact integer totals in minor units, bounded by MAX_AMOUNT."""

from __future__ import annotations

import pytest

from orderflow.domain.errors import DomainError, MoneyError
from orderflow.domain.money import (
    CURRENCY_MINOR_UNITS,
    MAX_AMOUNT,
    is_known_currency,
    order_total,
)


@pytest.mark.parametrize(
    ("lines", "total"),
    [
        pytest.param([(1, 1)], 1, id="one-minor-unit"),
        pytest.param([(3, 1999), (1, 1)], 5998, id="two-lines"),
        pytest.param([(1, 10)] * 3, 30, id="repeated-line"),
        pytest.param([(10_000, 10**11)], MAX_AMOUNT, id="exactly-max"),
        pytest.param([(1, MAX_AMOUNT - 1), (1, 1)], MAX_AMOUNT, id="max-by-two-lines"),
        # 0.1 + 0.2 != 0.3 in floats; in minor units it is 10 + 20 == 30.
        pytest.param([(1, 10), (1, 20)], 30, id="no-float-drift"),
    ],
)
def test_order_total_is_exact_integer_sum(lines: list[tuple[int, int]], total: int) -> None:
    result = order_total(lines)

    assert result == total
    assert type(result) is int


def test_order_total_accepts_a_generator() -> None:
    assert order_total((q, 250) for q in (1, 2, 3)) == 1500


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([(1, MAX_AMOUNT + 1)], id="one-line-over"),
        pytest.param([(1, MAX_AMOUNT), (1, 1)], id="sum-over-by-one"),
        pytest.param([(2, MAX_AMOUNT // 2 + 1)], id="product-over"),
    ],
)
def test_order_total_above_max_amount_raises_money_error(lines: list[tuple[int, int]]) -> None:
    with pytest.raises(MoneyError, match="exceeds the maximum"):
        order_total(lines)


@pytest.mark.parametrize(
    ("quantity", "unit_amount"),
    [(0, 100), (-1, 100), (1, 0), (1, -100), (-2, -100)],
)
def test_order_total_refuses_non_positive_quantity_or_unit_amount(
    quantity: int, unit_amount: int
) -> None:
    with pytest.raises(MoneyError, match="must be positive"):
        order_total([(1, 100), (quantity, unit_amount)])


def test_money_error_is_a_domain_error() -> None:
    assert issubclass(MoneyError, DomainError)


def test_max_amount_is_read_exactly_by_double_based_json_parsers() -> None:
    assert MAX_AMOUNT < 2**53
    assert float(MAX_AMOUNT) == MAX_AMOUNT


@pytest.mark.parametrize(("code", "digits"), [("USD", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3)])
def test_currency_minor_units(code: str, digits: int) -> None:
    assert is_known_currency(code)
    assert CURRENCY_MINOR_UNITS[code] == digits


@pytest.mark.parametrize("code", ["usd", "XXX", "", "USDD", "BTC"])
def test_unknown_currency_codes(code: str) -> None:
    assert not is_known_currency(code)
