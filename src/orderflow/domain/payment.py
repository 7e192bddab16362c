"""Payments: the gateway's possible answers, the decline taxonomy, and the payment decision."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from orderflow.domain.backoff import Backoff
from orderflow.domain.declines import DECLINE_MESSAGES, Decline, decline_for
from orderflow.domain.refund import RefundAttempt, RefundStatus

__all__ = [
    "DECLINE_MESSAGES",
    "Approved",
    "CancelAction",
    "ChargeOutcome",
    "Decline",
    "Declined",
    "GatewayCharge",
    "PaymentAction",
    "PaymentRecord",
    "PaymentStatus",
    "charge_mismatch",
    "decide_cancel",
    "decide_payment",
    "decline_for",
    "idempotency_key_for",
    "next_reconcile_delay",
]


class PaymentStatus(enum.StrEnum):
    """Where a payment attempt stands. UNKNOWN: the gateway may have charged; ask it again.

    INCONSISTENT: the gateway holds a charge under this payment's key that is not this payment's
    (another amount, currency or order). Neither paid nor failed: a person must look.
    VOIDED: the order was cancelled and no charge reached the gateway: it never will.
    """

    ATTEMPTING = "ATTEMPTING"
    UNKNOWN = "UNKNOWN"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    INCONSISTENT = "INCONSISTENT"
    VOIDED = "VOIDED"

    @property
    def is_settled(self) -> bool:
        return self in (PaymentStatus.COMPLETED, PaymentStatus.FAILED)


@dataclass(frozen=True)
class Approved:
    """The gateway charged the card."""

    charge_id: str


@dataclass(frozen=True)
class Declined:
    """The gateway refused the charge; nothing was taken."""

    decline: Decline
    charge_id: str | None = None


ChargeOutcome = Approved | Declined


@dataclass(frozen=True)
class GatewayCharge:
    """A charge the gateway recorded under a key: its outcome and what it was for.

    ``None`` for a field the gateway did not report (which no check can then confirm).
    """

    outcome: ChargeOutcome
    amount: int | None
    currency: str | None
    order_id: str | None

    @property
    def charge_id(self) -> str | None:
        return self.outcome.charge_id


def idempotency_key_for(order_id: str) -> str:
    """The gateway idempotency key: one per order, stable across retries, restarts, replays."""
    return f"orderflow-charge-{order_id}"


@dataclass(frozen=True)
class PaymentRecord:
    """PaymentDB's entry for one order: the attempt and, once known, its outcome."""

    order_id: str
    idempotency_key: str
    amount: int
    currency: str
    status: PaymentStatus
    attempts: int = 0
    charge_id: str | None = None
    decline: Decline | None = None
    updated_at: float = 0.0  # epoch seconds
    next_attempt_at: float = 0.0  # for UNKNOWN: when the reconciler asks the gateway again
    # Kept while a charge may still be needed (ATTEMPTING, UNKNOWN: the reconciler repeats the
    # same request); dropped once settled or INCONSISTENT (never charged again), so the latest
    # value per key in the compacted changelog, what is kept forever, holds no token.
    payment_token: str = ""
    problem: str | None = None  # for INCONSISTENT: what the gateway's charge got wrong
    # The order was cancelled: never charge it (again); a charge found taken is refunded whole.
    cancelled: bool = False
    # For a cancelled payment whose charge request was sent: before this time, a lookup that
    # finds no charge does not VOID it (the request may still land); after it, it does.
    voidable_at: float = 0.0
    refunds: tuple[RefundAttempt, ...] = ()  # this payment's refunds (orderflow.domain.refund)

    @classmethod
    def first_attempt(
        cls, order_id: str, amount: int, currency: str, payment_token: str
    ) -> PaymentRecord:
        """The record before an order's first charge: ATTEMPTING, no attempt made yet, and the
        order's one idempotency key, which every later attempt reuses."""
        return cls(
            order_id,
            idempotency_key_for(order_id),
            amount,
            currency,
            PaymentStatus.ATTEMPTING,
            payment_token=payment_token,
        )

    def attempt(self, now: float) -> PaymentRecord:
        return replace(
            self, status=PaymentStatus.ATTEMPTING, attempts=self.attempts + 1, updated_at=now
        )

    def settle(self, outcome: ChargeOutcome, now: float) -> PaymentRecord:
        if isinstance(outcome, Approved):
            return replace(
                self,
                status=PaymentStatus.COMPLETED,
                charge_id=outcome.charge_id,
                decline=None,
                updated_at=now,
                payment_token="",
            )
        return replace(
            self,
            status=PaymentStatus.FAILED,
            charge_id=outcome.charge_id,
            decline=outcome.decline,
            updated_at=now,
            payment_token="",
        )

    def inconsistent(self, problem: str, now: float) -> PaymentRecord:
        return replace(
            self,
            status=PaymentStatus.INCONSISTENT,
            problem=problem,
            updated_at=now,
            payment_token="",
        )

    def void(self, now: float) -> PaymentRecord:
        """Cancelled with no charge at the gateway: never charged, whatever arrives later."""
        return replace(
            self, status=PaymentStatus.VOIDED, cancelled=True, updated_at=now, payment_token=""
        )

    def cancel(self, now: float, settle_window: float, watch: float) -> PaymentRecord:
        """The order was cancelled while a charge may have reached the gateway: never charge
        again; ask the gateway once ``settle_window`` has passed since the last attempt (the
        client's own deadline), and keep asking, less and less often, until ``watch`` has
        passed (a gateway may hold a request and charge late): only then may it be VOIDED."""
        cancelled = replace(self, cancelled=True, payment_token="", updated_at=now)
        if self.status not in (PaymentStatus.ATTEMPTING, PaymentStatus.UNKNOWN):
            return cancelled
        ask_at = max(now, self.updated_at + settle_window, self.next_attempt_at)
        return replace(
            cancelled,
            status=PaymentStatus.UNKNOWN,
            next_attempt_at=ask_at,
            voidable_at=self.updated_at + max(watch, settle_window),
        )

    def with_refund(self, refund: RefundAttempt) -> PaymentRecord:
        """This record with ``refund`` added, or in place of its earlier state."""
        kept = tuple(r for r in self.refunds if r.refund_id != refund.refund_id)
        ordered = sorted((*kept, refund), key=lambda r: r.refund_id)
        return replace(self, refunds=tuple(ordered))

    def refund(self, refund_id: str) -> RefundAttempt | None:
        return next((r for r in self.refunds if r.refund_id == refund_id), None)

    @property
    def refund_committed(self) -> int:
        """Money given back or possibly given back (every refund not FAILED)."""
        return sum(r.amount for r in self.refunds if r.status is not RefundStatus.FAILED)

    @property
    def reconcile_at(self) -> float | None:
        """When the reconciler next asks the gateway about this payment or one of its refunds
        (None: nothing unknown)."""
        times = [r.next_attempt_at for r in self.refunds if r.status is RefundStatus.UNKNOWN]
        if self.status is PaymentStatus.UNKNOWN:
            times.append(self.next_attempt_at)
        return min(times) if times else None

    def unknown(self, now: float) -> PaymentRecord:
        """Ask the gateway again later: after a charge attempt, by the number of attempts; when
        already UNKNOWN (a lookup failed: no attempt), after twice the previous delay, capped."""
        delay = next_reconcile_delay(self.attempts)
        if self.status is PaymentStatus.UNKNOWN:
            # The previous delay is in the record itself: no new field, old records decode.
            delay = min(
                max(delay, 2 * (self.next_attempt_at - self.updated_at)), next_reconcile_delay(64)
            )
        return replace(
            self, status=PaymentStatus.UNKNOWN, updated_at=now, next_attempt_at=now + delay
        )


def charge_mismatch(record: PaymentRecord, charge: GatewayCharge) -> str | None:
    """Why the gateway's charge under ``record``'s key is not ``record``'s payment, or None.

    The key is derived from the order id only, so another deployment sharing the gateway account
    (or a gateway bug) can put someone else's charge under it: settling from it would make an
    order PAID with no money for it, or FAILED on a stranger's decline.
    """
    problems = []
    if charge.order_id != record.order_id:
        problems.append(f"order {charge.order_id!r}, expected {record.order_id!r}")
    if charge.amount != record.amount:
        problems.append(f"amount {charge.amount!r}, expected {record.amount}")
    # Currency codes are case-insensitive (Stripe reports them in lower case).
    if charge.currency is None or charge.currency.upper() != record.currency.upper():
        problems.append(f"currency {charge.currency!r}, expected {record.currency!r}")
    if not problems:
        return None
    return f"gateway charge {charge.charge_id} under {record.idempotency_key}: " + ", ".join(
        problems
    )


def next_reconcile_delay(attempts: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds until an UNKNOWN payment is asked about again: doubling, capped, never zero."""
    # The first attempt waits the base; Backoff bounds the exponent (2**1024 overflows a float).
    return Backoff(base=base, cap=cap).delay(attempts - 1)


class PaymentAction(enum.Enum):
    """What the payment service does with an ``order.created`` event."""

    CHARGE = "charge"  # first sight, or an attempt whose answer we never recorded
    REPUBLISH = "republish"  # settled already: publish the result again (it may have been lost)
    WAIT = "wait"  # UNKNOWN: the reconciler owns it; INCONSISTENT: a person does
    SKIP = "skip"  # VOIDED: the order was cancelled before any charge; nothing to say


def decide_payment(record: PaymentRecord | None) -> PaymentAction:
    """Decide from PaymentDB alone; the gateway's idempotency key makes CHARGE safe to repeat.

    A cancelled payment is never charged: VOIDED skips, and one whose charge may have landed
    waits as UNKNOWN for the reconciler (``PaymentRecord.cancel``).
    """
    if record is None or (record.status is PaymentStatus.ATTEMPTING and not record.cancelled):
        return PaymentAction.CHARGE
    if record.status.is_settled:
        return PaymentAction.REPUBLISH
    if record.status is PaymentStatus.VOIDED:
        return PaymentAction.SKIP
    return PaymentAction.WAIT


class CancelAction(enum.Enum):
    """What the payment service does with an ``order.cancelled`` event."""

    VOID = "void"  # no charge was ever sent: record VOIDED, never charge
    RESOLVE = "resolve"  # a charge may have landed: ask the gateway (later), never charge again
    COMPENSATE = "compensate"  # charged: refund the whole charge
    NOTHING = "nothing"  # declined or voided (nothing taken), or INCONSISTENT (a person looks)


def decide_cancel(record: PaymentRecord | None) -> CancelAction:
    """Decide from PaymentDB alone what a cancellation asks of the payment."""
    if record is None or (record.status is PaymentStatus.ATTEMPTING and record.attempts == 0):
        return CancelAction.VOID
    if record.status in (PaymentStatus.ATTEMPTING, PaymentStatus.UNKNOWN):
        return CancelAction.RESOLVE
    if record.status is PaymentStatus.COMPLETED:
        return CancelAction.COMPENSATE
    return CancelAction.NOTHING
