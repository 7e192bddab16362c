"""The payment service: charges each order once through the gateway and publishes the outcome;
voids or compensates cancelled orders; refunds (``agents/refunds.py``).

Charging is safe to repeat: the gateway idempotency key is derived from the order id, so a
redelivered ``order.created`` (crash, rebalance, duplicate) gets the first charge's answer back.
A cancelled order is never charged: before any attempt its payment is VOIDED; when a charge may
have reached the gateway, the reconciler asks once a request still travelling has landed, and a
charge found taken is refunded whole (the compensation). Gateway calls of one batch run
concurrently, one task per order, while one order's events stay in order inside its task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial

from orderflow.agents.refunds import PaymentRefunds
from orderflow.domain.errors import (
    ChargeMismatchError,
    EventDecodeError,
    PaymentTokenGoneError,
)
from orderflow.domain.events import (
    OrderCancelled,
    OrderCreated,
    PaymentCompleted,
    PaymentFailed,
    RefundRequested,
    rfc3339,
)
from orderflow.domain.payment import (
    Approved,
    CancelAction,
    Declined,
    GatewayCharge,
    PaymentAction,
    PaymentRecord,
    PaymentStatus,
    charge_mismatch,
    decide_cancel,
    decide_payment,
    decline_for,
)
from orderflow.domain.refund import RefundStatus
from orderflow.gateway.base import (
    ChargeRequest,
    GatewayError,
    PaymentGateway,
    PermanentGatewayError,
    TransientGatewayError,
)
from orderflow.ports import (
    Clock,
    DeadLetterSink,
    InboundEvent,
    InboundMessage,
    PaymentStore,
    Publisher,
)
from orderflow.tables import bind_event
from orderflow.tables.scan import PartitionScan, elsewhere
from orderflow.topics import ORDER_CANCELLED, ORDER_CREATED, PAYMENT_RECONCILE, REFUND_REQUESTED
from orderflow.tracing import consuming
from orderflow.wire import decode_event, decode_reconcile

__all__ = ["PaymentService", "UnknownPayments"]

log = logging.getLogger(__name__)

_EXPECTED_TYPE = {
    ORDER_CREATED: OrderCreated.event_type,
    ORDER_CANCELLED: OrderCancelled.event_type,
    REFUND_REQUESTED: RefundRequested.event_type,
}


class UnknownPayments:
    """In-memory index of payments with something UNKNOWN (the charge, or one of its refunds):
    order id -> next attempt time, for the reconciler.

    Filled from PaymentDB's newly assigned partitions after every rebalance (kept partitions keep
    their entries and pending requests), so losing it (a crash) loses nothing. Payments
    left ATTEMPTING (a crash mid-charge) are restarted by the order service's stalled-order nudge,
    which publishes ``order.created`` again.
    """

    def __init__(self, request_timeout: float = 30.0, partitions: int | None = None) -> None:
        self.partitions = partitions  # None: never forgets (a single worker owning everything)
        self.due_at: dict[str, float] = {}
        # order id -> when its reconcile request was sent; asked again if nothing came of it
        # (the request went to a partition that moved, or its handling failed).
        self.requested: dict[str, float] = {}
        self.request_timeout = request_timeout
        self.scan = PartitionScan()

    def track(self, record: PaymentRecord) -> None:
        due = record.reconcile_at
        if due is not None:
            self.due_at[record.order_id] = due
        else:
            self.due_at.pop(record.order_id, None)
        self.requested.pop(record.order_id, None)

    def track_scanned(self, record: PaymentRecord) -> None:
        """A row read by a rescan: unlike a write, it leaves a pending request in place."""
        due = record.reconcile_at
        if due is not None:
            self.due_at.setdefault(record.order_id, due)
        else:
            self.due_at.pop(record.order_id, None)
            self.requested.pop(record.order_id, None)

    def assigned(
        self, owned: set[int], *, rescan_all: bool = False, rescan: Iterable[int] = ()
    ) -> None:
        """A new assignment: read the new partitions, forget the ones that moved away (their
        owner reconciles them; kept here, they would be requested forever)."""
        self.scan.assigned(owned, rescan_all=rescan_all, rescan=rescan)
        for order_id in elsewhere(self.due_at, owned, self.partitions):
            del self.due_at[order_id]
            self.requested.pop(order_id, None)

    def take_due(self, now: float) -> list[str]:
        stale = now - self.request_timeout
        due = [
            o
            for o, at in self.due_at.items()
            if at <= now and (o not in self.requested or self.requested[o] <= stale)
        ]
        self.requested.update(dict.fromkeys(due, now))
        return due


# (partition, handler, key, message) -> whether the handler ran: how a batch runs each event.
RunEvent = Callable[
    [int, Callable[[], Awaitable[None]], bytes | None, InboundMessage], Awaitable[bool]
]


async def _run(
    partition: int,
    handle: Callable[[], Awaitable[None]],
    key: bytes | None,
    message: InboundMessage,
) -> bool:
    await handle()
    return True


class PaymentService:
    """Consumes ``order.created`` and reconcile requests; failures go to the dead-letter topic."""

    def __init__(
        self,
        payments: PaymentStore,
        gateway: PaymentGateway,
        publisher: Publisher,
        dead_letters: DeadLetterSink,
        unknown: UnknownPayments,
        clock: Clock = time.time,
        run_event: RunEvent = _run,
        settle_window: float = 30.0,
        cancel_watch: float = 600.0,
    ) -> None:
        self.payments = payments
        self.gateway = gateway
        self.publisher = publisher  # payment outcomes and reconcile requests
        self.dead_letters = dead_letters
        self.unknown = unknown
        self.clock = clock
        self.inconsistent = 0  # charges found at the gateway that were not the order's
        # Runs one event's handler: the app passes the fence's (orderflow.fencing).
        self.run_event = run_event
        # How long a charge request sent by a worker now dead may still reach the gateway (its
        # deadline): a cancelled payment is looked up only after that, never voided sooner.
        self.settle_window = settle_window
        self.cancel_watch = cancel_watch
        self.refunds = PaymentRefunds(payments, gateway, publisher, unknown.track, clock)

    async def handle_batch(self, events: Sequence[InboundEvent]) -> None:
        """Group the batch by order id and run the groups concurrently."""
        by_order: dict[bytes, list[InboundEvent]] = {}
        for event in events:
            by_order.setdefault(event.message.key or b"", []).append(event)
        await asyncio.gather(*(self._handle_in_order(group) for group in by_order.values()))

    async def _handle_in_order(self, events: list[InboundEvent]) -> None:
        for event in events:
            bind_event(event)  # table writes go to this event's partition (see bind_event)
            handle = partial(self.handle, event)
            # Refused mid-call (orderflow.fencing): redone if the partition stayed, else the new
            # owner's; the order's later events here queue behind that redo (Fence.run).
            message = event.message  # (its offset is held while a refused handler waits)
            await self.run_event(message.partition, handle, message.key, message)

    async def handle(self, event: InboundEvent) -> None:
        """Handle one ``order.created`` or reconcile request; failures go to the dead letters."""
        with consuming(event):  # the gateway call and the result's publish nest under it
            await self.dead_letters.guard(event, self._handle)

    async def _handle(self, event: InboundEvent) -> None:
        message = event.message
        if message.topic == PAYMENT_RECONCILE:
            await self._reconcile(message)
            return
        decoded = decode_event(message.value, _EXPECTED_TYPE.get(message.topic, ORDER_CREATED))
        if message.key != decoded.order_id.encode():
            raise EventDecodeError(f"key {message.key!r} differs from order_id")
        if isinstance(decoded, OrderCreated):
            await self._on_order_created(decoded)
        elif isinstance(decoded, OrderCancelled):
            await self._on_order_cancelled(decoded)
        elif isinstance(decoded, RefundRequested):
            await self.refunds.requested(decoded)

    async def _on_order_created(self, created: OrderCreated) -> None:
        record = self.payments.get(created.order_id)
        action = decide_payment(record)
        if action is PaymentAction.SKIP:
            log.info("payment %s: cancelled before any charge; not charged", created.order_id)
        elif action is PaymentAction.REPUBLISH:
            assert record is not None
            await self._publish_outcome(record)
        elif action is PaymentAction.CHARGE and record is not None and record.attempts > 0:
            await self._look_up_then_charge(record)  # left mid-charge by a crash or a move
        elif action is PaymentAction.CHARGE:
            if record is None and not created.payment_token:
                # A stall nudge's copy whose token was gone, and no payment began: nothing can
                # be charged. Dead-lettered (the guard) for an operator, never charged.
                log.error(
                    "payment %s: order.created without a token and no PaymentDB record",
                    created.order_id,
                )
                raise PaymentTokenGoneError
            if record is None:
                record = PaymentRecord.first_attempt(
                    created.order_id, created.amount, created.currency, created.payment_token
                )
            await self._charge(record)

    async def _on_order_cancelled(self, cancelled: OrderCancelled) -> None:
        record = self.payments.get(cancelled.order_id)
        action = decide_cancel(record)
        now = self.clock()
        if action is CancelAction.VOID:
            void = (
                record
                if record is not None
                else PaymentRecord.first_attempt(
                    cancelled.order_id, cancelled.amount, cancelled.currency, ""
                )
            ).void(now)
            # Durable before the event is acked: a later order.created must find it.
            await self.payments.put_durable(void)
            log.info("payment %s VOIDED: cancelled before any charge", cancelled.order_id)
        elif action is CancelAction.RESOLVE:
            assert record is not None
            record = record.cancel(now, self.settle_window, self.cancel_watch)
            await self.payments.put_durable(record)
            self.unknown.track(record)
            log.info(
                "payment %s cancelled while a charge may have landed: asking the gateway at %s",
                cancelled.order_id,
                rfc3339(record.next_attempt_at),
            )
        elif action is CancelAction.COMPENSATE:
            assert record is not None
            if not record.cancelled:
                record = record.cancel(now, self.settle_window, self.cancel_watch)
                self.payments.put(record)
            await self.refunds.compensate(record)

    async def _reconcile(self, message: InboundMessage) -> None:
        order_id = decode_reconcile(message.value)
        if message.key != order_id.encode():
            raise EventDecodeError("reconcile request: order_id missing or not the key")
        record = self.payments.get(order_id)
        if record is None:
            return
        if record.status is PaymentStatus.UNKNOWN:
            await self._look_up_then_charge(record)
            record = self.payments.get(order_id) or record
        if any(r.status is RefundStatus.UNKNOWN for r in record.refunds):
            await self.refunds.reconcile(record)
            record = self.payments.get(order_id) or record
        self.unknown.track(record)

    async def _look_up_then_charge(self, record: PaymentRecord) -> None:
        """An earlier attempt may have reached the gateway: ask it before charging again.

        Gateways expire idempotency keys (about 24 h), so a charge sent without knowing whether
        the first one landed could be a second one. Only a lookup that finds nothing allows it.
        """
        try:
            found = await self.gateway.find_charge(record.idempotency_key)
        except GatewayError as exc:  # still not known: ask again later, never charge blind
            self._mark_unknown(record, exc)
            return
        if found is not None:  # the charge happened (or was declined); only its answer was lost
            await self._settle_found(record, found)
        elif record.cancelled and self.clock() < record.voidable_at:
            # Cancelled, no charge yet: a request the gateway holds may still land. Asked again.
            self._mark_unknown(record, LookupError("cancelled; no charge at the gateway yet"))
        elif record.cancelled:  # and no charge landed in the whole watch: never charged
            record = record.void(self.clock())
            self.payments.put(record)
            self.unknown.track(record)
            log.info("payment %s VOIDED: cancelled, and the gateway has no charge", record.order_id)
        else:  # never reached the gateway: the same key makes a new attempt safe
            await self._charge(record)

    async def _charge(self, record: PaymentRecord) -> None:
        if not record.payment_token:  # never a charge request without a token
            raise PaymentTokenGoneError
        record = record.attempt(self.clock())
        # ATTEMPTING must be in the changelog before the gateway may charge: otherwise a crash
        # could leave a charge that the next owner cannot see, and it would charge again without
        # a lookup. Each order's task waits on its own record, so a batch waits one round trip.
        # Not delivered: this raises, the gateway is not called, and the dead-letter guard
        # handles the event again (a retriable send error) or parks it.
        await self.payments.put_durable(record)
        request = ChargeRequest(
            record.idempotency_key,
            record.order_id,
            record.amount,
            record.currency,
            record.payment_token,
        )
        try:
            outcome: Approved | Declined = await self.gateway.charge(request)
        except TransientGatewayError as exc:
            # The card may have been charged: never call it failed. The reconciler asks again.
            self._mark_unknown(record, exc)
            return
        except PermanentGatewayError as exc:
            # A refusal of the request itself. An earlier attempt with this key (a timeout, a
            # crash) may still have charged, so the gateway's record decides, not the error.
            try:
                found = await self.gateway.find_charge(record.idempotency_key)
            except GatewayError as lookup_error:
                self._mark_unknown(record, lookup_error)
                return
            if found is not None:
                await self._settle_found(record, found)
                return
            # Our fixed text: the error's detail went to the log (gateway/http.py), not here.
            log.warning("payment %s refused by the gateway (%s): failed", record.order_id, exc)
            outcome = Declined(decline_for("gateway_rejected"))
        await self._settle(record, outcome)

    def _mark_unknown(self, record: PaymentRecord, reason: Exception) -> None:
        record = record.unknown(self.clock())
        log.warning(
            "payment %s UNKNOWN (%s); asking again in %.0fs",
            record.order_id,
            reason,
            record.next_attempt_at - record.updated_at,
        )
        self.payments.put(record)
        self.unknown.track(record)

    async def _settle_found(self, record: PaymentRecord, found: GatewayCharge) -> None:
        """Settle from the gateway's record for the key, once it is shown to be this payment."""
        problem = charge_mismatch(record, found)
        if problem is None:
            await self._settle(record, found.outcome)
            return
        # Never PAID on someone else's money, nor FAILED on their decline; and never charged
        # again (decide_payment waits on INCONSISTENT): a person must look. The raise sends the
        # event to the dead-letter topic with the reason, the alert an operator sees.
        record = record.inconsistent(problem, self.clock())
        self.payments.put(record)
        self.unknown.track(record)
        self.inconsistent += 1
        log.error("payment %s INCONSISTENT: %s", record.order_id, problem)
        raise ChargeMismatchError(problem)

    async def _settle(self, record: PaymentRecord, outcome: Approved | Declined) -> None:
        record = record.settle(outcome, self.clock())
        self.payments.put(record)
        self.unknown.track(record)
        await self._publish_outcome(record)
        if record.cancelled and record.status is PaymentStatus.COMPLETED:
            await self.refunds.compensate(record)  # a charge that raced its cancellation

    async def _publish_outcome(self, record: PaymentRecord) -> None:
        at = rfc3339(record.updated_at)
        event: PaymentCompleted | PaymentFailed
        if record.status is PaymentStatus.COMPLETED:
            assert record.charge_id is not None
            event = PaymentCompleted(
                record.order_id, record.amount, record.currency, record.charge_id, at
            )
        else:
            assert record.decline is not None
            event = PaymentFailed(
                record.order_id,
                record.amount,
                record.currency,
                record.decline,
                at,
                record.charge_id,
            )
        await self.publisher.publish(event)

    async def request_due_reconciliations(self) -> int:
        """Ask the owner of each due UNKNOWN payment to settle it (via the reconcile topic)."""
        if self.unknown.scan.pending:
            read = await self.unknown.scan.run(
                self.payments.partition_rows, self.payments.decode, self.unknown.track_scanned
            )
            log.info(
                "UNKNOWN-payment index: read %d PaymentDB row(s), %d UNKNOWN",
                read,
                len(self.unknown.due_at),
            )
        due = self.unknown.take_due(self.clock())
        for order_id in due:
            await self.publisher.request_reconciliation(order_id)
        return len(due)
