"""The payment service's decisions for cancellations and refunds, from PaymentDB alone."""

from __future__ import annotations

import pytest

from orderflow.domain.payment import (
    Approved,
    CancelAction,
    PaymentAction,
    PaymentStatus,
    decide_cancel,
    decide_payment,
    decline_for,
)
from orderflow.domain.refund import (
    RefundAction,
    RefundAttempt,
    RefundDeclined,
    Refunded,
    RefundStatus,
    compensation_refund_id,
    decide_refund,
    refund_id_for,
    refund_idempotency_key,
)
from tests.unit.builders import ITEMS_TOTAL, payment_record

NOW = 1714564900.0


@pytest.mark.parametrize(
    ("record", "action"),
    [
        (None, CancelAction.VOID),
        (payment_record(attempts=0), CancelAction.VOID),
        (payment_record(attempts=1), CancelAction.RESOLVE),
        (payment_record(status=PaymentStatus.UNKNOWN), CancelAction.RESOLVE),
        (payment_record(status=PaymentStatus.COMPLETED, charge_id="ch_1"), CancelAction.COMPENSATE),
        (payment_record(status=PaymentStatus.FAILED), CancelAction.NOTHING),
        (payment_record(status=PaymentStatus.VOIDED), CancelAction.NOTHING),
        (payment_record(status=PaymentStatus.INCONSISTENT), CancelAction.NOTHING),
    ],
    ids=["none", "never-sent", "attempting", "unknown", "completed", "failed", "voided", "odd"],
)
def test_what_a_cancellation_asks_of_each_payment_state(record: object, action: object) -> None:
    assert decide_cancel(record) is action  # type: ignore[arg-type]


def test_a_voided_payment_is_never_charged_by_a_later_order_created() -> None:
    voided = payment_record(payment_token="tok_visa").void(NOW)

    assert voided.status is PaymentStatus.VOIDED and voided.cancelled
    assert voided.payment_token == ""  # nothing to charge with, kept nowhere
    assert decide_payment(voided) is PaymentAction.SKIP


def test_a_cancelled_payment_whose_charge_may_have_landed_waits_for_the_gateway() -> None:
    sent = payment_record(attempts=1, updated_at=NOW - 2, payment_token="tok_visa")

    cancelled = sent.cancel(NOW, settle_window=30.0, watch=600.0)

    # Never charged again (not ATTEMPTING: no CHARGE), asked about once the client's own
    # deadline has passed, and VOIDED only once a request the gateway holds can no longer land.
    assert cancelled.status is PaymentStatus.UNKNOWN and cancelled.cancelled
    assert cancelled.next_attempt_at == NOW - 2 + 30.0
    assert cancelled.voidable_at == NOW - 2 + 600.0
    assert cancelled.payment_token == ""
    assert decide_payment(cancelled) is PaymentAction.WAIT
    assert cancelled.reconcile_at == NOW - 2 + 30.0


def test_a_cancel_of_a_completed_payment_keeps_it_completed() -> None:
    completed = payment_record(status=PaymentStatus.COMPLETED, charge_id="ch_1")

    cancelled = completed.cancel(NOW, settle_window=30.0, watch=600.0)

    assert (cancelled.status, cancelled.cancelled) == (PaymentStatus.COMPLETED, True)
    assert decide_payment(cancelled) is PaymentAction.REPUBLISH


def test_a_cancelled_attempt_is_not_charged_even_while_attempting() -> None:
    record = payment_record(attempts=1, cancelled=True)

    assert decide_payment(record) is PaymentAction.WAIT


# --- refunds ------------------------------------------------------------------------------------


def test_refund_ids_and_keys_are_stable_and_distinct() -> None:
    assert refund_id_for("ord-1", "key-a") == refund_id_for("ord-1", "key-a")
    assert refund_id_for("ord-1", "key-a") != refund_id_for("ord-1", "key-b")
    assert refund_id_for("ord-1", "key-a") != refund_id_for("ord-2", "key-a")
    # A client key can never name the compensation (different prefixes).
    assert compensation_refund_id("ord-1").startswith("cancel_")
    assert refund_id_for("ord-1", compensation_refund_id("ord-1")).startswith("rf_")
    assert refund_idempotency_key("rf_1") == "orderflow-refund-rf_1"


def test_a_new_refund_within_the_charge_is_refunded() -> None:
    assert decide_refund(ITEMS_TOTAL, None, 0, ITEMS_TOTAL).action is RefundAction.REFUND
    assert decide_refund(ITEMS_TOTAL, None, 1000, ITEMS_TOTAL - 1000).action is RefundAction.REFUND


@pytest.mark.parametrize(
    ("captured", "committed", "amount", "code"),
    [
        (None, 0, 100, "charge_not_found"),
        (ITEMS_TOTAL, ITEMS_TOTAL, 1, "charge_already_refunded"),
        (ITEMS_TOTAL, 1000, ITEMS_TOTAL - 999, "amount_too_large"),
        (ITEMS_TOTAL, 0, 0, "amount_too_large"),
    ],
)
def test_a_refund_beyond_the_charge_is_refused(
    captured: int | None, committed: int, amount: int, code: str
) -> None:
    decision = decide_refund(captured, None, committed, amount)

    assert (decision.action, decision.decline_code) == (RefundAction.REFUSE, code)
    assert decline_for(code).code == code


def test_an_earlier_attempt_of_the_same_refund_decides_by_its_state() -> None:
    first = RefundAttempt.first("rf_1", 100)
    sent = first.attempt(NOW)

    assert decide_refund(ITEMS_TOTAL, first, 100, 100).action is RefundAction.REFUND
    assert decide_refund(ITEMS_TOTAL, sent, 100, 100).action is RefundAction.LOOK_UP
    assert decide_refund(ITEMS_TOTAL, sent.unknown(NOW), 100, 100).action is RefundAction.WAIT
    done = sent.settle(Refunded("re_1"), NOW)
    assert decide_refund(ITEMS_TOTAL, done, 100, 100).action is RefundAction.REPUBLISH
    refused = sent.settle(RefundDeclined(decline_for("amount_too_large")), NOW)
    assert decide_refund(ITEMS_TOTAL, refused, 0, 100).action is RefundAction.REPUBLISH
    assert decide_refund(ITEMS_TOTAL, sent, 100, 99).action is RefundAction.REFUSE


def test_refunds_not_failed_count_as_given_back() -> None:
    record = payment_record(status=PaymentStatus.COMPLETED, charge_id="ch_1")
    for refund_id, amount, status in [
        ("rf_a", 100, RefundStatus.COMPLETED),
        ("rf_b", 200, RefundStatus.UNKNOWN),
        ("rf_c", 400, RefundStatus.ATTEMPTING),
        ("rf_d", 800, RefundStatus.FAILED),
    ]:
        attempt = RefundAttempt.first(refund_id, amount)
        record = record.with_refund(
            RefundAttempt(
                attempt.refund_id,
                attempt.idempotency_key,
                amount,
                status,
                next_attempt_at=NOW + amount,
            )
        )

    assert record.refund_committed == 700
    assert record.reconcile_at == NOW + 200  # the UNKNOWN refund
    assert record.refund("rf_d") is not None and record.refund("rf_x") is None
    # Replacing a refund's state keeps one entry per refund id.
    record = record.with_refund(record.refund("rf_b").settle(Refunded("re_b"), NOW))  # type: ignore[union-attr]
    assert [r.refund_id for r in record.refunds] == ["rf_a", "rf_b", "rf_c", "rf_d"]
    assert record.reconcile_at is None


def test_an_unknown_refund_is_asked_about_later_and_later() -> None:
    sent = RefundAttempt.first("rf_1", 100).attempt(NOW)

    first = sent.unknown(NOW)
    second = first.unknown(NOW + 10)

    assert first.next_attempt_at - NOW == 1.0
    assert second.next_attempt_at - (NOW + 10) == 2.0


def test_a_settled_charge_keeps_its_refunds() -> None:
    record = payment_record().with_refund(RefundAttempt.first("rf_1", 10))

    settled = record.settle(Approved("ch_1"), NOW)

    assert settled.refunds == record.refunds
