"""A deliberately changed payment rule, loaded by ``replay --dry-run --decision-rule``."""

from __future__ import annotations

from orderflow.domain.payment import DECLINE_MESSAGES, Approved, Decline
from orderflow.tools.sandbox.rules import sandbox_decision


def visa_declined(token: str) -> Approved | Decline:
    """Today's rule, except that ``tok_visa`` is declined: a regression to be caught."""
    if token == "tok_visa":
        return DECLINE_MESSAGES["card_declined"]
    return sandbox_decision(token)
