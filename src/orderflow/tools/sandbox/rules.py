"""The sandbox gateway's token rules: Stripe's test tokens and what the sandbox answers to each.

They belong to the sandbox (a test rig), not to the domain: a real gateway decides on its own,
and ``replay --dry-run`` takes its answers from the recorded history instead of re-deciding.
"""

from __future__ import annotations

from orderflow.domain.payment import Approved, Decline, decline_for

__all__ = ["APPROVED_TOKEN", "DECLINED_TOKENS", "sandbox_decision"]

APPROVED_TOKEN = "tok_visa"

# Declining test tokens and their decline codes; any other token is an ``invalid_token``.
DECLINED_TOKENS = {
    "tok_chargeDeclined": "card_declined",
    "tok_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "tok_chargeDeclinedExpiredCard": "expired_card",
}


def sandbox_decision(token: str) -> Approved | Decline:
    """What the sandbox gateway does with a token: approve, or decline with a reason."""
    if token == APPROVED_TOKEN:
        return Approved(charge_id="")
    return decline_for(DECLINED_TOKENS.get(token, "invalid_token"))
