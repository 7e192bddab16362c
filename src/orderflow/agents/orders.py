"""The order service: places, cancels and refunds orders (OrderDB, and the events that ask the
payment service to act), and records payment and refund outcomes."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from aiokafka.errors import KafkaError

from orderflow.agents.downstream import DownstreamGates, DownstreamProgress
from orderflow.agents.progress import CommandProgress, CommandRecord
from orderflow.agents.webhooks import WebhookOutbox
from orderflow.domain.backoff import Backoff
from orderflow.domain.errors import EventDecodeError
from orderflow.domain.events import (
    CancelOrder,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    PlaceOrder,
    RefundFailed,
    RefundOrder,
    rfc3339,
)
from orderflow.domain.order import (
    Answer,
    Order,
    OrderDecision,
    OrderStatus,
    PlacementKind,
    Transition,
    apply_payment,
    apply_refund,
    cancel_order,
    place_order,
    refund_order,
)
from orderflow.keychains import KeyChains, epoch
from orderflow.logs import order_context
from orderflow.ports import Clock, DeadLetterSink, InboundEvent, OrderStore, Publisher
from orderflow.tables.scan import PartitionScan, elsewhere, order_partition
from orderflow.topics import (
    ORDER_COMMANDS,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_REFUNDED,
    REFUND_FAILED,
    WEBHOOK_ATTEMPTS,
)
from orderflow.tracing import consuming
from orderflow.watch import OrderWatch
from orderflow.wire import decode_event

__all__ = ["CommandAnswers", "CommandReader", "OrderService", "StalledOrders"]

log = logging.getLogger(__name__)

# What each input topic may carry (anything else on it is dead-lettered, named).
_EXPECTED_TYPES: dict[str, tuple[type[Any], ...]] = {
    ORDER_COMMANDS: (PlaceOrder, CancelOrder, RefundOrder),
    PAYMENT_COMPLETED: (PaymentCompleted,),
    PAYMENT_FAILED: (PaymentFailed,),
    PAYMENT_REFUNDED: (PaymentRefunded,),
    REFUND_FAILED: (RefundFailed,),
}


class StalledOrders:
    """PENDING orders, and orders awaiting a refund's answer, and when to nudge each again if it
    has not moved (in memory).

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
        self.last_pass = float("-inf")  # when the nudge last looked for due orders
        self.blocked = False  # a due order waited for its partition to settle at that pass
        self.gates = DownstreamGates(patience=stall_after)  # stalled, or only queued?
        self._partition_of: dict[str, int] = {}

    def track(self, order: Order, now: float, *, written: bool = False) -> None:
        """Index ``order`` as read (a rescan: due ``stall_after`` after its stored time) or as
        just ``written`` by this worker (due ``stall_after`` from now: a command handled late,
        behind a backlog, stores its own old time, and its records have only now been sent)."""
        if order.status.is_terminal and not order.awaiting_money:
            self.forget(order.order_id)
        else:
            since = now if written else _stored_time(order.updated_at, now)
            self.due_at.setdefault(order.order_id, min(now, since) + self.stall_after)

    def assigned(
        self, owned: set[int], *, rescan_all: bool = False, rescan: Iterable[int] = ()
    ) -> None:
        """A new assignment: read the new partitions, forget the ones that moved away."""
        self.scan.assigned(owned, rescan_all=rescan_all, rescan=rescan)
        self.gates.forget(owned)
        for order_id in elsewhere(self.due_at, owned, self.partitions):
            self.forget(order_id)

    def forget(self, order_id: str) -> None:
        self.due_at.pop(order_id, None)
        self.nudges.pop(order_id, None)
        self._partition_of.pop(order_id, None)

    def partition_of(self, order_id: str, partitions: int) -> int:
        """The order's partition, remembered while it is due (a pass under a backlog asks it of
        tens of thousands of orders: 5 µs each)."""
        partition = self._partition_of.get(order_id)
        if partition is None:
            partition = self._partition_of[order_id] = order_partition(order_id, partitions)
        return partition

    def pass_due(self, now: float, every: float) -> bool:
        """Whether the nudge looks for due orders now: every ``every`` seconds, and sooner while
        newly assigned partitions wait to be read or a due order waits for its partition to
        settle. Under constant rebalances a worker may own its partitions for a few seconds at a
        time, and a look every ``every`` seconds can miss those windows again and again."""
        if 0 <= now - self.last_pass < every and not self.scan.pending and not self.blocked:
            return False  # (a clock set back passes at once: no wait for it to catch up)
        self.last_pass = now
        return True

    def due(self, now: float) -> list[str]:
        """Orders due for a nudge (``nudged`` reschedules each one actually nudged)."""
        return [order_id for order_id, at in self.due_at.items() if at <= now]

    def split_due(self, order_ids: list[str], when: float) -> tuple[list[str], list[str]]:
        """``order_ids`` split into those already due at ``when`` and the others."""
        by: list[str] = []
        after: list[str] = []
        for order_id in order_ids:
            (by if self.due_at.get(order_id, when + 1) <= when else after).append(order_id)
        return by, after

    def nudged(self, order_id: str, now: float) -> None:
        """Reschedule a nudged order with a doubling, capped delay."""
        n = self.nudges[order_id] = self.nudges.get(order_id, 0) + 1
        # The n-th nudge waits stall_after * 2**n, at most cap (default: 60, 120, 240, then 300 s).
        self.due_at[order_id] = now + Backoff(base=self.stall_after, cap=self.cap).delay(n)


def _stored_time(rfc3339_text: str, default: float) -> float:
    try:
        return datetime.fromisoformat(rfc3339_text).timestamp()
    except ValueError:
        return default


@dataclass(frozen=True)
class CommandAnswer:
    """How the order service answered one cancel or refund command (by its request id)."""

    answer: Answer
    reason: str
    field: str


class CommandAnswers:
    """The latest answers to cancel and refund commands, for the HTTP request waiting on each
    (in memory, bounded: a request that waits longer reads the order itself)."""

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self._answers: dict[str, CommandAnswer] = {}

    def record(self, request_id: str, answer: Answer, reason: str, field: str) -> None:
        self._answers.pop(request_id, None)
        self._answers[request_id] = CommandAnswer(answer, reason, field)
        while len(self._answers) > self.keep:  # the oldest first (dicts keep insertion order)
            del self._answers[next(iter(self._answers))]

    def get(self, request_id: str) -> CommandAnswer | None:
        return self._answers.get(request_id)


class CommandReader(Protocol):
    """What the stall nudge reads of the command topic (``CommandLog``, or a fake)."""

    async def beginning(self, partition: int) -> int: ...
    async def end(self, partition: int) -> int: ...
    async def read(self, partition: int, start: int, stop: int) -> list[CommandRecord]: ...


@dataclass(eq=False)
class OrderService:
    """Handles one event at a time; failures go to the dead-letter topic, never out of the loop."""

    orders: OrderStore
    publisher: Publisher  # order.created
    dead_letters: DeadLetterSink
    watch: OrderWatch
    stalled: StalledOrders
    clock: Clock = time.time
    progress: CommandProgress | None = None
    # None: keyed commands are stored under their own id (no retention, tests only).
    chains: KeyChains | None = None
    # None: every due order is nudged, queued or not (no downstream consumers to ask: tests).
    downstream: DownstreamProgress | None = None
    # The nudge's own reader of the command topic (never the hot path's: a slow read for a
    # stalled order must not hold the lock ``progress.missing_before`` waits on).
    commands: CommandReader | None = None
    # Observers (the app's metrics): an order stored, an order that reached its end.
    on_created: Callable[[Order], None] | None = None
    on_terminal: Callable[[Order], None] | None = None
    # Per command partition and tick, the nudge reads the commands of at most this many stalled
    # orders, within this many offsets, in one range read (an outage leaves thousands PENDING).
    nudge_batch: int = 200
    nudge_span: int = 2000
    decisions: CommandAnswers = field(default_factory=CommandAnswers)
    # The webhook outbox (WebhookDB): told of every order an event leaves; None: no webhooks.
    webhooks: WebhookOutbox | None = None
    partitions: int | None = field(init=False)

    def __post_init__(self) -> None:
        progress = self.progress
        self.partitions = progress.partitions if progress is not None else self.stalled.partitions

    async def handle(self, event: InboundEvent) -> None:
        """Handle one command or payment result; what fails goes to the dead letters."""
        with consuming(event):  # order.created's publish nests under it
            await self._handle_command_or_result(event)

    async def _handle_command_or_result(self, event: InboundEvent) -> None:
        message = event.message
        commands = self.progress if message.topic == ORDER_COMMANDS else None
        if commands is None:
            await self.dead_letters.guard(event, self._handle)
            return
        # A command ahead of a hole: the commands before it first (the first PlaceOrder of an
        # Idempotency-Key wins), read from Kafka; Faust delivers them again later (duplicates).
        in_order: list[InboundEvent] = [
            *await commands.missing_before(message.partition, message.offset),
            event,
        ]
        for command in in_order:
            with order_context(command.message.key):  # each one's lines name its own order
                await self.dead_letters.guard(command, self._handle)
            commands.handled(message.partition, command.message.offset)

    async def _handle(self, event: InboundEvent) -> None:
        message = event.message
        if message.topic == WEBHOOK_ATTEMPTS:
            if self.webhooks is not None:
                self.webhooks.handle(message)
            return
        expected = _EXPECTED_TYPES.get(message.topic, ())
        decoded = decode_event(
            message.value, expected[0].event_type if len(expected) == 1 else None
        )
        if expected and not isinstance(decoded, expected):
            allowed = ", ".join(repr(t.event_type) for t in expected)
            raise EventDecodeError(f"event_type: {decoded.event_type!r} where {allowed} belong")
        if message.key != decoded.order_id.encode():
            # The key decides the partition, hence the single writer of this order.
            raise EventDecodeError(f"key {message.key!r} differs from order_id")
        if isinstance(decoded, PlaceOrder):
            await self._place(decoded, message.offset)
        elif isinstance(decoded, PaymentCompleted | PaymentFailed):
            await self._record_payment(event, decoded)
        elif isinstance(decoded, CancelOrder | RefundOrder):
            await self._decide(decoded)
        elif isinstance(decoded, PaymentRefunded | RefundFailed):
            await self._record_refund(event, decoded)

    async def _place(self, command: PlaceOrder, offset: int) -> None:
        key_order_id = command.order_id
        existing = self.orders.get(command.order_id)
        at = epoch(command.occurred_at)
        if command.keyed and self.chains is not None and at is not None:
            # The key's live generation, or the first empty one once it has expired: decided
            # from the command's own time, so a redelivery decides the same, and a GET of the
            # 202's Location (generation 0 + this time) finds the same order.
            slot = self.chains.slot(command.order_id, self.orders.get, at)
            command = dataclasses.replace(command, order_id=slot.order_id)
            existing = slot.existing
        placement = place_order(existing, command)
        if placement.kind is PlacementKind.CREATED:
            # Where the token is, for a later nudge (OrderDB never holds the token itself).
            self.orders.put(replace(placement.order, command_offset=offset))
            if self.on_created is not None:
                self.on_created(placement.order)
        elif placement.kind is PlacementKind.CONFLICT:
            log.info("order %s: idempotency key reused with another body", command.order_id)
        if placement.kind is not PlacementKind.CONFLICT:
            self.stalled.track(placement.order, self.clock(), written=True)
        if placement.publish is not None:
            await self.publisher.publish(placement.publish)
        if placement.kind is not PlacementKind.CONFLICT:
            await self._tell_webhooks(placement.order)
        self.watch.notify(command.order_id)
        if key_order_id != command.order_id:
            self.watch.notify(key_order_id)  # POSTs and GETs wait under the key's first id

    async def _record_payment(
        self, event: InboundEvent, payment: PaymentCompleted | PaymentFailed
    ) -> None:
        order = self.orders.get(payment.order_id)
        if order is None:
            await self.dead_letters.send(event, "payment result for an unknown order")
            return
        transition = apply_payment(order, payment, rfc3339(time.time()))
        await self._apply(event, order, transition)

    async def _record_refund(
        self, event: InboundEvent, outcome: PaymentRefunded | RefundFailed
    ) -> None:
        order = self.orders.get(outcome.order_id)
        if order is None:
            await self.dead_letters.send(event, "refund result for an unknown order")
            return
        await self._apply(event, order, apply_refund(order, outcome, rfc3339(time.time())))

    async def _apply(self, event: InboundEvent, order: Order, transition: Transition) -> None:
        """Store a changed order, tell who waits, publish what it asks; park an anomaly."""
        if transition.changed:
            self.orders.put(transition.order)
            self.stalled.track(transition.order, self.clock(), written=True)
            self.watch.notify(order.order_id)
            ended = order.status is OrderStatus.PENDING and transition.order.status.is_terminal
            if self.on_terminal is not None and ended:
                self.on_terminal(transition.order)
        for published in transition.publish:
            await self.publisher.publish(published)
        await self._tell_webhooks(transition.order)
        if transition.anomaly:
            await self.dead_letters.send(event, f"refused: {transition.reason}")

    async def _decide(self, command: CancelOrder | RefundOrder) -> None:
        """A cancel or refund command: the domain decides; the web view reads the order after
        (``decisions`` keeps why a command changed nothing, for its answer)."""
        order = self.orders.get(command.order_id)
        if order is None:
            # The web view asks only of orders it found; one gone since (a key's expired
            # generation) is answered from the order's absence.
            log.info("%s for unknown order %s: ignored", command.event_type, command.order_id)
            self.decisions.record(command.request_id, Answer.REFUSED, "no such order", "")
            self.watch.notify(command.order_id)
            return
        now = rfc3339(time.time())
        decision: OrderDecision = (
            cancel_order(order, command, now)
            if isinstance(command, CancelOrder)
            else refund_order(order, command, now)
        )
        if decision.answer is Answer.ACCEPTED:
            self.orders.put(decision.order)
            self.stalled.track(decision.order, self.clock(), written=True)
            if self.on_terminal is not None and decision.order.status is OrderStatus.CANCELLED:
                self.on_terminal(decision.order)
        self.decisions.record(command.request_id, decision.answer, decision.reason, decision.field)
        for published in decision.publish:
            await self.publisher.publish(published)
        await self._tell_webhooks(decision.order)
        self.watch.notify(command.order_id)

    async def _tell_webhooks(self, order: Order) -> None:
        """Every event handled, changed or not: a redelivery makes the event a crash lost."""
        if self.webhooks is not None:
            await self.webhooks.observe(order)

    async def nudge_paced(self, is_owner: Callable[[str], bool], every: float) -> int:
        """``nudge_stalled`` when ``StalledOrders.pass_due`` says so (the app calls this often)."""
        if not self.stalled.pass_due(self.clock(), every):
            return 0
        return await self.nudge_stalled(is_owner)

    async def nudge_stalled(self, is_owner: Callable[[str], bool]) -> int:
        """Publish ``order.created`` again for orders PENDING too long, and what asks for a
        refund or a compensation for orders awaiting one too long; returns how many."""
        now = self.clock()
        if self.stalled.scan.pending:
            await self._index_new_partitions(now)
            now = self.clock()
        due = self._due_orders(await self._past_downstream(self.stalled.due(now), now), is_owner)
        nudged = 0
        for order in [o for o in due if o.status.is_terminal]:  # owed a refund's answer
            self.stalled.nudged(order.order_id, now)
            log.warning(
                "order %s still awaits the payment service (%s): asking again (nudge %d)",
                order.order_id,
                ", ".join(e.event_type for e in order.money_events()),
                self.stalled.nudges[order.order_id],
            )
            for event in order.money_events():
                await self.publisher.publish(event)
            nudged += 1
        due = [o for o in due if not o.status.is_terminal]
        tokens = await self._payment_tokens(due)
        for order in due:
            order_id = order.order_id
            if order_id not in tokens:
                continue  # its command is read at a later tick (a bounded read per tick)
            self.stalled.nudged(order_id, now)
            token = tokens[order_id]
            if token is None:
                continue  # its command could not be read now (logged): again after the backoff
            await self._nudge(order, token)
            nudged += 1
        return nudged

    async def _index_new_partitions(self, now: float) -> None:
        """Read the newly assigned OrderDB partitions into the stalled-order index."""
        log.info(
            "stalled-order index: reading OrderDB partition(s) %s",
            sorted(self.stalled.scan.pending),
        )
        read = await self.stalled.scan.run(
            self.orders.partition_rows,
            self.orders.decode,
            lambda order: self.stalled.track(order, now),
        )
        log.info(
            "stalled-order index: read %d OrderDB row(s), %d PENDING",
            read,
            len(self.stalled.due_at),
        )

    async def _past_downstream(self, due: list[str], now: float) -> list[str]:
        """The due orders whose downstream consumers have read past them (``DownstreamGates``):
        stalled, not queued behind a backlog."""
        if self.downstream is None or self.partitions is None or not due:
            return due
        by_partition: dict[int, list[str]] = {}
        for order_id in due:
            partition = self.stalled.partition_of(order_id, self.partitions)
            by_partition.setdefault(partition, []).append(order_id)
        gates, past = self.stalled.gates, []
        for partition, order_ids in by_partition.items():
            committed = self.downstream.committed(partition)
            if any(offset is None for offset in committed.values()):
                past += order_ids  # not all read here (a move): no way to tell, nudge as before
                continue
            cleared = gates.cleared_until(partition)
            if cleared is not None:  # a gate opened already: those due by then went through
                through, order_ids = self.stalled.split_due(order_ids, cleared)
                past += through
                if not order_ids:
                    continue
            try:
                if await self._gate_opened(partition, committed, now):
                    past += self.stalled.split_due(order_ids, gates.open(partition))[0]
            except (KafkaError, OSError) as exc:
                log.warning("partition %d: end offsets not known (%r)", partition, exc)
                continue  # those orders wait for the next pass
        return past

    async def _gate_opened(
        self, partition: int, committed: Mapping[str, int | None], now: float
    ) -> bool:
        """Arm the partition's gate if needed and take it through every stage that has passed."""
        assert self.downstream is not None
        gates, stages = self.stalled.gates, self.downstream.stages
        if not gates.armed(partition):
            ends = await self.downstream.ends(partition, stages[0])
            gates.arm(partition, ends, committed, now)
        while gates.passed(partition, committed, now):
            following = gates.stage(partition) + 1
            if following == len(stages):
                return True
            ends = await self.downstream.ends(partition, stages[following])
            gates.arm(partition, ends, committed, now)
        return False

    def _due_orders(self, due_ids: list[str], is_owner: Callable[[str], bool]) -> list[Order]:
        """The stored orders of ``due_ids`` still PENDING or awaiting money that this worker
        owns."""
        due: list[Order] = []
        self.stalled.blocked = False
        for order_id in due_ids:
            order = self.orders.get(order_id)
            if order is None or (order.status.is_terminal and not order.awaiting_money):
                self.stalled.forget(order_id)
                continue
            if not is_owner(order_id):
                # A standby copy (its owner nudges it), or the partition is moving: asked again
                # at the next tick, with no backoff spent (rebalances must not defer the nudge).
                self.stalled.blocked = True
                continue
            due.append(order)
        return due

    async def _nudge(self, order: Order, token: str) -> None:
        """Publish the order's ``order.created`` again ("" token: its PlaceOrder is gone)."""
        log.warning(
            "order %s still PENDING: publishing order.created again (nudge %d)",
            order.order_id,
            self.stalled.nudges[order.order_id],
        )
        if not token:
            # Without a token the copy cannot charge: the payment service finishes it from
            # PaymentDB (settled, attempting, unknown), else dead-letters it for a person.
            log.error(
                "order %s: its PlaceOrder is gone; order.created sent without a payment token",
                order.order_id,
            )
        await self.publisher.publish(order.created_event(token))

    async def _payment_tokens(self, orders: list[Order]) -> dict[str, str | None]:
        """The payment token of each order whose command is read this tick.

        "": gone for good (no ``command_offset``, or the command expired with the topic's
        retention): the nudge goes without one. None: not readable now (the broker): nudged at
        a later tick. Orders left out wait for a later tick: at most ``nudge_batch`` orders,
        within ``nudge_span`` offsets, per partition and tick, read in one range.
        """
        tokens: dict[str, str | None] = {}
        by_partition: dict[int, list[Order]] = {}
        for order in orders:
            if order.legacy_payment_token:  # stored before command_offset: the row's own token
                tokens[order.order_id] = order.legacy_payment_token
            elif self.commands is None or self.partitions is None or order.command_offset is None:
                tokens[order.order_id] = ""
            else:
                partition = order_partition(order.order_id, self.partitions)
                by_partition.setdefault(partition, []).append(order)
        for partition, waiting in by_partition.items():
            tokens.update(await self._read_tokens(partition, waiting))
        return tokens

    async def _read_tokens(self, partition: int, orders: list[Order]) -> dict[str, str | None]:
        assert self.commands is not None
        try:
            # Below the log start, a seek would reset to the earliest record and the read wait
            # for its timeout: such a command is gone, known from one ListOffsets request.
            first, end = (
                await self.commands.beginning(partition),
                await self.commands.end(partition),
            )
        except (KafkaError, OSError) as exc:
            log.warning(
                "command partition %d: offsets not known (%r): %d nudge(s) wait",
                partition,
                exc,
                len(orders),
            )
            return dict.fromkeys((o.order_id for o in orders), None)
        tokens: dict[str, str | None] = {}
        readable = self._readable(partition, orders, first, end, tokens)
        if readable:
            tokens.update(await self._tokens_of(partition, readable))
        return tokens

    def _readable(
        self, partition: int, orders: list[Order], first: int, end: int, gone: dict[str, str | None]
    ) -> list[Order]:
        """The orders whose commands one bounded range read fetches this tick, by offset.

        Those whose command is outside ``first..end-1`` (expired) get "" in ``gone``.
        """
        readable: list[Order] = []
        for order in sorted(orders, key=lambda o: o.command_offset or 0):
            offset = order.command_offset or 0
            if offset < first or offset >= end:
                log.warning(
                    "order %s: its PlaceOrder at %s:%d:%d is gone (the partition holds %d..%d)",
                    order.order_id,
                    ORDER_COMMANDS,
                    partition,
                    offset,
                    first,
                    end - 1,
                )
                gone[order.order_id] = ""
            elif len(readable) < self.nudge_batch and (
                not readable or offset - (readable[0].command_offset or 0) < self.nudge_span
            ):
                readable.append(order)
        return readable

    async def _tokens_of(self, partition: int, readable: list[Order]) -> dict[str, str | None]:
        """The tokens of ``readable`` (sorted by offset) from one range read; None if it fails."""
        assert self.commands is not None
        start, stop = readable[0].command_offset or 0, (readable[-1].command_offset or 0) + 1
        try:
            records = await self.commands.read(partition, start, stop)
        except (KafkaError, OSError) as exc:  # TimeoutError included
            log.warning(
                "command partition %d: offsets %d..%d could not be read (%r): %d nudge(s) wait",
                partition,
                start,
                stop - 1,
                exc,
                len(readable),
            )
            return dict.fromkeys((o.order_id for o in readable), None)
        at = {r.offset: r for r in records}
        return {
            order.order_id: _token_in(order, at.get(order.command_offset or 0), partition)
            for order in readable
        }


def _token_in(order: Order, record: CommandRecord | None, partition: int) -> str:
    """The token of the order's PlaceOrder in ``record``; "" when it is not there (gone)."""
    try:
        command = decode_event(record.value, PlaceOrder.event_type) if record else None
    except EventDecodeError as exc:
        log.warning(
            "order %s: the record at its command offset does not decode (%s)", order.order_id, exc
        )
        return ""
    # Its own command: the same order id, or (a key's later generation, placed under another
    # id of the same partition) the command keyed by generation 0 whose request made it.
    if not isinstance(command, PlaceOrder) or (
        command.order_id != order.order_id and command.request_id != order.request_id
    ):
        log.warning(
            "order %s: no PlaceOrder of it at %s:%d:%s (expired?)",
            order.order_id,
            ORDER_COMMANDS,
            partition,
            order.command_offset,
        )
        return ""
    return command.payment_token
