"""``POST /orders/{id}/cancel`` and ``/refunds`` over the real order service (fakes of its ports):
each answer comes from the single writer's decision, never from the web view's guess."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
from aiokafka.errors import KafkaTimeoutError

from orderflow.agents.dead_letters import DeadLetters
from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.domain.order import OrderStatus
from orderflow.topics import ORDER_COMMANDS
from orderflow.watch import OrderWatch
from orderflow.web.changes import OrderChanges
from orderflow.web.orders import ApiResponse, OrderApi
from tests.fakes import (
    FakeOrderStore,
    FakePublisher,
    FakeRecordTopic,
    FakeRequest,
    FakeRouting,
    event,
    no_sleep,
)
from tests.unit.builders import ITEMS_TOTAL, pending_order

ORDER = "ord_" + "a" * 32


class ServiceTopic:
    """The command topic, read by the real order service a moment after each send; ``outcome``:
    "stored" (acked, then handled), "delivered" (acked, never handled), "fails" (not acked)."""

    def __init__(self, service: OrderService, outcome: str = "stored") -> None:
        self.service = service
        self.outcome = outcome
        self.sent: list[dict[str, Any]] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[Any]:
        self.sent.append(orjson.loads(value))
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.outcome == "fails":
            delivery.set_exception(KafkaTimeoutError())
            return delivery
        delivery.set_result(None)
        if self.outcome == "stored":
            command = event(ORDER_COMMANDS, value, key=key, offset=len(self.sent))
            self.tasks.append(asyncio.ensure_future(self.service.handle(command)))
        return delivery


class Stack:
    def __init__(self, outcome: str = "stored", status: OrderStatus = OrderStatus.PENDING) -> None:
        self.orders = FakeOrderStore()
        self.watch = OrderWatch()
        self.published = FakePublisher()
        self.service = OrderService(
            self.orders,
            self.published,
            DeadLetters(FakeRecordTopic(), sleep=no_sleep),
            self.watch,
            StalledOrders(60.0),
        )
        self.topic = ServiceTopic(self.service, outcome)
        api = OrderApi(self.orders, self.topic, self.watch, FakeRouting(), post_wait_s=0.5)
        self.changes = OrderChanges(api, self.service.decisions)
        captured = ITEMS_TOTAL if status is OrderStatus.PAID else 0
        self.orders.put(
            pending_order(order_id=ORDER, status=status, captured=captured, charge_id="ch_1")
        )

    async def cancel(self, body: Any = None, **headers: str) -> ApiResponse:
        return await self.changes.cancel(FakeRequest(body, dict(headers)), ORDER)

    async def refund(self, body: Any, key: str | None = "rk-1") -> ApiResponse:
        headers = {} if key is None else {"Idempotency-Key": key}
        return await self.changes.refund(FakeRequest(body, headers), ORDER)


async def test_cancel_of_a_pending_order_answers_200_cancelled_and_again_the_same() -> None:
    stack = Stack()

    first = await stack.cancel({"reason": "ordered twice"})
    again = await stack.cancel()

    assert first.status == 200, first.body
    assert first.body["status"] == "CANCELLED"
    assert first.body["cancellation"]["reason"] == "ordered twice"
    assert first.body["payment"] == {"status": "CANCELLED"}
    assert (again.status, again.headers.get("Idempotent-Replayed")) == (200, "true")
    assert stack.published.kinds() == ["order.cancelled", "order.cancelled"]


async def test_cancel_without_a_body_needs_no_content_type() -> None:
    response = await Stack().cancel()

    assert response.status == 200, response.body


async def test_cancel_of_a_paid_order_is_409_naming_its_state_and_what_to_do() -> None:
    stack = Stack(status=OrderStatus.PAID)

    response = await stack.cancel()

    assert response.status == 409
    assert response.body["status"] == "PAID"
    assert "refund it instead" in response.body["message"]
    assert stack.published.kinds() == []
    assert stack.orders.get(ORDER).status is OrderStatus.PAID  # type: ignore[union-attr]


async def test_cancel_of_an_unknown_order_is_404_and_sends_nothing() -> None:
    stack = Stack()

    response = await stack.changes.cancel(FakeRequest(), "ord_" + "b" * 32)
    malformed = await stack.changes.cancel(FakeRequest(), "nope")

    assert (response.status, malformed.status) == (404, 404)
    assert stack.topic.sent == []


async def test_cancel_with_a_bad_reason_is_400_naming_it() -> None:
    response = await Stack().cancel({"reason": 7, "colour": "red"})

    assert response.status == 400
    assert {p["field"] for p in response.body["problems"]} == {"reason", "colour"}


async def test_cancel_not_decided_in_time_is_202_and_not_acked_is_503() -> None:
    assert (await Stack(outcome="delivered").cancel()).status == 202
    failed = await Stack(outcome="fails").cancel()
    assert (failed.status, failed.headers.get("Retry-After")) == (503, "1")


async def test_a_refund_is_201_with_the_refund_requested_and_the_same_key_answers_it_again() -> (
    None
):
    stack = Stack(status=OrderStatus.PAID)

    first = await stack.refund({"amount": 1000, "reason": "one item back"})
    again = await stack.refund({"amount": 1000, "reason": "one item back"})

    assert first.status == 201, first.body
    refund = first.body["refund"]
    assert (refund["amount"], refund["status"], refund["reason"]) == (
        1000,
        "REQUESTED",
        "one item back",
    )
    assert first.headers["Location"] == f"/orders/{ORDER}"
    assert (again.status, again.headers.get("Idempotent-Replayed")) == (200, "true")
    assert again.body["refund"]["refund_id"] == refund["refund_id"]
    assert len(stack.service.orders.get(ORDER).refunds) == 1  # type: ignore[union-attr]


async def test_the_same_refund_key_with_another_body_is_422_and_changes_nothing() -> None:
    stack = Stack(status=OrderStatus.PAID)
    await stack.refund({"amount": 1000})

    response = await stack.refund({"amount": 999})

    assert response.status == 422
    assert response.body["error"] == "idempotency_key_reused"
    assert [r.amount for r in stack.orders.get(ORDER).refunds] == [1000]  # type: ignore[union-attr]


async def test_a_refund_beyond_what_is_left_is_422_naming_the_amount() -> None:
    stack = Stack(status=OrderStatus.PAID)
    await stack.refund({"amount": ITEMS_TOTAL - 100}, key="rk-1")

    response = await stack.refund({"amount": 101}, key="rk-2")

    assert response.status == 422
    (problem,) = response.body["problems"]
    assert problem["field"] == "amount"
    assert "must be 1..100" in problem["message"]


async def test_a_refund_in_another_currency_is_422_naming_the_currency() -> None:
    response = await Stack(status=OrderStatus.PAID).refund({"amount": 10, "currency": "EUR"})

    assert response.status == 422
    assert [p["field"] for p in response.body["problems"]] == ["currency"]


async def test_a_refund_of_a_pending_order_is_409() -> None:
    response = await Stack().refund({"amount": 10})

    assert response.status == 409
    assert response.body["status"] == "PENDING"


async def test_a_refund_without_a_key_or_with_a_bad_amount_lists_every_problem() -> None:
    stack = Stack(status=OrderStatus.PAID)

    response = await stack.refund({"amount": 1.5}, key=None)

    assert response.status == 400
    assert {p["field"] for p in response.body["problems"]} == {"Idempotency-Key", "amount"}
    assert stack.topic.sent == []


async def test_refunds_of_one_order_with_distinct_keys_have_distinct_ids() -> None:
    stack = Stack(status=OrderStatus.PAID)

    first = await stack.refund({"amount": 10}, key="rk-1")
    second = await stack.refund({"amount": 10}, key="rk-2")

    assert first.body["refund"]["refund_id"] != second.body["refund"]["refund_id"]
    order = stack.orders.get(ORDER)
    assert order is not None and order.reserved == 20
    assert dataclasses.replace(order, refunds=()).refundable == ITEMS_TOTAL
