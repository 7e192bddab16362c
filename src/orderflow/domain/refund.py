"""Refunds as the payment service keeps them (PaymentDB), and what it does with each request.

A refund is one gateway operation with its own idempotency key, derived from the refund id: a
client's refund id comes from the order id and the request's ``Idempotency-Key``; a
cancellation's compensation has one fixed id per order. Timeouts make a refund UNKNOWN, and the
reconciler settles it by asking the gateway, exactly as for charges.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, replace

from orderflow.domain.backoff import Backoff
from orderflow.domain.declines import Decline

__all__ = [
    "GatewayRefund",
    "RefundAction",
    "RefundAttempt",
    "RefundDecision",
    "RefundDeclined",
    "RefundOutcome",
    "RefundStatus",
    "Refunded",
    "compensation_refund_id",
    "decide_refund",
    "refund_id_for",
    "refund_idempotency_key",
    "refund_mismatch",
]


class RefundStatus(enum.StrEnum):
    """Where one refund stands; UNKNOWN: the gateway may have refunded, ask it again.

    INCONSISTENT: the gateway holds a refund under this refund's key that is not this refund
    (another amount or charge): neither done nor failed, never sent again; a person must look.
    """

    ATTEMPTING = "ATTEMPTING"
    UNKNOWN = "UNKNOWN"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    INCONSISTENT = "INCONSISTENT"

    @property
    def is_settled(self) -> bool:
        return self in (RefundStatus.COMPLETED, RefundStatus.FAILED)


@dataclass(frozen=True)
class Refunded:
    """The gateway gave the money back."""

    gateway_refund_id: str


@dataclass(frozen=True)
class RefundDeclined:
    """The gateway refused the refund; nothing was given back."""

    decline: Decline


RefundOutcome = Refunded | RefundDeclined


@dataclass(frozen=True)
class GatewayRefund:
    """A refund the gateway recorded under a key: its outcome and what it gave back.

    ``None`` for a field the gateway did not report (which no check can then confirm).
    """

    outcome: RefundOutcome
    amount: int | None
    charge_id: str | None


def refund_id_for(order_id: str, idempotency_key: str) -> str:
    """A client refund's id: the same for every retry of one request (its Idempotency-Key)."""
    digest = hashlib.sha256(f"{order_id}\x00{idempotency_key}".encode()).hexdigest()
    return f"rf_{digest[:32]}"


def compensation_refund_id(order_id: str) -> str:
    """The one refund that gives back a charge which raced its order's cancellation."""
    return f"cancel_{hashlib.sha256(order_id.encode()).hexdigest()[:32]}"


def refund_idempotency_key(refund_id: str) -> str:
    """The gateway idempotency key of a refund: stable across retries, restarts, replays."""
    return f"orderflow-refund-{refund_id}"


@dataclass(frozen=True)
class RefundAttempt:
    """One refund in PaymentDB: its amount, the attempt and, once known, its outcome."""

    refund_id: str
    idempotency_key: str
    amount: int
    status: RefundStatus
    reason: str = ""
    compensation: bool = False
    attempts: int = 0
    gateway_refund_id: str | None = None
    decline: Decline | None = None
    updated_at: float = 0.0
    next_attempt_at: float = 0.0  # for UNKNOWN: when the reconciler asks the gateway again

    @classmethod
    def first(
        cls, refund_id: str, amount: int, reason: str = "", *, compensation: bool = False
    ) -> RefundAttempt:
        return cls(
            refund_id,
            refund_idempotency_key(refund_id),
            amount,
            RefundStatus.ATTEMPTING,
            reason,
            compensation,
        )

    def attempt(self, now: float) -> RefundAttempt:
        return replace(
            self, status=RefundStatus.ATTEMPTING, attempts=self.attempts + 1, updated_at=now
        )

    def settle(self, outcome: RefundOutcome, now: float) -> RefundAttempt:
        if isinstance(outcome, Refunded):
            return replace(
                self,
                status=RefundStatus.COMPLETED,
                gateway_refund_id=outcome.gateway_refund_id,
                updated_at=now,
            )
        return replace(self, status=RefundStatus.FAILED, decline=outcome.decline, updated_at=now)

    def unknown(self, now: float, base: float = 1.0, cap: float = 60.0) -> RefundAttempt:
        """Ask the gateway again later, doubling with each attempt or failed lookup, capped."""
        backoff = Backoff(base=base, cap=cap)
        delay = backoff.delay(self.attempts - 1)
        if self.status is RefundStatus.UNKNOWN:
            delay = min(max(delay, 2 * (self.next_attempt_at - self.updated_at)), cap)
        return replace(
            self, status=RefundStatus.UNKNOWN, updated_at=now, next_attempt_at=now + delay
        )


def refund_mismatch(
    attempt: RefundAttempt, charge_id: str | None, found: GatewayRefund
) -> str | None:
    """Why the gateway's refund under ``attempt``'s key is not ``attempt``, or None."""
    problems = []
    if found.amount != attempt.amount:
        problems.append(f"amount {found.amount!r}, expected {attempt.amount}")
    if found.charge_id != charge_id:
        problems.append(f"charge {found.charge_id!r}, expected {charge_id!r}")
    if not problems:
        return None
    return f"gateway refund under {attempt.idempotency_key}: " + ", ".join(problems)


class RefundAction(enum.Enum):
    """What the payment service does with a refund request (or a cancellation's compensation)."""

    REFUND = "refund"  # first sight: ask the gateway to refund
    LOOK_UP = "look_up"  # an attempt's answer was never recorded: ask the gateway what it did
    REPUBLISH = "republish"  # settled already: publish its outcome again (it may have been lost)
    WAIT = "wait"  # UNKNOWN: the reconciler owns it
    REFUSE = "refuse"  # not possible (``reason``): published as ``refund.failed``


@dataclass(frozen=True)
class RefundDecision:
    action: RefundAction
    reason: str = ""
    decline_code: str = ""


def decide_refund(
    captured: int | None, existing: RefundAttempt | None, committed: int, amount: int
) -> RefundDecision:
    """Decide from PaymentDB alone: ``captured`` (None: no completed charge), the refund's own
    earlier state, and ``committed``: what other refunds gave or may give back."""
    if existing is not None:
        if existing.amount != amount:
            return RefundDecision(
                RefundAction.REFUSE,
                f"refund {existing.refund_id} was for {existing.amount}, not {amount}",
                "amount_too_large",
            )
        if existing.status.is_settled:
            return RefundDecision(RefundAction.REPUBLISH)
        if existing.status in (RefundStatus.UNKNOWN, RefundStatus.INCONSISTENT):
            return RefundDecision(RefundAction.WAIT)
        return RefundDecision(RefundAction.LOOK_UP if existing.attempts else RefundAction.REFUND)
    if captured is None:
        return RefundDecision(RefundAction.REFUSE, "no completed charge", "charge_not_found")
    if committed >= captured:
        return RefundDecision(
            RefundAction.REFUSE, "the charge is refunded in full", "charge_already_refunded"
        )
    if amount <= 0 or committed + amount > captured:
        return RefundDecision(
            RefundAction.REFUSE,
            f"{amount} exceeds the {captured - committed} left of the charge",
            "amount_too_large",
        )
    return RefundDecision(RefundAction.REFUND)
