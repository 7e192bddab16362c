"""The order state machine's cancel and refund decisions, case by case (the properties over
random sequences: test_order_life_properties.py)."""

from __future__ import annotations

import dataclasses

import pytest

from orderflow.domain.events import (
    CancelOrder,
    OrderCancelled,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    RefundFailed,
    RefundOrder,
    RefundRequested,
)
from orderflow.domain.order import (
    MAX_REFUNDS_PER_ORDER,
    Answer,
    Cancellation,
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
from tests.unit.builders import ITEMS_TOTAL, T0, T1, pending_order

T2 = "2024-05-01T12:00:09.000Z"
COMPENSATION = compensation_refund_id("ord-1")


def cancel(reason: str = "changed my mind") -> CancelOrder:
    return CancelOrder("ord-1", "req-cancel", reason, T1)


def refund(amount: int, refund_id: str = "rf_1", fingerprint: str = "fp-1") -> RefundOrder:
    return RefundOrder(
        "ord-1", refund_id, amount, "USD", "req-" + refund_id, fingerprint, "damaged", T1
    )


def completed() -> PaymentCompleted:
    return PaymentCompleted("ord-1", ITEMS_TOTAL, "USD", "ch_1", T1)


def refunded(amount: int, refund_id: str = "rf_1", **kw: object) -> PaymentRefunded:
    return PaymentRefunded("ord-1", refund_id, amount, "USD", "re_" + refund_id, T2, **kw)  # type: ignore[arg-type]


def refund_failed(amount: int, refund_id: str = "rf_1", **kw: object) -> RefundFailed:
    decline = decline_for("amount_too_large")
    return RefundFailed("ord-1", refund_id, amount, "USD", decline, T2, **kw)  # type: ignore[arg-type]


def paid() -> Order:
    return apply_payment(pending_order(), completed(), T1).order


def cancelled() -> Order:
    return cancel_order(pending_order(), cancel(), T1).order


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_of_a_pending_order_cancels_it_and_publishes_order_cancelled() -> None:
    decision = cancel_order(pending_order(), cancel(), T1)

    assert decision.answer is Answer.ACCEPTED
    assert decision.order.status is OrderStatus.CANCELLED
    assert decision.order.cancellation == Cancellation("changed my mind", T1)
    assert decision.publish == (OrderCancelled("ord-1", "changed my mind", T1, ITEMS_TOTAL, "USD"),)


def test_cancel_again_answers_the_same_and_sends_the_event_again() -> None:
    # A crash between the table write and the publish must not leave the payment service
    # unaware: the replayed command re-sends the same event (same event id).
    decision = cancel_order(cancelled(), cancel("another reason"), T2)

    assert decision.answer is Answer.REPLAYED
    assert decision.order == cancelled()
    assert decision.publish == (OrderCancelled("ord-1", "changed my mind", T1, ITEMS_TOTAL, "USD"),)


@pytest.mark.parametrize(
    ("order", "words"),
    [
        (lambda: paid(), "the order is PAID (refund it instead)"),
        (
            lambda: pending_order(status=OrderStatus.PAYMENT_FAILED),
            "the order is PAYMENT_FAILED: it",
        ),
    ],
    ids=["PAID", "PAYMENT_FAILED"],
)
def test_cancel_of_a_settled_order_is_refused_saying_its_state(order: object, words: str) -> None:
    before = order()  # type: ignore[operator]
    decision = cancel_order(before, cancel(), T1)

    assert decision.answer is Answer.REFUSED
    assert decision.order is before
    assert decision.publish == ()
    assert words in decision.reason


def test_a_charge_that_raced_the_cancel_is_recorded_and_the_cancel_sent_again() -> None:
    transition = apply_payment(cancelled(), completed(), T2)

    assert transition.changed and not transition.anomaly
    order = transition.order
    assert order.status is OrderStatus.CANCELLED  # never PAID-and-cancelled
    assert (order.captured, order.refunded, order.charge_id) == (ITEMS_TOTAL, 0, "ch_1")
    assert transition.publish == (
        OrderCancelled("ord-1", "changed my mind", T1, ITEMS_TOTAL, "USD"),
    )


def test_a_decline_after_the_cancel_is_recorded_without_alarm() -> None:
    decline = decline_for("card_declined")
    transition = apply_payment(
        cancelled(), PaymentFailed("ord-1", ITEMS_TOTAL, "USD", decline, T2), T2
    )

    assert transition.changed and not transition.anomaly
    assert transition.order.status is OrderStatus.CANCELLED
    assert transition.order.decline == decline
    assert transition.order.captured == 0


def test_the_compensation_refund_completes_a_raced_cancellation() -> None:
    charged = apply_payment(cancelled(), completed(), T2).order

    transition = apply_refund(charged, refunded(ITEMS_TOTAL, COMPENSATION, compensation=True), T2)

    assert transition.changed and not transition.anomaly
    order = transition.order
    assert order.status is OrderStatus.CANCELLED
    assert (order.captured, order.refunded) == (ITEMS_TOTAL, ITEMS_TOTAL)
    assert [(r.refund_id, r.state, r.compensation) for r in order.refunds] == [
        (COMPENSATION, RefundState.COMPLETED, True)
    ]
    # Its payment.completed read afterwards: a duplicate, and nothing left to compensate.
    late = apply_payment(order, completed(), T2)
    assert (late.changed, late.anomaly, late.publish) == (False, False, ())


def test_a_compensation_read_before_its_charge_records_the_charge_itself() -> None:
    # payment.refunded and payment.completed travel on different topics: either may come first.
    event = refunded(ITEMS_TOTAL, COMPENSATION, compensation=True, charge_id="ch_1")

    order = apply_refund(cancelled(), event, T2).order

    assert (order.captured, order.refunded, order.charge_id) == (ITEMS_TOTAL, ITEMS_TOTAL, "ch_1")
    assert order.status is OrderStatus.CANCELLED


def test_a_refused_compensation_is_recorded_and_raised_as_an_anomaly() -> None:
    charged = apply_payment(cancelled(), completed(), T2).order

    transition = apply_refund(
        charged, refund_failed(ITEMS_TOTAL, COMPENSATION, compensation=True), T2
    )

    assert transition.changed and transition.anomaly  # a person must look: money kept
    assert transition.order.refunds[0].state is RefundState.FAILED
    assert transition.order.refunded == 0


# --- refunds -------------------------------------------------------------------------------------


def test_a_refund_of_a_paid_order_reserves_its_amount_and_asks_the_payment_service() -> None:
    decision = refund_order(paid(), refund(1000), T2)

    assert decision.answer is Answer.ACCEPTED
    order = decision.order
    assert order.status is OrderStatus.PAID  # nothing given back yet
    assert (order.reserved, order.refundable) == (1000, ITEMS_TOTAL - 1000)
    assert decision.publish == (RefundRequested("ord-1", "rf_1", 1000, "USD", "damaged", T1),)


def test_partial_refunds_move_the_order_to_partially_refunded_then_refunded() -> None:
    order = refund_order(paid(), refund(1000), T2).order
    order = apply_refund(order, refunded(1000), T2).order
    assert order.status is OrderStatus.PARTIALLY_REFUNDED
    assert (order.refunded, order.refundable) == (1000, ITEMS_TOTAL - 1000)

    rest = ITEMS_TOTAL - 1000
    order = refund_order(order, refund(rest, "rf_2", "fp-2"), T2).order
    order = apply_refund(order, refunded(rest, "rf_2"), T2).order

    assert order.status is OrderStatus.REFUNDED
    assert order.status.is_final
    assert (order.captured, order.refunded, order.refundable) == (ITEMS_TOTAL, ITEMS_TOTAL, 0)


@pytest.mark.parametrize("amount", [0, -5, ITEMS_TOTAL + 1])
def test_a_refund_outside_what_is_left_is_refused_naming_the_amount(amount: int) -> None:
    decision = refund_order(paid(), refund(amount), T2)

    assert (decision.answer, decision.field) == (Answer.REFUSED, "amount")
    assert f"must be 1..{ITEMS_TOTAL}" in decision.reason
    assert decision.order == paid()


def test_refunds_in_progress_count_against_what_is_left() -> None:
    order = refund_order(paid(), refund(ITEMS_TOTAL - 10), T2).order

    decision = refund_order(order, refund(11, "rf_2", "fp-2"), T2)

    assert (decision.answer, decision.field) == (Answer.REFUSED, "amount")
    assert "must be 1..10" in decision.reason and "in progress 4488" in decision.reason


def test_an_order_takes_at_most_max_refunds_then_refuses_more() -> None:
    order = paid()
    for n in range(MAX_REFUNDS_PER_ORDER):
        order = refund_order(order, refund(1, f"rf_{n}", f"fp-{n}"), T2).order

    decision = refund_order(order, refund(1, "rf_last", "fp-last"), T2)

    assert len(order.refunds) == MAX_REFUNDS_PER_ORDER
    assert (decision.answer, decision.field) == (Answer.REFUSED, "")
    assert "the most one order may have" in decision.reason


def test_a_failed_refund_releases_its_reservation() -> None:
    order = refund_order(paid(), refund(ITEMS_TOTAL), T2).order

    order = apply_refund(order, refund_failed(ITEMS_TOTAL), T2).order

    assert order.status is OrderStatus.PAID
    assert (order.refunded, order.refundable) == (0, ITEMS_TOTAL)
    assert refund_order(order, refund(ITEMS_TOTAL, "rf_2", "fp-2"), T2).answer is Answer.ACCEPTED


def test_a_replayed_refund_answers_the_same_and_sends_the_request_again_while_open() -> None:
    order = refund_order(paid(), refund(1000), T2).order

    again = refund_order(order, refund(1000), T2)
    assert again.answer is Answer.REPLAYED
    assert again.order is order
    assert again.publish == (RefundRequested("ord-1", "rf_1", 1000, "USD", "damaged", T1),)

    done = apply_refund(order, refunded(1000), T2).order
    assert refund_order(done, refund(1000), T2).publish == ()


def test_the_same_refund_id_with_another_body_is_a_conflict() -> None:
    order = refund_order(paid(), refund(1000), T2).order

    decision = refund_order(order, refund(999, fingerprint="fp-other"), T2)

    assert decision.answer is Answer.CONFLICT
    assert decision.order is order


@pytest.mark.parametrize(
    ("order", "words"),
    [
        (lambda: pending_order(), "PENDING: nothing captured yet (cancel it instead)"),
        (lambda: cancelled(), "CANCELLED: nothing captured to refund"),
        (lambda: pending_order(status=OrderStatus.PAYMENT_FAILED), "PAYMENT_FAILED: nothing"),
    ],
    ids=["PENDING", "CANCELLED", "PAYMENT_FAILED"],
)
def test_a_refund_of_an_order_with_nothing_captured_is_refused(order: object, words: str) -> None:
    decision = refund_order(order(), refund(1), T2)  # type: ignore[operator]

    assert (decision.answer, decision.field) == (Answer.REFUSED, "")
    assert words in decision.reason


def test_a_refund_in_another_currency_is_refused_naming_the_currency() -> None:
    decision = refund_order(paid(), dataclasses.replace(refund(100), currency="EUR"), T2)

    assert (decision.answer, decision.field) == (Answer.REFUSED, "currency")
    assert decision.reason == "the order is in USD, not EUR"


def test_refund_outcomes_that_contradict_the_order_are_anomalies() -> None:
    order = refund_order(paid(), refund(1000), T2).order
    done = apply_refund(order, refunded(1000), T2).order

    cases = {
        "unknown refund": apply_refund(paid(), refunded(5, "rf_9"), T2),
        "amount differs": apply_refund(order, refunded(999), T2),
        "fails after completing": apply_refund(done, refund_failed(1000), T2),
        "other currency": apply_refund(
            order, dataclasses.replace(refunded(1000), currency="EUR"), T2
        ),
    }

    for name, transition in cases.items():
        assert (transition.changed, transition.anomaly) == (False, True), name
    duplicate = apply_refund(done, refunded(1000), T2)
    assert (duplicate.changed, duplicate.anomaly, duplicate.reason) == (False, False, "duplicate")


def test_refund_events_of_one_order_have_distinct_stable_ids() -> None:
    first = RefundRequested("ord-1", "rf_1", 1000, "USD", "", T0)
    second = RefundRequested("ord-1", "rf_2", 1000, "USD", "", T0)

    assert first.event_id != second.event_id
    assert first.event_id == dataclasses.replace(first, occurred_at=T1).event_id
    assert refunded(1000).event_id != refund_failed(1000).event_id
