"""PaymentDB: the payment service's record of every charge attempt."""

from __future__ import annotations

from typing import Any

from orderflow.domain.payment import PaymentRecord
from orderflow.tables.base import JsonTable
from orderflow.wire import payment_from_bytes, payment_to_bytes

__all__ = ["PaymentTable"]


class PaymentTable(JsonTable[PaymentRecord]):
    """The ``PaymentDB`` Faust table (order id -> PaymentRecord), written by the payment service."""

    NAME = "PaymentDB"

    def __init__(self, app: Any, partitions: int) -> None:
        super().__init__(
            app,
            self.NAME,
            partitions,
            payment_to_bytes,
            payment_from_bytes,
            lambda record: record.order_id,
            "Payment attempts by order id, owned by the payment service.",
        )
