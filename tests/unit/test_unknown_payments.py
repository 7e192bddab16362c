"""The reconciler's index of UNKNOWN payments: due times, and asking again when nothing happens."""

from __future__ import annotations

from orderflow.agents.payments import UnknownPayments
from orderflow.domain.payment import PaymentRecord, PaymentStatus


def _record(order_id: str, status: PaymentStatus, next_attempt_at: float = 0.0) -> PaymentRecord:
    return PaymentRecord(order_id, f"key-{order_id}", 100, "EUR", status, attempts=1,
                         next_attempt_at=next_attempt_at)  # fmt: skip


def test_unknown_payment_is_due_at_its_next_attempt_and_requested_once() -> None:
    index = UnknownPayments(request_timeout=30)
    index.track(_record("o1", PaymentStatus.UNKNOWN, next_attempt_at=100))
    assert index.take_due(99) == []
    assert index.take_due(100) == ["o1"]
    assert index.take_due(101) == []  # already asked; the answer is on its way


def test_unanswered_request_is_sent_again_after_the_request_timeout() -> None:
    index = UnknownPayments(request_timeout=30)
    index.track(_record("o1", PaymentStatus.UNKNOWN, next_attempt_at=0))
    assert index.take_due(10) == ["o1"]
    assert index.take_due(39) == []
    assert index.take_due(41) == ["o1"]


def test_settled_payment_leaves_the_index() -> None:
    index = UnknownPayments()
    index.track(_record("o1", PaymentStatus.UNKNOWN))
    index.track(_record("o1", PaymentStatus.COMPLETED))
    assert index.take_due(1e12) == []
