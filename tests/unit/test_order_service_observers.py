"""The order service tells its observers (the metrics) of each stored order and each terminal
status exactly once, however often Kafka delivers the events again."""

from __future__ import annotations

import asyncio
from typing import Any

from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.domain.events import PaymentCompleted
from orderflow.domain.order import OrderStatus
from orderflow.topics import ORDER_COMMANDS, PAYMENT_COMPLETED
from orderflow.watch import OrderWatch
from orderflow.wire import encode_event
from tests.unit.builders import place_command
from tests.unit.order_service_fakes import FakeEvent, FakeMessage, FakeOrders, SilentTopic


class _DeadLetters:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def guard(self, event: Any, handle: Any) -> None:
        await handle(event)

    async def send(self, event: Any, reason: str) -> None:
        self.sent.append(reason)


def test_created_and_terminal_are_observed_once_despite_redelivery() -> None:
    orders = FakeOrders()
    dead_letters = _DeadLetters()
    service = OrderService(
        orders,  # type: ignore[arg-type]
        SilentTopic(),
        dead_letters,  # type: ignore[arg-type]
        OrderWatch(),  # type: ignore[arg-type]
        StalledOrders(30.0),
    )
    created: list[str] = []
    terminal: list[tuple[str, OrderStatus]] = []
    service.on_created = lambda order: created.append(order.order_id)
    service.on_terminal = lambda order: terminal.append((order.order_id, order.status))
    command = place_command(order_id="ord-1")
    place = FakeEvent(FakeMessage(ORDER_COMMANDS, 0, 0, b"ord-1", encode_event(command)))

    async def run() -> None:
        await service.handle(place)
        await service.handle(place)  # redelivered
        order = orders.rows["ord-1"]
        paid = PaymentCompleted(
            "ord-1", order.amount, order.currency, "ch_1", "2026-01-01T00:00:01Z"
        )
        result = FakeEvent(FakeMessage(PAYMENT_COMPLETED, 0, 0, b"ord-1", encode_event(paid)))
        await service.handle(result)
        await service.handle(result)  # redelivered

    asyncio.run(run())

    assert created == ["ord-1"]
    assert terminal == [("ord-1", OrderStatus.PAID)]
    assert dead_letters.sent == []
