"""OrderDB: the order service's table of orders."""

from __future__ import annotations

from typing import Any

from orderflow.domain.order import Order
from orderflow.records import order_from_bytes, order_to_bytes

__all__ = ["OrderTable"]


class OrderTable:
    """Typed access to the ``OrderDB`` Faust table (order id -> Order)."""

    NAME = "OrderDB"

    def __init__(self, app: Any, partitions: int) -> None:
        self.table = app.Table(
            self.NAME,
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            help="Orders by id, owned by the order service.",
        )

    def get(self, order_id: str) -> Order | None:
        raw = self.table.get(order_id.encode())
        return None if raw is None else order_from_bytes(raw)

    def put(self, order: Order) -> None:
        """Store (write inside stream iteration only: Faust sends the changelog entry)."""
        self.table[order.order_id.encode()] = order_to_bytes(order)
