"""The sandbox gateway's token rules (Stripe's test tokens), which live with the sandbox."""

from __future__ import annotations

import pytest

from orderflow.domain.payment import DECLINE_MESSAGES, Approved, Decline
from orderflow.tools.sandbox.rules import sandbox_decision


@pytest.mark.parametrize(
    ("token", "code", "retryable"),
    [
        ("tok_chargeDeclined", "card_declined", False),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds", True),
        ("tok_chargeDeclinedExpiredCard", "expired_card", False),
        ("tok_mastercard", "invalid_token", False),
        ("", "invalid_token", False),
    ],
)
def test_sandbox_declines_tokens_with_their_reason(token: str, code: str, retryable: bool) -> None:
    decision = sandbox_decision(token)

    assert isinstance(decision, Decline)
    assert decision == DECLINE_MESSAGES[code]
    assert decision.retryable is retryable


def test_sandbox_approves_tok_visa() -> None:
    assert isinstance(sandbox_decision("tok_visa"), Approved)
