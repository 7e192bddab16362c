"""The domain's exception tree."""

from __future__ import annotations

__all__ = [
    "ChargeMismatchError",
    "DomainError",
    "EventDecodeError",
    "MoneyError",
    "PaymentTokenGoneError",
    "RefundMismatchError",
]


class DomainError(Exception):
    """Base of every domain error."""


class MoneyError(DomainError):
    """An amount is out of range or mixes currencies."""


class EventDecodeError(DomainError):
    """An event's payload does not match its schema; the message says which field and why."""


class ChargeMismatchError(DomainError):
    """The gateway's charge under an order's key is for another amount, currency or order."""


class RefundMismatchError(DomainError):
    """The gateway's refund under a refund's key gives back another amount or another charge."""


class PaymentTokenGoneError(DomainError):
    """A charge is needed but no token is left for it (a tokenless stall nudge, no PaymentDB
    record): never charged; its message is the dead letter's whole reason."""

    REASON = "payment token no longer available: the order's command is gone"

    def __init__(self) -> None:
        super().__init__(self.REASON)
