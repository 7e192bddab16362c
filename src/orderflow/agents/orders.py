"""The order service: places orders (OrderDB + ``order.created``) and records payment outcomes."""

from __future__ import annotations

import logging
import time
from typing import Any

from orderflow.agents.dead_letters import DeadLetters
from orderflow.domain.errors import EventDecodeError
from orderflow.domain.events import PaymentCompleted, PaymentFailed, PlaceOrder, rfc3339
from orderflow.domain.order import PlacementKind, apply_payment, place_order
from orderflow.records import decode_event, encode_event
from orderflow.tables import OrderTable
from orderflow.topics import ORDER_COMMANDS, PAYMENT_COMPLETED, PAYMENT_FAILED
from orderflow.watch import OrderWatch

__all__ = ["OrderService"]

log = logging.getLogger(__name__)

_EXPECTED_TYPE = {
    ORDER_COMMANDS: PlaceOrder.event_type,
    PAYMENT_COMPLETED: PaymentCompleted.event_type,
    PAYMENT_FAILED: PaymentFailed.event_type,
}


class OrderService:
    """Handles one event at a time; never raises (failures go to the dead-letter topic)."""

    def __init__(
        self, orders: OrderTable, order_created: Any, dead_letters: DeadLetters, watch: OrderWatch
    ) -> None:
        self.orders = orders
        self.order_created = order_created
        self.dead_letters = dead_letters
        self.watch = watch

    async def handle(self, event: Any) -> None:
        await self.dead_letters.guard(event, self._handle)

    async def _handle(self, event: Any) -> None:
        message = event.message
        decoded = decode_event(message.value, _EXPECTED_TYPE.get(message.topic))
        if message.key != decoded.order_id.encode():
            # The key decides the partition, hence the single writer of this order.
            raise EventDecodeError(f"key {message.key!r} differs from order_id")
        if isinstance(decoded, PlaceOrder):
            await self._place(decoded)
        elif isinstance(decoded, PaymentCompleted | PaymentFailed):
            await self._record_payment(event, decoded)

    async def _place(self, command: PlaceOrder) -> None:
        placement = place_order(self.orders.get(command.order_id), command)
        if placement.kind is PlacementKind.CREATED:
            self.orders.put(placement.order)
        elif placement.kind is PlacementKind.CONFLICT:
            log.info("order %s: idempotency key reused with another body", command.order_id)
        if placement.publish is not None:
            await self.order_created.send(
                key=command.order_id.encode(), value=encode_event(placement.publish)
            )
        self.watch.notify(command.order_id)

    async def _record_payment(self, event: Any, payment: PaymentCompleted | PaymentFailed) -> None:
        order = self.orders.get(payment.order_id)
        if order is None:
            await self.dead_letters.send(event, "payment result for an unknown order")
            return
        transition = apply_payment(order, payment, rfc3339(time.time()))
        if transition.changed:
            self.orders.put(transition.order)
            self.watch.notify(order.order_id)
        elif transition.anomaly:
            await self.dead_letters.send(event, f"refused: {transition.reason}")
