"""The one-line verdict of ``trace``: is this order's story consistent, and if not, what is off.

Pure: it looks at the OrderDB entry, the PaymentDB entry, the gateway ledger's charges and how
many events and dead letters were found, and does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orderflow.domain.order import Order, OrderStatus
from orderflow.domain.payment import PaymentRecord, PaymentStatus

__all__ = ["Charge", "LedgerRefund", "Verdict", "judge"]


@dataclass(frozen=True)
class Charge:
    """One row of the gateway ledger for the order."""

    id: str
    status: str  # "succeeded" | "failed"
    amount: int
    currency: str
    failure_code: str | None = None

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Charge:
        return cls(
            str(row["id"]),
            str(row["status"]),
            int(row["amount"]),
            str(row["currency"]),
            row.get("failure_code"),
        )


@dataclass(frozen=True)
class LedgerRefund:
    """One refund row of the gateway ledger for the order."""

    id: str
    status: str  # "succeeded" | "failed"
    amount: int

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> LedgerRefund:
        return cls(str(row["id"]), str(row["status"]), int(row["amount"]))


@dataclass(frozen=True)
class Verdict:
    """``text`` for people; ``status`` for scripts: ok, unchecked, pending, stuck,
    inconsistent, dead_lettered or not_found."""

    status: str
    text: str


def _charges(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _no_order(events: int, dead_letters: int, succeeded: int) -> Verdict:
    if succeeded:
        return Verdict(
            "inconsistent", f"INCONSISTENT: charged {_charges(succeeded)} but not in OrderDB"
        )
    if dead_letters:
        return Verdict("dead_lettered", f"NOT PLACED: {dead_letters} dead letter(s)")
    if events:
        return Verdict("pending", f"NOT IN OrderDB (yet): {events} event(s) seen")
    return Verdict("not_found", "NOT FOUND: no event and no OrderDB entry")


def _paid(order: Order, ok: list[Charge]) -> Verdict:
    if not ok:
        return Verdict("inconsistent", "INCONSISTENT: PAID but no charge in the ledger")
    if len(ok) > 1:
        return Verdict("inconsistent", f"INCONSISTENT: PAID and charged {_charges(len(ok))}")
    charge = ok[0]
    if charge.id != order.charge_id:
        return Verdict(
            "inconsistent",
            f"INCONSISTENT: PAID with charge {order.charge_id} "
            f"but the ledger's charge is {charge.id}",
        )
    if (charge.amount, charge.currency) != (order.amount, order.currency):
        return Verdict(
            "inconsistent",
            f"INCONSISTENT: PAID {order.amount} {order.currency} "
            f"but charged {charge.amount} {charge.currency}",
        )
    return Verdict("ok", "PAID, charged once")


def _pending(payment: PaymentRecord | None, ok: list[Charge] | None) -> Verdict:
    if payment is None:
        if ok:
            return Verdict(
                "inconsistent",
                f"INCONSISTENT: PENDING with no payment attempt but charged {_charges(len(ok))}",
            )
        return Verdict("pending", "PENDING: no payment attempt yet")
    if payment.status is PaymentStatus.ATTEMPTING:
        return Verdict("pending", f"PENDING: payment attempt {payment.attempts} in progress")
    if payment.status is PaymentStatus.UNKNOWN:
        text = f"STUCK: PENDING with UNKNOWN payment after {payment.attempts} attempt(s)"
        if ok is not None:
            text += (
                f"; the gateway charged it {_charges(len(ok))}, the reconciler should settle it"
                if ok
                else "; the gateway has no successful charge"
            )
        return Verdict("stuck", text)
    if payment.status is PaymentStatus.INCONSISTENT:
        return Verdict(
            "inconsistent",
            f"INCONSISTENT: the gateway's charge under the order's key "
            f"is not this order's ({payment.problem}); never settled "
            "from it",
        )
    outcome = "payment.completed" if payment.status is PaymentStatus.COMPLETED else "payment.failed"
    return Verdict(
        "inconsistent",
        f"INCONSISTENT: PaymentDB says {payment.status} but the order "
        f"is still PENDING ({outcome} not applied)",
    )


def judge(
    order: Order | None,
    payment: PaymentRecord | None,
    ledger: Sequence[Charge] | None,
    *,
    events: int,
    dead_letters: int,
    refunds: Sequence[LedgerRefund] | None = None,
) -> Verdict:
    """The verdict; ``ledger`` None means the gateway was not asked (the verdict says so)."""
    ok = None if ledger is None else [c for c in ledger if c.status == "succeeded"]
    if order is None:
        return _no_order(events, dead_letters, len(ok or ()))
    if order.status is OrderStatus.PENDING:
        return _pending(payment, ok)
    if order.status is OrderStatus.PAID and not order.refunds:
        if ok is None:
            return Verdict("unchecked", f"PAID, charge {order.charge_id} (ledger not checked)")
        return _paid(order, ok)
    if order.status is not OrderStatus.PAYMENT_FAILED:  # cancelled, or refunds asked
        return _money(order, ok, refunds)
    code = order.decline.code if order.decline else "?"
    if ok is None:
        return Verdict("unchecked", f"PAYMENT_FAILED ({code}) (ledger not checked)")
    if ok:
        return Verdict(
            "inconsistent", f"INCONSISTENT: PAYMENT_FAILED ({code}) but charged {_charges(len(ok))}"
        )
    return Verdict("ok", f"PAYMENT_FAILED ({code}), not charged")


def _money(
    order: Order, ok: list[Charge] | None, refunds: Sequence[LedgerRefund] | None
) -> Verdict:
    """A cancelled order, or one with refunds: its money against the ledger's charges and
    refunds (``refunds`` None: the gateway's refunds were not asked)."""
    state = str(order.status)
    owed = f" ({len(order.money_events())} answer(s) owed by the payment service)"
    done = f"captured {order.captured}, refunded {order.refunded}"
    if ok is None or refunds is None:
        return Verdict("unchecked", f"{state}, {done} (ledger not checked)")
    charged = sum(c.amount for c in ok)
    given_back = sum(r.amount for r in refunds if r.status == "succeeded")
    if len(ok) > 1 or given_back > charged:
        return Verdict(
            "inconsistent",
            f"INCONSISTENT: {state} but charged {_charges(len(ok))} ({charged}) and "
            f"refunded {given_back}",
        )
    if (order.captured, order.refunded) != (charged, given_back):
        if order.awaiting_money:
            return Verdict(
                "pending",
                f"{state}, {done}; the ledger: charged {charged}, refunded {given_back}{owed}",
            )
        return Verdict(
            "inconsistent",
            f"INCONSISTENT: {state}, {done}, but the ledger charged {charged} and refunded "
            f"{given_back}",
        )
    if order.awaiting_money:
        return Verdict("pending", f"{state}, {done}{owed}")
    if order.status is OrderStatus.CANCELLED:
        if not charged:
            return Verdict("ok", "CANCELLED, never charged")
        return Verdict("ok", "CANCELLED, charged once and refunded in full")
    refund_count = sum(1 for r in refunds if r.status == "succeeded")
    return Verdict("ok", f"{state}, charged once, refunded {given_back} in {refund_count}")
