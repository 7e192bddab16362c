"""Money as integers in a currency's minor unit: no floats anywhere."""

from __future__ import annotations

from collections.abc import Iterable

from orderflow.domain.errors import MoneyError

__all__ = ["CURRENCY_MINOR_UNITS", "MAX_AMOUNT", "is_known_currency", "order_total"]

# ISO 4217 codes we accept, with their number of minor-unit digits (JPY has none, KWD three).
CURRENCY_MINOR_UNITS: dict[str, int] = {
    "AUD": 2,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "HUF": 2,
    "IDR": 2,
    "ILS": 2,
    "INR": 2,
    "ISK": 0,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "MXN": 2,
    "NOK": 2,
    "NZD": 2,
    "PLN": 2,
    "RON": 2,
    "SEK": 2,
    "SGD": 2,
    "THB": 2,
    "TRY": 2,
    "USD": 2,
    "ZAR": 2,
    "BHD": 3,
    "JOD": 3,
    "OMR": 3,
    "TND": 3,
    "CLP": 0,
    "VND": 0,
}

# The largest total we accept, in minor units: far above any real order, far below 2**63 so that
# every consumer (Java long, JSON parsers using doubles up to 2**53) reads it exactly.
MAX_AMOUNT = 10**15


def is_known_currency(code: str) -> bool:
    return code in CURRENCY_MINOR_UNITS


def order_total(lines: Iterable[tuple[int, int]]) -> int:
    """Sum of quantity x unit amount over ``(quantity, unit_amount)`` lines, exactly."""
    total = 0
    for quantity, unit_amount in lines:
        if quantity <= 0 or unit_amount <= 0:
            raise MoneyError("quantity and unit amount must be positive")
        total += quantity * unit_amount
    if total > MAX_AMOUNT:
        raise MoneyError(f"total {total} exceeds the maximum of {MAX_AMOUNT}")
    return total
