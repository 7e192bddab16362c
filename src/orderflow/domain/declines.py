"""Why a payment or a refund failed: the gateway's decline codes and our fixed words for them."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DECLINE_MESSAGES", "Decline", "decline_for"]


@dataclass(frozen=True)
class Decline:
    """Why a payment or refund failed; ``retryable``: whether the same request may succeed later."""

    code: str
    message: str
    retryable: bool


# Decline codes of the gateway (Stripe's names) and what each means for the customer.
DECLINE_MESSAGES: dict[str, Decline] = {
    "card_declined": Decline("card_declined", "The card was declined.", False),
    "insufficient_funds": Decline("insufficient_funds", "The card has insufficient funds.", True),
    "expired_card": Decline("expired_card", "The card has expired.", False),
    "invalid_token": Decline("invalid_token", "The payment token is not valid.", False),
    # The gateway refused the request itself (a 4xx); the detail is in the worker's log.
    "gateway_rejected": Decline("gateway_rejected", "The payment could not be processed.", False),
    # Refunds (Stripe's codes): more than is left of the charge, or nothing left at all.
    "amount_too_large": Decline(
        "amount_too_large", "The refund exceeds what is left of the charge.", False
    ),
    "charge_not_found": Decline(
        "charge_not_found", "There is no completed charge to refund.", False
    ),
    "charge_already_refunded": Decline(
        "charge_already_refunded", "The charge was already refunded in full.", False
    ),
}


# A gateway's code is passed on only when it is a plain identifier (it is shown to clients).
_PLAIN_CODE = re.compile(r"[a-z0-9_]{1,64}")


def decline_for(code: str, message: str | None = None) -> Decline:
    """Our decline for a gateway's code: the text is always ours, fixed per code.

    ``message`` (the gateway's own words) is not used: decline messages are public (events,
    ``GET /orders``) and a gateway's text may carry anything, its URL or our request included.
    """
    known = DECLINE_MESSAGES.get(code)
    if known is not None:
        return known
    if not _PLAIN_CODE.fullmatch(code):
        return DECLINE_MESSAGES["card_declined"]
    return Decline(code, "The payment was declined.", False)
