"""OrderDB: the order service's table of orders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orderflow.domain.order import Order
from orderflow.records import order_from_bytes, order_to_bytes
from orderflow.tables.base import JsonTable, allow
from orderflow.topics import ORDER_TABLE

__all__ = ["OrderTable"]


class OrderTable(JsonTable[Order]):
    """The ``OrderDB`` Faust table (order id -> Order), written by the order service only."""

    NAME = ORDER_TABLE

    def __init__(self, app: Any, partitions: int, before_write: Callable[[], None] = allow) -> None:
        super().__init__(
            app,
            self.NAME,
            partitions,
            order_to_bytes,
            order_from_bytes,
            lambda order: order.order_id,
            "Orders by id, owned by the order service.",
            before_write,
        )
