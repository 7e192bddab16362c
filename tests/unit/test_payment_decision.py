"""The payment decision, PaymentRecord's moves and the reconcile back-off."""

from __future__ import annotations

import pytest

from orderflow.domain.payment import (
    Approved,
    Decline,
    Declined,
    GatewayCharge,
    PaymentAction,
    PaymentRecord,
    PaymentStatus,
    charge_mismatch,
    decide_payment,
    decline_for,
    idempotency_key_for,
    next_reconcile_delay,
)
from tests.unit.builders import payment_record

NOW = 1714564900.5


@pytest.mark.parametrize(
    ("status", "action"),
    [
        pytest.param(None, PaymentAction.CHARGE, id="first-sight"),
        pytest.param(PaymentStatus.ATTEMPTING, PaymentAction.CHARGE, id="answer-never-recorded"),
        pytest.param(PaymentStatus.UNKNOWN, PaymentAction.WAIT, id="reconciler-owns-it"),
        pytest.param(PaymentStatus.COMPLETED, PaymentAction.REPUBLISH, id="completed"),
        pytest.param(PaymentStatus.FAILED, PaymentAction.REPUBLISH, id="failed"),
    ],
)
def test_decide_payment(status: PaymentStatus | None, action: PaymentAction) -> None:
    record = None if status is None else payment_record(status=status)

    assert decide_payment(record) is action


@pytest.mark.parametrize(
    ("status", "settled"),
    [
        (PaymentStatus.ATTEMPTING, False),
        (PaymentStatus.UNKNOWN, False),
        (PaymentStatus.COMPLETED, True),
        (PaymentStatus.FAILED, True),
    ],
)
def test_only_completed_and_failed_are_settled(status: PaymentStatus, settled: bool) -> None:
    assert status.is_settled is settled


def test_attempt_counts_the_attempt_and_leaves_the_original_unchanged() -> None:
    record = payment_record(status=PaymentStatus.UNKNOWN, attempts=2)

    attempted = record.attempt(NOW)

    assert attempted.status is PaymentStatus.ATTEMPTING
    assert attempted.attempts == 3
    assert attempted.updated_at == NOW
    assert (record.status, record.attempts) == (PaymentStatus.UNKNOWN, 2)


def test_settle_approved_completes_with_charge_id_and_clears_an_earlier_decline() -> None:
    record = payment_record(decline=decline_for("card_declined"))

    settled = record.settle(Approved("ch_1"), NOW)

    assert settled.status is PaymentStatus.COMPLETED
    assert settled.charge_id == "ch_1"
    assert settled.decline is None
    assert settled.updated_at == NOW


def test_settle_declined_fails_with_the_decline() -> None:
    decline = decline_for("expired_card")

    settled = payment_record().settle(Declined(decline, charge_id="ch_2"), NOW)

    assert settled.status is PaymentStatus.FAILED
    assert settled.decline == decline
    assert settled.charge_id == "ch_2"
    assert settled.updated_at == NOW


@pytest.mark.parametrize("attempts", [1, 3, 10])
def test_unknown_schedules_the_next_reconcile_by_the_back_off(attempts: int) -> None:
    record = payment_record(attempts=attempts)

    unknown = record.unknown(NOW)

    assert unknown.status is PaymentStatus.UNKNOWN
    assert unknown.updated_at == NOW
    assert unknown.next_attempt_at == NOW + next_reconcile_delay(attempts)
    assert unknown.attempts == attempts


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(0, 1.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 32.0), (7, 60.0), (50, 60.0)],
)
def test_reconcile_delay_doubles_up_to_the_cap(attempts: int, delay: float) -> None:
    assert next_reconcile_delay(attempts) == delay


def test_reconcile_delay_honours_base_and_cap() -> None:
    delays = [next_reconcile_delay(n, base=0.5, cap=3.0) for n in range(1, 6)]

    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize("attempts", [1024, 1100, 10**6])
def test_reconcile_delay_after_very_many_attempts_is_the_cap_not_an_overflow(
    attempts: int,
) -> None:
    # Regression: base * 2 ** (attempts - 1) raised OverflowError from 1025 attempts on (about
    # 17 hours of retries at the 60 s cap), crashing whoever schedules the next reconcile.
    assert next_reconcile_delay(attempts) == 60.0


def test_reconcile_delay_is_never_zero_and_never_shrinks() -> None:
    delays = [next_reconcile_delay(n) for n in range(0, 200)]

    assert min(delays) > 0
    assert delays == sorted(delays)


def test_decline_for_unknown_code_keeps_the_code_and_is_not_retryable() -> None:
    assert decline_for("do_not_honor") == Decline(
        "do_not_honor", "The payment was declined.", False
    )


def test_decline_text_is_ours_never_the_gateways() -> None:
    # The decline message is public (GET /orders, payment.failed): a gateway's words could
    # carry anything, its URL or what we sent it included.
    assert decline_for("do_not_honor", "Call your bank at https://gw/x").message == (
        "The payment was declined."
    )
    decline = decline_for("insufficient_funds", "Not enough money.")
    assert decline == Decline("insufficient_funds", "The card has insufficient funds.", True)


def test_a_decline_code_that_is_not_a_plain_identifier_is_not_passed_on() -> None:
    assert decline_for("<script>tok_visa 4242</script>").code == "card_declined"
    assert decline_for("x" * 65).code == "card_declined"


def test_idempotency_key_is_stable_per_order_and_distinct_across_orders() -> None:
    assert idempotency_key_for("ord-1") == idempotency_key_for("ord-1")
    assert idempotency_key_for("ord-1") != idempotency_key_for("ord-2")
    # Pinned: changing the format would make the gateway charge in-flight orders a second time.
    assert idempotency_key_for("ord-1") == "orderflow-charge-ord-1"


def test_decide_payment_waits_on_an_inconsistent_payment_never_charges_it_again() -> None:
    assert decide_payment(payment_record(status=PaymentStatus.INCONSISTENT)) is PaymentAction.WAIT
    assert not PaymentStatus.INCONSISTENT.is_settled


@pytest.mark.parametrize(
    ("charge", "problem"),
    [
        pytest.param(("o1", 500, "EUR"), None, id="same-payment"),
        pytest.param(("o1", 500, "eur"), None, id="currency-case-differs"),
        pytest.param(("o2", 500, "EUR"), "order 'o2', expected 'o1'", id="other-order"),
        pytest.param(("o1", 501, "EUR"), "amount 501, expected 500", id="other-amount"),
        pytest.param(("o1", 500, "USD"), "currency 'USD', expected 'EUR'", id="other-currency"),
        pytest.param((None, None, None), "order None", id="nothing-reported"),
    ],
)
def test_charge_mismatch_compares_order_amount_and_currency(
    charge: tuple[str | None, int | None, str | None], problem: str | None
) -> None:
    record = payment_record(order_id="o1", amount=500, currency="EUR")
    order_id, amount, currency = charge
    found = GatewayCharge(Approved("ch_1"), amount, currency, order_id)

    found_problem = charge_mismatch(record, found)

    if problem is None:
        assert found_problem is None
    else:
        assert found_problem is not None and problem in found_problem
        assert "ch_1" in found_problem and record.idempotency_key in found_problem


def test_an_inconsistent_record_keeps_its_problem_and_no_outcome() -> None:
    record = payment_record(status=PaymentStatus.UNKNOWN).inconsistent("amount 1", NOW)
    assert record.status is PaymentStatus.INCONSISTENT
    assert record.problem == "amount 1" and record.charge_id is None and record.decline is None


def test_an_unknown_payment_that_stays_unknown_doubles_its_delay_up_to_the_cap() -> None:
    # A failed lookup is no charge attempt (attempts stays), but each one must wait longer:
    # during a gateway outage every UNKNOWN payment would otherwise be asked about every ~2 s.
    record = payment_record(attempts=1).unknown(NOW)
    delays = []
    now = NOW
    for _ in range(8):
        now = record.next_attempt_at
        record = record.unknown(now)
        delays.append(record.next_attempt_at - now)
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert record.attempts == 1


def test_a_new_charge_attempt_after_unknown_backs_off_by_attempts_again() -> None:
    record = payment_record(attempts=1).unknown(NOW).unknown(NOW + 1).unknown(NOW + 3)
    attempted = record.attempt(NOW + 7).unknown(NOW + 7)
    assert attempted.next_attempt_at - (NOW + 7) == next_reconcile_delay(2)


def test_first_attempt_is_attempting_with_the_orders_one_idempotency_key() -> None:
    record = PaymentRecord.first_attempt("ord-1", 4498, "USD", "tok_visa")

    assert record == PaymentRecord(
        "ord-1",
        idempotency_key_for("ord-1"),
        4498,
        "USD",
        PaymentStatus.ATTEMPTING,
        attempts=0,
        payment_token="tok_visa",
    )
