"""The trace verdict for every story an order can tell."""

from __future__ import annotations

import dataclasses

import pytest

from orderflow.domain.order import Cancellation, OrderRefund, OrderStatus, RefundState
from orderflow.domain.payment import DECLINE_MESSAGES, PaymentStatus
from orderflow.tools.replay.verdict import Charge, LedgerRefund, judge
from tests.unit.builders import ITEMS_TOTAL, payment_record, pending_order

PAID = dataclasses.replace(pending_order(), status=OrderStatus.PAID, charge_id="ch_1")
FAILED = dataclasses.replace(
    pending_order(),
    status=OrderStatus.PAYMENT_FAILED,
    decline=DECLINE_MESSAGES["card_declined"],
    charge_id="ch_1",
)
OK = Charge("ch_1", "succeeded", ITEMS_TOTAL, "USD")
DECLINED = Charge("ch_1", "failed", ITEMS_TOTAL, "USD", "card_declined")


@pytest.mark.parametrize(
    ("order", "payment", "ledger", "status", "text"),
    [
        (PAID, None, [OK], "ok", "PAID, charged once"),
        (FAILED, None, [DECLINED], "ok", "PAYMENT_FAILED (card_declined), not charged"),
        (FAILED, None, [], "ok", "PAYMENT_FAILED (card_declined), not charged"),
        (PAID, None, None, "unchecked", "PAID, charge ch_1 (ledger not checked)"),
        (FAILED, None, None, "unchecked", "PAYMENT_FAILED (card_declined) (ledger not checked)"),
        (
            PAID,
            None,
            [OK, dataclasses.replace(OK, id="ch_2")],
            "inconsistent",
            "INCONSISTENT: PAID and charged 2 times",
        ),
        (PAID, None, [DECLINED], "inconsistent", "INCONSISTENT: PAID but no charge in the ledger"),
        (
            PAID,
            None,
            [dataclasses.replace(OK, id="ch_9")],
            "inconsistent",
            "INCONSISTENT: PAID with charge ch_1 but the ledger's charge is ch_9",
        ),
        (
            PAID,
            None,
            [dataclasses.replace(OK, amount=1)],
            "inconsistent",
            f"INCONSISTENT: PAID {ITEMS_TOTAL} USD but charged 1 USD",
        ),
        (
            FAILED,
            None,
            [OK],
            "inconsistent",
            "INCONSISTENT: PAYMENT_FAILED (card_declined) but charged once",
        ),
        (pending_order(), None, None, "pending", "PENDING: no payment attempt yet"),
        (
            pending_order(),
            None,
            [OK],
            "inconsistent",
            "INCONSISTENT: PENDING with no payment attempt but charged once",
        ),
        (
            pending_order(),
            payment_record(status=PaymentStatus.ATTEMPTING, attempts=1),
            None,
            "pending",
            "PENDING: payment attempt 1 in progress",
        ),
        (
            pending_order(),
            payment_record(status=PaymentStatus.UNKNOWN, attempts=3),
            [OK],
            "stuck",
            "STUCK: PENDING with UNKNOWN payment after 3 attempt(s); the gateway charged "
            "it once, the reconciler should settle it",
        ),
        (
            pending_order(),
            payment_record(status=PaymentStatus.UNKNOWN, attempts=2),
            [],
            "stuck",
            "STUCK: PENDING with UNKNOWN payment after 2 attempt(s); the gateway has no "
            "successful charge",
        ),
        (
            pending_order(),
            payment_record(status=PaymentStatus.COMPLETED, attempts=1),
            None,
            "inconsistent",
            "INCONSISTENT: PaymentDB says COMPLETED but the order is still PENDING "
            "(payment.completed not applied)",
        ),
        (
            pending_order(),
            payment_record(status=PaymentStatus.INCONSISTENT, problem="amount 1"),
            None,
            "inconsistent",
            "INCONSISTENT: the gateway's charge under the order's key is not "
            "this order's (amount 1); never settled from it",
        ),
    ],
)
def test_verdicts(order: object, payment: object, ledger: object, status: str, text: str) -> None:
    verdict = judge(order, payment, ledger, events=5, dead_letters=0)  # type: ignore[arg-type]
    assert (verdict.status, verdict.text) == (status, text)


def test_an_order_missing_from_orderdb() -> None:
    assert judge(None, None, None, events=0, dead_letters=0).status == "not_found"
    assert judge(None, None, [], events=2, dead_letters=1).text == "NOT PLACED: 1 dead letter(s)"
    assert judge(None, None, None, events=1, dead_letters=0).status == "pending"
    assert judge(None, None, [OK], events=1, dead_letters=0).text == (
        "INCONSISTENT: charged once but not in OrderDB"
    )


_AT = "2026-12-01T00:00:00.000Z"
CANCELLED = pending_order(status=OrderStatus.CANCELLED, cancellation=Cancellation("", _AT))
COMPENSATED = dataclasses.replace(
    CANCELLED,
    captured=ITEMS_TOTAL,
    refunded=ITEMS_TOTAL,
    charge_id="ch_1",
    refunds=(
        OrderRefund("cancel_1", ITEMS_TOTAL, RefundState.COMPLETED, "", _AT, compensation=True),
    ),
)
PARTLY = dataclasses.replace(
    PAID,
    status=OrderStatus.PARTIALLY_REFUNDED,
    captured=ITEMS_TOTAL,
    refunded=100,
    refunds=(OrderRefund("rf_1", 100, RefundState.COMPLETED, "", _AT),),
)
ASKED = dataclasses.replace(
    PAID,
    captured=ITEMS_TOTAL,
    refunds=(OrderRefund("rf_1", 100, RefundState.REQUESTED, "", _AT),),
)
GAVE_100 = [LedgerRefund("re_1", "succeeded", 100)]


@pytest.mark.parametrize(
    ("order", "ledger", "refunds", "status", "text"),
    [
        (CANCELLED, [], [], "ok", "CANCELLED, never charged"),
        (
            COMPENSATED,
            [OK],
            [LedgerRefund("re_1", "succeeded", ITEMS_TOTAL)],
            "ok",
            "CANCELLED, charged once and refunded in full",
        ),
        (
            dataclasses.replace(CANCELLED, captured=ITEMS_TOTAL, charge_id="ch_1"),
            [OK],
            [],
            "pending",
            f"CANCELLED, captured {ITEMS_TOTAL}, refunded 0 (1 answer(s) owed",
        ),
        (PARTLY, [OK], GAVE_100, "ok", "PARTIALLY_REFUNDED, charged once, refunded 100 in 1"),
        (ASKED, [OK], [], "pending", f"PAID, captured {ITEMS_TOTAL}, refunded 0 (1 answer"),
        (
            PARTLY,
            [OK],
            [*GAVE_100, LedgerRefund("re_2", "succeeded", 50)],
            "inconsistent",
            "INCONSISTENT: PARTIALLY_REFUNDED, captured",
        ),
        (CANCELLED, [OK], [], "inconsistent", "INCONSISTENT: CANCELLED, captured 0, refunded 0"),
        (PARTLY, [OK], None, "unchecked", "PARTIALLY_REFUNDED, captured"),
    ],
    ids=[
        "cancelled-never-charged",
        "cancelled-compensated",
        "cancelled-compensation-owed",
        "partly-refunded",
        "refund-in-progress",
        "ledger-refunded-more",
        "cancelled-but-charged-unknown-to-the-order",
        "refunds-not-asked",
    ],
)
def test_verdicts_of_cancelled_and_refunded_orders(
    order: object, ledger: object, refunds: object, status: str, text: str
) -> None:
    verdict = judge(order, None, ledger, events=3, dead_letters=0, refunds=refunds)  # type: ignore[arg-type]
    assert (verdict.status, verdict.text[: len(text)]) == (status, text), verdict
