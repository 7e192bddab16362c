"""The payment service's refunds and cancellations over fakes of its ports (each through
``handle``, as the payment agent runs it: what it raises reaches the dead-letter guard)."""

from __future__ import annotations

from orderflow.domain.events import OrderCancelled, OrderCreated, RefundRequested
from orderflow.domain.payment import Approved, PaymentRecord, PaymentStatus
from orderflow.domain.refund import GatewayRefund, Refunded, RefundStatus, refund_idempotency_key
from orderflow.gateway.base import TransientGatewayError
from orderflow.topics import ORDER_CANCELLED, ORDER_CREATED, REFUND_REQUESTED
from orderflow.wire import encode_event
from tests.fakes import Event, FakeGateway, event
from tests.unit.test_payment_service import Stack, _reconcile_request

AT = "2026-01-01T00:00:00Z"


def _completed() -> PaymentRecord:
    record = PaymentRecord.first_attempt("o1", 500, "EUR", "tok_visa").attempt(900.0)
    return record.settle(Approved("ch_1"), 900.0)


def _requested(amount: int = 200, refund_id: str = "rf_1") -> Event:
    request = RefundRequested("o1", refund_id, amount, "EUR", "damaged", AT)
    return event(REFUND_REQUESTED, encode_event(request), key=b"o1")


def _cancelled() -> Event:
    return event(ORDER_CANCELLED, encode_event(OrderCancelled("o1", "", AT, 500, "EUR")), key=b"o1")


def _created() -> Event:
    created = OrderCreated("o1", "c-1", "EUR", 500, (), "tok_visa", AT)
    return event(ORDER_CREATED, encode_event(created), key=b"o1")


def _stack(gateway: FakeGateway, record: PaymentRecord | None = None) -> Stack:
    stack = Stack(gateway)
    if record is not None:
        stack.payments.put(record)
    return stack


async def test_a_requested_refund_is_made_once_under_its_own_key_and_published() -> None:
    gateway = FakeGateway(Approved("unused"))
    stack = _stack(gateway, _completed())

    await stack.service.handle(_requested())
    await stack.service.handle(_requested())  # redelivered: answered from PaymentDB

    (request,) = gateway.refunds
    assert (request.idempotency_key, request.charge_id, request.amount) == (
        refund_idempotency_key("rf_1"),
        "ch_1",
        200,
    )
    assert stack.rows["o1"].refunds[0].status is RefundStatus.COMPLETED
    assert stack.published.kinds() == ["payment.refunded", "payment.refunded"]
    assert stack.reasons() == []


async def test_a_refund_timeout_is_unknown_then_looked_up_never_sent_blind() -> None:
    gateway = FakeGateway(Approved("unused"))
    gateway.refund_answer = TransientGatewayError("no answer in 5s")
    stack = _stack(gateway, _completed())
    await stack.service.handle(_requested())
    assert stack.rows["o1"].refunds[0].status is RefundStatus.UNKNOWN
    assert "o1" in stack.service.unknown.due_at
    gateway.found_refund = GatewayRefund(Refunded("re_landed"), 200, "ch_1")

    await stack.service.handle(_reconcile_request())

    assert len(gateway.refunds) == 1  # the lookup found it: no second request
    refund = stack.rows["o1"].refunds[0]
    assert (refund.status, refund.gateway_refund_id) == (RefundStatus.COMPLETED, "re_landed")
    assert stack.published.kinds() == ["payment.refunded"]
    assert "o1" not in stack.service.unknown.due_at


async def test_a_refund_found_at_the_gateway_for_another_amount_is_inconsistent_and_alerted() -> (
    None
):
    gateway = FakeGateway(Approved("unused"))
    gateway.refund_answer = TransientGatewayError("no answer in 5s")
    stack = _stack(gateway, _completed())
    await stack.service.handle(_requested())
    gateway.found_refund = GatewayRefund(Refunded("re_x"), 999, "ch_other")

    await stack.service.handle(_reconcile_request())
    await stack.service.handle(_requested())  # asked again: waits, sends nothing

    assert stack.rows["o1"].refunds[0].status is RefundStatus.INCONSISTENT
    assert len(gateway.refunds) == 1
    (reason,) = stack.reasons()
    assert reason.startswith("inconsistent: gateway refund under") and "999" in reason
    assert stack.published.kinds() == []


async def test_a_refund_beyond_the_charge_is_refused_recorded_and_never_sent() -> None:
    gateway = FakeGateway(Approved("unused"))
    stack = _stack(gateway, _completed())

    await stack.service.handle(_requested(501))
    await stack.service.handle(_requested(501))

    assert gateway.refunds == []
    assert stack.rows["o1"].refunds[0].status is RefundStatus.FAILED
    assert stack.published.kinds() == ["refund.failed", "refund.failed"]
    assert stack.published.events[0].reason.code == "amount_too_large"  # type: ignore[union-attr]


async def test_a_cancel_before_the_order_is_seen_voids_it_and_the_order_is_never_charged() -> None:
    gateway = FakeGateway(Approved("ch_1"))
    stack = _stack(gateway)

    await stack.service.handle(_cancelled())
    await stack.service.handle(_created())

    assert gateway.requests == []
    assert stack.rows["o1"].status is PaymentStatus.VOIDED
    assert stack.payments.deliveries  # the void was durable before the event was done
    assert stack.published.kinds() == []


async def test_a_cancel_of_a_charged_payment_refunds_the_whole_charge_once() -> None:
    gateway = FakeGateway(Approved("unused"))
    stack = _stack(gateway, _completed())

    await stack.service.handle(_cancelled())
    await stack.service.handle(_cancelled())

    (request,) = gateway.refunds
    assert request.amount == 500
    refund = stack.rows["o1"].refunds[0]
    assert (refund.compensation, refund.status) == (True, RefundStatus.COMPLETED)
    assert stack.published.kinds() == ["payment.refunded", "payment.refunded"]
