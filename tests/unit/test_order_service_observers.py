"""The order service tells its observers (the metrics) of each stored order and each terminal
status exactly once, however often Kafka delivers the events again."""

from __future__ import annotations

from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.domain.events import PaymentCompleted
from orderflow.domain.order import OrderStatus
from orderflow.topics import ORDER_COMMANDS, PAYMENT_COMPLETED
from orderflow.watch import OrderWatch
from orderflow.wire import encode_event
from tests.fakes import FakeOrderStore, FakePublisher, PassingDeadLetters, event
from tests.unit.builders import place_command


async def test_created_and_terminal_are_observed_once_despite_redelivery() -> None:
    orders = FakeOrderStore()
    dead_letters = PassingDeadLetters()
    created: list[str] = []
    terminal: list[tuple[str, OrderStatus]] = []
    service = OrderService(
        orders,
        FakePublisher(),
        dead_letters,
        OrderWatch(),
        StalledOrders(30.0),
        on_created=lambda order: created.append(order.order_id),
        on_terminal=lambda order: terminal.append((order.order_id, order.status)),
    )
    command = place_command(order_id="ord-1")
    place = event(ORDER_COMMANDS, encode_event(command), key=b"ord-1")

    await service.handle(place)
    await service.handle(place)  # redelivered
    order = orders.rows["ord-1"]
    paid = PaymentCompleted("ord-1", order.amount, order.currency, "ch_1", "2026-01-01T00:00:01Z")
    result = event(PAYMENT_COMPLETED, encode_event(paid), key=b"ord-1")
    await service.handle(result)
    await service.handle(result)  # redelivered

    assert created == ["ord-1"]
    assert terminal == [("ord-1", OrderStatus.PAID)]
    assert dead_letters.sent == []
