"""The ``PaymentGateway`` interface and its error tree.

A decline is an *answer* (``Declined``), not an error. Errors are transport failures, split by
what the caller may do: a ``TransientGatewayError`` may be retried with the same idempotency key
(timeout, connection, 5xx, 429); a ``PermanentGatewayError`` may not (any other 4xx).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from orderflow.domain.payment import ChargeOutcome, GatewayCharge
from orderflow.domain.refund import GatewayRefund, RefundOutcome

__all__ = [
    "ChargeRequest",
    "CircuitOpenError",
    "GatewayError",
    "PaymentGateway",
    "PermanentGatewayError",
    "RefundRequest",
    "TransientGatewayError",
]


@dataclass(frozen=True)
class ChargeRequest:
    """One charge; ``idempotency_key`` is derived from the order id and never changes."""

    idempotency_key: str
    order_id: str
    amount: int  # minor units
    currency: str
    payment_token: str


@dataclass(frozen=True)
class RefundRequest:
    """One refund of a charge; ``idempotency_key`` is derived from the refund id."""

    idempotency_key: str
    refund_id: str
    order_id: str
    charge_id: str
    amount: int  # minor units of the charge's currency


class GatewayError(Exception):
    """The gateway gave no usable answer."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientGatewayError(GatewayError):
    """Timeout, connection failure, 5xx or 429: the charge may or may not have happened."""


class CircuitOpenError(TransientGatewayError):
    """The circuit breaker is open: the gateway was not called at all."""


class PermanentGatewayError(GatewayError):
    """A 4xx other than 409/429: retrying the same request cannot succeed."""


class PaymentGateway(Protocol):
    """What the payment service needs of a gateway."""

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        """Charge once per idempotency key; the same key returns the first outcome."""
        ...

    async def find_charge(self, idempotency_key: str) -> GatewayCharge | None:
        """The charge recorded for this key (outcome, amount, currency, order), or None."""
        ...

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        """Refund once per idempotency key; the same key returns the first outcome."""
        ...

    async def find_refund(self, idempotency_key: str) -> GatewayRefund | None:
        """The refund recorded for this key (outcome, amount, charge), or None."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
