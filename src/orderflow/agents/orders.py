"""The order service: places orders (OrderDB + ``order.created``) and records payment outcomes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from aiokafka.errors import KafkaError

from orderflow.agents.dead_letters import DeadLetters
from orderflow.agents.progress import CommandProgress
from orderflow.domain.errors import EventDecodeError
from orderflow.domain.events import PaymentCompleted, PaymentFailed, PlaceOrder, rfc3339
from orderflow.domain.order import Order, PlacementKind, apply_payment, place_order
from orderflow.logs import order_context
from orderflow.records import decode_event, encode_event
from orderflow.tables import OrderTable
from orderflow.tables.scan import PartitionScan, elsewhere, order_partition
from orderflow.topics import ORDER_COMMANDS, PAYMENT_COMPLETED, PAYMENT_FAILED
from orderflow.tracing import consuming
from orderflow.watch import OrderWatch

__all__ = ["OrderService", "StalledOrders"]

log = logging.getLogger(__name__)

_EXPECTED_TYPE = {
    ORDER_COMMANDS: PlaceOrder.event_type,
    PAYMENT_COMPLETED: PaymentCompleted.event_type,
    PAYMENT_FAILED: PaymentFailed.event_type,
}


class StalledOrders:
    """PENDING orders and when to nudge each again if it has not moved (in memory).

    The safety net under at-least-once: whatever lost an order's progress (an event acked but
    not processed at shutdown, a publish lost with a broker, a handler that failed on an
    infrastructure error), publishing ``order.created`` again restarts it, and every consumer
    downstream is idempotent. Filled from OrderDB's newly assigned partitions after each rebalance.

    An order is due ``stall_after`` after its own stored ``updated_at``, and a due time once known
    is kept, so rescans (rebalances) never push a stalled order's nudge back.
    """

    def __init__(
        self, stall_after: float, cap: float = 300.0, partitions: int | None = None
    ) -> None:
        self.partitions = partitions  # None: never forgets (a single worker owning everything)
        self.stall_after = stall_after
        self.cap = cap
        self.due_at: dict[str, float] = {}
        self.nudges: dict[str, int] = {}
        self.scan = PartitionScan()

    def track(self, order: Order, now: float) -> None:
        if order.status.is_terminal:
            self.due_at.pop(order.order_id, None)
            self.nudges.pop(order.order_id, None)
        else:
            since = _stored_time(order.updated_at, now)
            self.due_at.setdefault(order.order_id, min(now, since) + self.stall_after)

    def assigned(self, owned: set[int], *, rescan_all: bool = False) -> None:
        """A new assignment: read the new partitions, forget the ones that moved away."""
        self.scan.assigned(owned, rescan_all=rescan_all)
        for order_id in elsewhere(self.due_at, owned, self.partitions):
            del self.due_at[order_id]
            self.nudges.pop(order_id, None)

    def due(self, now: float) -> list[str]:
        """Orders due for a nudge (``nudged`` reschedules each one actually nudged)."""
        return [order_id for order_id, at in self.due_at.items() if at <= now]

    def nudged(self, order_id: str, now: float) -> None:
        """Reschedule a nudged order with a doubling, capped delay."""
        n = self.nudges[order_id] = self.nudges.get(order_id, 0) + 1
        self.due_at[order_id] = now + min(self.cap, self.stall_after * 2 ** min(n, 16))


def _stored_time(rfc3339_text: str, default: float) -> float:
    try:
        return datetime.fromisoformat(rfc3339_text).timestamp()
    except ValueError:
        return default


class OrderService:
    """Handles one event at a time; failures go to the dead-letter topic, never out of the loop."""

    def __init__(
        self,
        orders: OrderTable,
        order_created: Any,
        dead_letters: DeadLetters,
        watch: OrderWatch,
        stalled: StalledOrders,
        clock: Callable[[], float] = time.time,
        progress: CommandProgress | None = None,
    ) -> None:
        self.orders = orders
        self.progress = progress
        self.order_created = order_created
        self.dead_letters = dead_letters
        self.watch = watch
        self.stalled = stalled
        self.clock = clock
        # Observers (the app's metrics): an order stored, an order that reached its end.
        self.on_created: Callable[[Order], None] | None = None
        self.on_terminal: Callable[[Order], None] | None = None

    async def handle(self, event: Any) -> None:
        with consuming(event):  # order.created's publish nests under it
            await self._handle_command_or_result(event)

    async def _handle_command_or_result(self, event: Any) -> None:
        message = event.message
        commands = self.progress if message.topic == ORDER_COMMANDS else None
        if commands is None:
            await self.dead_letters.guard(event, self._handle)
            return
        # A command ahead of a hole: the commands before it first (the first PlaceOrder of an
        # Idempotency-Key wins), read from Kafka; Faust delivers them again later (duplicates).
        for command in [*await commands.missing_before(message.partition, message.offset), event]:
            with order_context(command.message.key):  # each one's lines name its own order
                await self.dead_letters.guard(command, self._handle)
            commands.handled(message.partition, command.message.offset)

    async def _handle(self, event: Any) -> None:
        message = event.message
        decoded = decode_event(message.value, _EXPECTED_TYPE.get(message.topic))
        if message.key != decoded.order_id.encode():
            # The key decides the partition, hence the single writer of this order.
            raise EventDecodeError(f"key {message.key!r} differs from order_id")
        if isinstance(decoded, PlaceOrder):
            await self._place(decoded, message.offset)
        elif isinstance(decoded, PaymentCompleted | PaymentFailed):
            await self._record_payment(event, decoded)

    async def _place(self, command: PlaceOrder, offset: int) -> None:
        placement = place_order(self.orders.get(command.order_id), command)
        if placement.kind is PlacementKind.CREATED:
            # Where the token is, for a later nudge (OrderDB never holds the token itself).
            self.orders.put(replace(placement.order, command_offset=offset))
            if self.on_created is not None:
                self.on_created(placement.order)
        elif placement.kind is PlacementKind.CONFLICT:
            log.info("order %s: idempotency key reused with another body", command.order_id)
        if placement.kind is not PlacementKind.CONFLICT:
            self.stalled.track(placement.order, self.clock())
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
            self.stalled.track(transition.order, self.clock())
            self.watch.notify(order.order_id)
            if self.on_terminal is not None and transition.order.status.is_terminal:
                self.on_terminal(transition.order)
        elif transition.anomaly:
            await self.dead_letters.send(event, f"refused: {transition.reason}")

    async def nudge_stalled(self, is_owner: Callable[[str], bool]) -> int:
        """Publish ``order.created`` again for orders PENDING too long; returns how many."""
        now = self.clock()
        if self.stalled.scan.pending:
            log.info("stalled-order index: reading OrderDB partition(s) %s",
                     sorted(self.stalled.scan.pending))  # fmt: skip
            read = await self.stalled.scan.run(
                self.orders.partition_rows, self.orders.decode,
                lambda order: self.stalled.track(order, now),
            )  # fmt: skip
            log.info("stalled-order index: read %d OrderDB row(s), %d PENDING", read,
                     len(self.stalled.due_at))  # fmt: skip
            now = self.clock()
        nudged = 0
        for order_id in self.stalled.due(now):
            order = self.orders.get(order_id)
            if order is None or order.status.is_terminal:
                self.stalled.due_at.pop(order_id, None)
                continue
            if not is_owner(order_id):
                # A standby copy (its owner nudges it), or the partition is moving: asked again
                # at the next tick, with no backoff spent (rebalances must not defer the nudge).
                continue
            self.stalled.nudged(order_id, now)
            log.warning("order %s still PENDING: publishing order.created again (nudge %d)",
                        order_id, self.stalled.nudges[order_id])  # fmt: skip
            token = await self._payment_token(order)
            if not token:
                # Nothing a copy could be charged with (an order.created needs the token); the
                # payment may still settle from PaymentDB (the reconciler), else a person must.
                log.error("order %s still PENDING and its PlaceOrder is gone: not nudged",
                          order_id)  # fmt: skip
                continue
            await self.order_created.send(
                key=order_id.encode(), value=encode_event(order.created_event(token))
            )
            nudged += 1
        return nudged

    async def _payment_token(self, order: Order) -> str:
        """The order's payment token, read from its PlaceOrder command on the command topic.

        "" when it cannot be read: the command expired with the topic's retention (an order
        PENDING that long has a bigger problem), or the order was stored before
        ``command_offset`` existed.
        """
        if self.progress is None or order.command_offset is None:
            return ""
        partition, offset = (
            order_partition(order.order_id, self.progress.partitions),
            order.command_offset,
        )
        try:
            records = await self.progress.commands.read(partition, offset, offset + 1)
            command = decode_event(records[0].value, PlaceOrder.event_type) if records else None
        except (EventDecodeError, KafkaError, OSError) as exc:
            log.warning("order %s: its PlaceOrder at %d:%d could not be read (%s)",
                        order.order_id, partition, offset, exc)  # fmt: skip
            return ""
        if not isinstance(command, PlaceOrder) or command.order_id != order.order_id:
            log.warning("order %s: no PlaceOrder of it at %s:%d:%d (expired?)",
                        order.order_id, ORDER_COMMANDS, partition, offset)  # fmt: skip
            return ""
        return command.payment_token
