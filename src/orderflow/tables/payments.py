"""PaymentDB: the payment service's record of every charge attempt."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from orderflow.domain.payment import PaymentRecord
from orderflow.records import payment_from_bytes, payment_to_bytes

__all__ = ["PaymentTable"]


class PaymentTable:
    """Typed access to the ``PaymentDB`` Faust table (order id -> PaymentRecord)."""

    NAME = "PaymentDB"

    def __init__(self, app: Any, partitions: int) -> None:
        self.table = app.Table(
            self.NAME,
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            help="Payment attempts by order id, owned by the payment service.",
        )

    def get(self, order_id: str) -> PaymentRecord | None:
        raw = self.table.get(order_id.encode())
        return None if raw is None else payment_from_bytes(raw)

    def put(self, record: PaymentRecord) -> None:
        self.table[record.order_id.encode()] = payment_to_bytes(record)

    def records(self) -> Iterator[PaymentRecord]:
        """Every record held locally (a full scan: for start-up and rebalances only)."""
        for raw in self.table.values():
            yield payment_from_bytes(raw)
