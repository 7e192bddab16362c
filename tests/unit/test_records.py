"""Table values on the wire: Order and PaymentRecord bytes round trips, and the public view."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from orderflow.domain.order import (
    Cancellation,
    Order,
    OrderRefund,
    OrderStatus,
    RefundState,
    place_order,
)
from orderflow.domain.payment import PaymentRecord, PaymentStatus, decline_for
from orderflow.domain.refund import RefundAttempt, Refunded
from orderflow.domain.responses import order_to_public
from orderflow.wire import order_from_bytes, order_to_bytes, payment_from_bytes, payment_to_bytes
from tests.unit.builders import ITEMS_TOTAL, T1, payment_record, pending_order, place_command

SECRET_TOKEN = "tok_secret_4242424242"
T1_EPOCH = 1714564805.25

ORDERS = [
    pytest.param(pending_order(), id="PENDING"),
    pytest.param(
        pending_order(status=OrderStatus.PAID, charge_id="ch_1", captured=ITEMS_TOTAL), id="PAID"
    ),
    pytest.param(
        pending_order(
            status=OrderStatus.CANCELLED, cancellation=Cancellation("changed my mind", T1)
        ),
        id="CANCELLED",
    ),
    pytest.param(
        pending_order(
            status=OrderStatus.PARTIALLY_REFUNDED,
            charge_id="ch_1",
            captured=ITEMS_TOTAL,
            refunded=500,
            refunds=(
                OrderRefund("rf_1", 500, RefundState.COMPLETED, "damaged", T1, "fp", "req", "re_1"),
                OrderRefund(
                    "rf_2",
                    700,
                    RefundState.FAILED,
                    "",
                    T1,
                    decline=decline_for("amount_too_large"),
                ),
                OrderRefund("rf_3", 100, RefundState.REQUESTED, "late", T1, "fp3", "req3"),
            ),
        ),
        id="PARTIALLY_REFUNDED",
    ),
    pytest.param(
        pending_order(
            status=OrderStatus.PAYMENT_FAILED, decline=decline_for("expired_card"), updated_at=T1
        ),
        id="PAYMENT_FAILED",
    ),
    pytest.param(
        pending_order(
            status=OrderStatus.PAYMENT_FAILED,
            decline=decline_for("do_not_honor", "Call your bank."),
            charge_id="ch_2",
        ),
        id="PAYMENT_FAILED-with-charge",
    ),
    pytest.param(pending_order(currency="JPY", amount=1500), id="JPY"),
]


@pytest.mark.parametrize("order", ORDERS)
def test_order_survives_a_bytes_round_trip(order: Order) -> None:
    assert order_from_bytes(order_to_bytes(order)) == order


def test_order_bytes_are_plain_json_without_the_payment_token() -> None:
    # OrderDB's changelog is compacted and kept forever: the token is never in it.
    order = place_order(None, place_command(payment_token=SECRET_TOKEN)).order
    raw = order_to_bytes(dataclasses.replace(order, command_offset=7))
    data = orjson.loads(raw)

    assert SECRET_TOKEN.encode() not in raw
    assert "payment_token" not in data
    assert data["command_offset"] == 7
    assert data["status"] == "PENDING"
    assert type(data["amount"]) is int


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(payment_record(), id="ATTEMPTING"),
        pytest.param(payment_record(status=PaymentStatus.COMPLETED, charge_id="ch_1"), id="DONE"),
        pytest.param(
            payment_record(status=PaymentStatus.FAILED, decline=decline_for("insufficient_funds")),
            id="FAILED",
        ),
        pytest.param(
            payment_record(status=PaymentStatus.UNKNOWN, attempts=4, next_attempt_at=1714564908.3),
            id="UNKNOWN",
        ),
        pytest.param(payment_record(updated_at=0.1 + 0.2), id="float-timestamp-exact"),
        pytest.param(payment_record(payment_token="tok_visa"), id="with-token"),
        pytest.param(
            payment_record(status=PaymentStatus.VOIDED, cancelled=True), id="VOIDED-cancelled"
        ),
        pytest.param(
            payment_record(status=PaymentStatus.COMPLETED, charge_id="ch_1", cancelled=True)
            .with_refund(
                RefundAttempt.first("cancel_1", 4498, compensation=True)
                .attempt(T1_EPOCH)
                .settle(Refunded("re_1"), T1_EPOCH)
            )
            .with_refund(
                RefundAttempt.first("rf_2", 10, "partial").attempt(T1_EPOCH).unknown(T1_EPOCH)
            ),
            id="with-refunds",
        ),
    ],
)
def test_payment_record_survives_a_bytes_round_trip(record: PaymentRecord) -> None:
    decoded = payment_from_bytes(payment_to_bytes(record))

    assert decoded == record
    assert decoded.status is record.status


@pytest.mark.parametrize("order", ORDERS)
def test_order_to_public_never_contains_the_payment_token(order: Order) -> None:
    placed = place_order(None, place_command(payment_token=SECRET_TOKEN)).order
    order = dataclasses.replace(
        placed, status=order.status, charge_id=order.charge_id, decline=order.decline
    )

    public = order_to_public(order)

    assert SECRET_TOKEN.encode() not in orjson.dumps(public)
    assert "payment_token" not in public
    assert "fingerprint" not in public


@pytest.mark.parametrize(
    ("status", "payment_status"),
    [
        (OrderStatus.PENDING, "PENDING"),
        (OrderStatus.PAID, "COMPLETED"),
        (OrderStatus.PAYMENT_FAILED, "FAILED"),
    ],
)
def test_order_to_public_shows_the_payment_status(status: OrderStatus, payment_status: str) -> None:
    public = order_to_public(pending_order(status=status))

    assert public["status"] == str(status)
    assert public["payment"]["status"] == payment_status


def test_order_to_public_shows_the_decline_of_a_failed_order() -> None:
    order = pending_order(status=OrderStatus.PAYMENT_FAILED, decline=decline_for("expired_card"))

    payment = order_to_public(order)["payment"]

    assert payment["decline_code"] == "expired_card"
    assert payment["decline"] == {
        "code": "expired_card",
        "message": "The card has expired.",
        "retryable": False,
    }
