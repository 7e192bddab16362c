"""Stand-ins for what the order service is given (Kafka events, OrderDB, a topic), for unit tests."""

from __future__ import annotations

from dataclasses import dataclass

from orderflow.domain.order import Order


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


@dataclass
class FakeEvent:
    message: FakeMessage


class FakeOrders:
    """OrderDB as a dict."""

    def __init__(self) -> None:
        self.rows: dict[str, Order] = {}

    def get(self, order_id: str) -> Order | None:
        return self.rows.get(order_id)

    def put(self, order: Order) -> None:
        self.rows[order.order_id] = order


class SilentTopic:
    """A topic whose sends go nowhere."""

    async def send(self, key: bytes, value: bytes) -> None:
        return None
