"""The order ids of Idempotency-Keys with this cluster's secret, partitioner and retention.

Used by the web layer (which id a POST names; resolving a 202's ``Location``) and by the order
service (which generation a PlaceOrder is stored in): both decide with ``domain/idempotency.py``
from the command's own time, so they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from orderflow.domain.idempotency import Slot, choose_slot, key_chain, order_id_for_key
from orderflow.domain.order import Order
from orderflow.tables.scan import order_partition

__all__ = ["KeyChains", "epoch"]


def epoch(rfc3339_text: str) -> float | None:
    try:
        return datetime.fromisoformat(rfc3339_text).timestamp()
    except ValueError:
        return None


class KeyChains:
    """The order ids of Idempotency-Keys (domain/idempotency.py) with this cluster's secret,
    partitioner and retention."""

    def __init__(self, secret: bytes, partitions: int, retention_s: float) -> None:
        self.secret = secret
        self.partitions = partitions
        self.retention_s = retention_s

    def gen0(self, client_id: str, key: str) -> str:
        return order_id_for_key(self.secret, client_id, key)

    def partition_of(self, order_id: str) -> int:
        return order_partition(order_id, self.partitions)

    def slot(self, gen0_id: str, lookup: Callable[[str], Order | None], at: float) -> Slot[Order]:
        """The generation a command for ``gen0_id`` written at ``at`` names."""
        chain = key_chain(self.secret, gen0_id, self.partition_of, self.partitions)

        def created(order: Order) -> float:
            # An unreadable time: treated as live (never replaced by a new generation).
            stored = epoch(order.created_at)
            return at if stored is None else stored

        return choose_slot(chain, lookup, created, at, self.retention_s)
