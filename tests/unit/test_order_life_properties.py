"""The order state machine over random sequences of commands and events (hypothesis).

Any sequence, however odd (events that contradict each other, refunds of unknown ids, amounts
out of range, duplicates), keeps these true after every step:

- money refunded never exceeds money captured, and nothing is reserved beyond what is left;
- a final status (PAYMENT_FAILED, CANCELLED, REFUNDED) never changes, and nothing returns to
  PENDING; a CANCELLED order is never PAID;
- the status says what the money says (REFUNDED: all of it given back; PARTIALLY_REFUNDED: some);
- each sequence ends in one state: folding it again gives the same order, and so does folding it
  with any of its steps delivered twice in a row (at-least-once redelivery).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from orderflow.domain.events import (
    CancelOrder,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    RefundFailed,
    RefundOrder,
)
from orderflow.domain.order import (
    Order,
    OrderStatus,
    RefundState,
    apply_payment,
    apply_refund,
    cancel_order,
    refund_order,
)
from orderflow.domain.payment import decline_for
from orderflow.domain.refund import compensation_refund_id
from tests.unit.builders import ITEMS_TOTAL, pending_order

NOW = "2024-05-01T12:00:09.000Z"
AMOUNT = ITEMS_TOTAL
REFUND_IDS = ("rf_a", "rf_b", "rf_c", compensation_refund_id("ord-1"))
DECLINE = decline_for("card_declined")

Step = Callable[[Order], Order]


@dataclass(frozen=True)
class Command:
    """A client command (cancel or refund) or a payment event, and how it is applied."""

    name: str
    apply: Step

    def __repr__(self) -> str:
        return self.name


def _amounts() -> st.SearchStrategy[int]:
    # Mostly sensible amounts, some at and beyond the edges.
    return st.one_of(
        st.integers(1, AMOUNT), st.sampled_from([0, -1, AMOUNT, AMOUNT + 1, AMOUNT // 2])
    )


def _cancel() -> st.SearchStrategy[Command]:
    return st.builds(
        lambda reason: Command(
            f"cancel({reason!r})",
            lambda o: cancel_order(o, CancelOrder("ord-1", "req", reason, NOW), NOW).order,
        ),
        st.sampled_from(["", "changed my mind"]),
    )


def _refund() -> st.SearchStrategy[Command]:
    def make(refund_id: str, amount: int, fingerprint: str) -> Command:
        command = RefundOrder("ord-1", refund_id, amount, "USD", "r", fingerprint, "", NOW)
        return Command(
            f"refund({refund_id}, {amount}, {fingerprint})",
            lambda o: refund_order(o, command, NOW).order,
        )

    return st.builds(make, st.sampled_from(REFUND_IDS[:3]), _amounts(), st.sampled_from("xy"))


def _payment() -> st.SearchStrategy[Command]:
    def make(ok: bool, amount: int) -> Command:
        event: PaymentCompleted | PaymentFailed = (
            PaymentCompleted("ord-1", amount, "USD", "ch_1", NOW)
            if ok
            else PaymentFailed("ord-1", amount, "USD", DECLINE, NOW)
        )
        return Command(
            f"{event.event_type}({amount})", lambda o: apply_payment(o, event, NOW).order
        )

    return st.builds(make, st.booleans(), st.sampled_from([AMOUNT, AMOUNT, AMOUNT - 1]))


def _refund_outcome() -> st.SearchStrategy[Command]:
    def make(ok: bool, refund_id: str, amount: int, compensation: bool) -> Command:
        event: PaymentRefunded | RefundFailed = (
            PaymentRefunded("ord-1", refund_id, amount, "USD", "re_1", NOW, compensation, "ch_1")
            if ok
            else RefundFailed("ord-1", refund_id, amount, "USD", DECLINE, NOW, compensation)
        )
        label = f"{event.event_type}({refund_id}, {amount}, compensation={compensation})"
        return Command(label, lambda o: apply_refund(o, event, NOW).order)

    return st.builds(make, st.booleans(), st.sampled_from(REFUND_IDS), _amounts(), st.booleans())


COMMANDS = st.one_of(_cancel(), _refund(), _payment(), _refund_outcome())
SEQUENCES = st.lists(COMMANDS, max_size=25)


def _check(before: Order, after: Order) -> None:
    assert 0 <= after.refunded <= after.captured <= after.amount
    assert after.reserved >= 0 and after.refundable >= 0
    if before.status.is_final:
        assert after.status is before.status, f"final {before.status} became {after.status}"
    if before.status.is_terminal:
        assert after.status.is_terminal
    if after.status is OrderStatus.REFUNDED:
        assert after.refunded == after.captured > 0
    if after.status is OrderStatus.PARTIALLY_REFUNDED:
        assert 0 < after.refunded < after.captured
    if after.status is OrderStatus.PAID:
        assert after.captured == after.amount and after.refunded == 0
    if after.status in (OrderStatus.PENDING, OrderStatus.PAYMENT_FAILED):
        assert after.captured == 0 and not after.refunds
    completed = sum(r.amount for r in after.refunds if r.state is RefundState.COMPLETED)
    assert completed == after.refunded


def _fold(steps: list[Command]) -> Order:
    order = pending_order()
    for step in steps:
        after = step.apply(order)
        _check(order, after)
        order = after
    return order


@settings(max_examples=400, deadline=None)
@given(SEQUENCES)
def test_every_sequence_keeps_the_money_and_the_status_consistent(steps: list[Command]) -> None:
    _fold(steps)


@settings(max_examples=300, deadline=None)
@given(SEQUENCES, st.data())
def test_every_sequence_ends_in_one_state_whatever_is_delivered_twice(
    steps: list[Command], data: st.DataObject
) -> None:
    twice = data.draw(st.lists(st.booleans(), min_size=len(steps), max_size=len(steps)))
    redelivered = [
        s for step, again in zip(steps, twice, strict=True) for s in [step] * (1 + again)
    ]

    assert _fold(steps) == _fold(steps)
    assert _fold(redelivered) == _fold(steps)


@settings(max_examples=300, deadline=None)
@given(SEQUENCES)
def test_a_cancelled_order_never_becomes_paid_and_gives_back_what_it_took(
    steps: list[Command],
) -> None:
    cancel = CancelOrder("ord-1", "req", "", NOW)
    order = cancel_order(pending_order(), cancel, NOW).order
    for step in steps:
        order = step.apply(order)
        assert order.status is OrderStatus.CANCELLED
    # Only the compensation may give its money back: no client refund of a cancelled order.
    assert all(r.compensation for r in order.refunds)
