"""The in-memory safety nets: UNKNOWN payments to reconcile, PENDING orders to nudge."""

from __future__ import annotations

from orderflow.agents.orders import StalledOrders
from orderflow.agents.payments import UnknownPayments
from orderflow.domain.order import Order, OrderStatus
from orderflow.domain.payment import PaymentRecord, PaymentStatus


def _record(order_id: str, status: PaymentStatus, next_attempt_at: float = 0.0) -> PaymentRecord:
    return PaymentRecord(
        order_id, f"key-{order_id}", 100, "EUR", status, attempts=1, next_attempt_at=next_attempt_at
    )


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


def _order(order_id: str, status: str) -> Order:
    return Order(order_id, "c-1", "EUR", (), 100, OrderStatus(status), "t0", "t0", "fp", "req")


def test_pending_order_is_nudged_after_stall_time_then_with_doubling_delays() -> None:
    stalled = StalledOrders(stall_after=10, cap=35)
    stalled.track(_order("o1", "PENDING"), now=0)
    assert _take_due(stalled, 9) == []
    assert _take_due(stalled, 10) == ["o1"]  # next at 10 + 20
    assert _take_due(stalled, 29) == []
    assert _take_due(stalled, 30) == ["o1"]  # next at 30 + min(35, 40)
    assert _take_due(stalled, 64) == []
    assert _take_due(stalled, 65) == ["o1"]


def test_terminal_order_is_never_nudged() -> None:
    stalled = StalledOrders(stall_after=10)
    stalled.track(_order("o1", "PENDING"), now=0)
    stalled.track(_order("o1", "PAID"), now=1)
    assert _take_due(stalled, 1e9) == []


def _take_due(stalled: StalledOrders, now: float) -> list[str]:
    """What the stall timer nudges at ``now`` when the worker owns every order."""
    due = stalled.due(now)
    for order_id in due:
        stalled.nudged(order_id, now)
    return due
