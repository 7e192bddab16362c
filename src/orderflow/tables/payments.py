"""PaymentDB: the payment service's record of every charge attempt."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orderflow.domain.payment import PaymentRecord
from orderflow.records import payment_from_bytes, payment_to_bytes
from orderflow.tables.base import JsonTable, allow
from orderflow.topics import PAYMENT_TABLE

__all__ = ["PaymentTable"]


class PaymentTable(JsonTable[PaymentRecord]):
    """The ``PaymentDB`` Faust table (order id -> PaymentRecord), written by the payment service."""

    NAME = PAYMENT_TABLE

    def __init__(self, app: Any, partitions: int, before_write: Callable[[], None] = allow) -> None:
        super().__init__(
            app,
            self.NAME,
            partitions,
            payment_to_bytes,
            payment_from_bytes,
            lambda record: record.order_id,
            "Payment attempts by order id, owned by the payment service.",
            before_write,
        )
