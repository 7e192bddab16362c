"""``POST /orders/{id}/cancel`` and ``/refunds`` right after ``POST /orders`` answered for an order
the order service has not stored yet: answered as ``GET /orders/{id}`` answers it (503 while the
order's command is unconfirmed or its owner has not read it, the change once it is read), never a
404 that tells the client the order does not exist."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from orderflow.agents.dead_letters import DeadLetters
from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.webhooks import EndpointDirectory
from orderflow.ports import InboundEvent
from orderflow.topics import ORDER_COMMANDS
from orderflow.watch import OrderWatch
from orderflow.web.changes import OrderChanges
from orderflow.web.orders import ApiResponse, OrderApi
from orderflow.web.webhooks import WebhookApi
from tests.fakes import (
    FakeOrderStore,
    FakePublisher,
    FakeRecordTopic,
    FakeRequest,
    FakeRouting,
    event,
    no_sleep,
)
from tests.unit.builders import valid_body


class LaggingOwner:
    """The command topic and its owner's reading of it. ``held``: each command is acked, and read
    by the order service only once the owner catches up (``catch_up``, then each as it comes);
    ``unacked``: the broker never answers (the producer keeps trying); ``read``: caught up."""

    def __init__(self, service: OrderService, outcome: str) -> None:
        self.service = service
        self.outcome = outcome
        self.sent: list[str] = []  # the commands' types, in order
        self.held: list[InboundEvent] = []
        self.catch_ups = 0

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[Any]:
        self.sent.append(orjson.loads(value)["event_type"])
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.outcome == "unacked":
            return delivery
        delivery.set_result(None)
        command = event(ORDER_COMMANDS, value, key=key, offset=len(self.sent))
        if self.outcome == "held":
            self.held.append(command)
        else:  # caught up: read at once (no timing for a test to depend on)
            await self.service.handle(command)
        return delivery

    async def catch_up(self, order_id: str, timeout: float) -> bool:
        """``api.caught_up``: the owner reads every command sent so far."""
        self.catch_ups += 1
        self.outcome = "read"
        while self.held:
            await self.service.handle(self.held.pop(0))
        return True


async def _behind(order_id: str, timeout: float) -> bool:
    """``api.caught_up`` of an owner that has not read its partition's end within the time."""
    return False


CaughtUp = Callable[[str, float], Awaitable[bool]]


class Stack:
    """The order API and its cancels and refunds over the real order service; the order is
    placed by ``place`` (``POST /orders``), not put in the table."""

    def __init__(self, outcome: str, caught_up: str | None) -> None:
        self.orders = FakeOrderStore()
        self.watch = OrderWatch()
        self.published = FakePublisher()
        service = OrderService(
            self.orders,
            self.published,
            DeadLetters(FakeRecordTopic(), sleep=no_sleep),
            self.watch,
            StalledOrders(60.0),
        )
        self.topic = LaggingOwner(service, outcome)
        answers: dict[str | None, CaughtUp | None] = {
            "reads": self.topic.catch_up,
            "behind": _behind,
            None: None,  # a worker without the command progress (no 404 guard)
        }
        self.api = OrderApi(
            self.orders,
            self.topic,
            self.watch,
            FakeRouting(),
            post_wait_s=0.1,
            store_wait_s=0.05,
            caught_up=answers[caught_up],
            move_wait_s=0.05,
        )
        self.changes = OrderChanges(self.api, service.decisions)

    async def place(self) -> ApiResponse:
        return await self.api.create(FakeRequest(valid_body()))

    async def change(self, kind: str, order_id: str) -> ApiResponse:
        if kind == "cancel":
            return await self.changes.cancel(FakeRequest(), order_id)
        request = FakeRequest({"amount": 10}, {"Idempotency-Key": "rk-1"})
        return await self.changes.refund(request, order_id)


async def test_cancel_right_after_a_202_waits_for_the_owner_to_read_the_order_and_cancels_it() -> (
    None
):
    stack = Stack("held", caught_up="reads")
    placed = await stack.place()
    assert placed.status == 202, placed.body
    order_id = placed.body["order_id"]

    response = await stack.change("cancel", order_id)

    assert response.status == 200, response.body
    assert response.body["status"] == "CANCELLED"
    assert stack.topic.sent == ["order.place", "order.cancel"]
    assert stack.published.kinds() == ["order.created", "order.cancelled"]


async def test_a_refund_right_after_a_202_is_decided_by_the_owner_once_it_read_the_order() -> None:
    stack = Stack("held", caught_up="reads")
    placed = await stack.place()

    response = await stack.change("refund", placed.body["order_id"])

    assert response.status == 409, response.body  # decided: a PENDING order has nothing to refund
    assert response.body["status"] == "PENDING"
    assert stack.topic.sent == ["order.place", "order.refund"]


# (what the order's command does, what its owner's catch-up answers) while the order is not read
_NOT_READ = [
    # POST /orders answered 503 (no ack in time) and the producer keeps trying: it may still land
    ("unacked", "reads"),
    ("unacked", "behind"),
    ("unacked", None),
    # POST /orders answered 202: in Kafka, not read by the owner yet
    ("held", "behind"),
    ("held", None),
]


@pytest.mark.parametrize("kind", ["cancel", "refund"])
@pytest.mark.parametrize(("outcome", "caught_up"), _NOT_READ)
async def test_a_change_of_an_order_placed_but_not_read_is_503_never_404(
    kind: str, outcome: str, caught_up: str | None
) -> None:
    # As for a GET: "404" would tell the client the order does not exist, and it may be placed
    # again (and paid twice) while the first one still lands.
    stack = Stack(outcome, caught_up)
    placed = await stack.place()
    assert placed.status == {"unacked": 503, "held": 202}[outcome], placed.body

    response = await stack.change(kind, placed.body["order_id"])

    assert (response.status, response.headers.get("Retry-After")) == (503, "1"), response.body
    assert stack.topic.sent == ["order.place"]
    assert stack.orders.get(placed.body["order_id"]) is None


@pytest.mark.parametrize("kind", ["cancel", "refund"])
async def test_a_change_of_an_order_never_placed_is_404_once_the_owner_has_read_every_command(
    kind: str,
) -> None:
    stack = Stack("held", caught_up="reads")

    response = await stack.change(kind, "ord_" + "c" * 32)

    assert response.status == 404, response.body
    assert stack.topic.catch_ups == 1
    assert stack.topic.sent == []


async def test_the_webhook_deliveries_of_an_order_placed_but_not_read_are_503_never_404() -> None:
    stack = Stack("held", caught_up="behind")
    placed = await stack.place()
    hooks = WebhookApi(
        stack.api, EndpointDirectory(None), {}, stack.topic, stack.topic, b"k" * 32, False
    )

    response = await hooks.order_deliveries(FakeRequest(), placed.body["order_id"])

    assert (response.status, response.headers.get("Retry-After")) == (503, "1"), response.body


async def test_the_webhook_deliveries_of_an_order_read_meanwhile_are_answered() -> None:
    stack = Stack("held", caught_up="reads")
    placed = await stack.place()
    hooks = WebhookApi(
        stack.api, EndpointDirectory(None), {}, stack.topic, stack.topic, b"k" * 32, False
    )

    response = await hooks.order_deliveries(FakeRequest(), placed.body["order_id"])

    assert response.status == 200, response.body
    assert response.body == {"order_id": placed.body["order_id"], "deliveries": []}


@pytest.mark.parametrize("content_type", ["text/plain", ""])
async def test_a_refund_or_webhook_registration_whose_body_is_not_declared_json_is_415(
    content_type: str,
) -> None:
    stack = Stack("read", caught_up="reads")
    placed = await stack.place()
    hooks = WebhookApi(
        stack.api, EndpointDirectory(None), {}, stack.topic, stack.topic, b"k" * 32, False
    )
    headers = {"Content-Type": content_type, "Idempotency-Key": "rk-1"}

    refund = await stack.changes.refund(
        FakeRequest({"amount": 10}, dict(headers)), placed.body["order_id"]
    )
    register = await hooks.register(FakeRequest({"url": "https://example.com/h"}, dict(headers)))

    assert (refund.status, register.status) == (415, 415), (refund.body, register.body)
