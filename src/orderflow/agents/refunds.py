"""The payment service's refunds: a client's refund, and the compensation of a cancelled charge.

Each refund is one gateway operation under its own idempotency key (from the refund id), made
exactly as charges are: ATTEMPTING is durable in PaymentDB before the gateway is called; a
timeout makes the refund UNKNOWN and the reconciler asks the gateway what happened (never a blind
second request: keys expire); an answer found is checked against the refund before it is trusted.
What PaymentDB decides (``domain.refund.decide_refund``) uses PaymentDB alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from orderflow.domain.declines import decline_for
from orderflow.domain.errors import RefundMismatchError
from orderflow.domain.events import RefundFailed, RefundRequested, rfc3339
from orderflow.domain.payment import PaymentRecord, PaymentStatus
from orderflow.domain.refund import (
    RefundAction,
    RefundAttempt,
    RefundDeclined,
    RefundOutcome,
    RefundStatus,
    compensation_refund_id,
    decide_refund,
    refund_mismatch,
)
from orderflow.domain.settlement import refund_event
from orderflow.gateway.base import (
    GatewayError,
    PaymentGateway,
    PermanentGatewayError,
    RefundRequest,
    TransientGatewayError,
)
from orderflow.ports import Clock, PaymentStore, Publisher

__all__ = ["PaymentRefunds", "TrackUnknown"]

log = logging.getLogger(__name__)

# Tells the reconciler's index what a record now has UNKNOWN (``UnknownPayments.track``).
TrackUnknown = Callable[[PaymentRecord], None]


class PaymentRefunds:
    """Refunds of one worker's payments; the payment service hands it each refund's turn."""

    def __init__(
        self,
        payments: PaymentStore,
        gateway: PaymentGateway,
        publisher: Publisher,
        track: TrackUnknown,
        clock: Clock = time.time,
    ) -> None:
        self.payments = payments
        self.gateway = gateway
        self.publisher = publisher
        self.track = track  # the reconciler's index of UNKNOWN payments and refunds
        self.clock = clock

    async def requested(self, event: RefundRequested) -> None:
        """A refund the order service reserved: refund it, or say why not."""
        record = self.payments.get(event.order_id)
        existing = record.refund(event.refund_id) if record is not None else None
        captured = (
            record.amount
            if record is not None and record.status is PaymentStatus.COMPLETED
            else None
        )
        committed = record.refund_committed if record is not None else 0
        decision = decide_refund(captured, existing, committed, event.amount)
        if decision.action is RefundAction.REFUSE:
            await self._refuse(record, event, decision.decline_code, decision.reason)
            return
        assert record is not None  # every other action has a completed charge
        attempt = existing or RefundAttempt.first(event.refund_id, event.amount, event.reason)
        await self._act(record, attempt, decision.action)

    async def compensate(self, record: PaymentRecord) -> None:
        """Give back the whole charge of a cancelled order (once, whatever the redeliveries)."""
        refund_id = compensation_refund_id(record.order_id)
        existing = record.refund(refund_id)
        others = record.refund_committed - (
            existing.amount if existing and existing.status is not RefundStatus.FAILED else 0
        )
        decision = decide_refund(record.amount, existing, others, record.amount)
        if decision.action is RefundAction.REFUSE:
            # Only if something else gave money back first: nothing is left to compensate.
            log.error("payment %s: no compensation possible: %s", record.order_id, decision.reason)
            return
        attempt = existing or RefundAttempt.first(
            refund_id, record.amount, "cancelled", compensation=True
        )
        await self._act(record, attempt, decision.action)

    async def reconcile(self, record: PaymentRecord) -> None:
        """Ask the gateway about each UNKNOWN refund of ``record`` (a reconcile request came:
        one of them is due; asking about the others early costs a lookup)."""
        for refund in record.refunds:
            if refund.status is RefundStatus.UNKNOWN:
                current = self.payments.get(record.order_id) or record
                await self._look_up_then_refund(current, refund)

    async def _act(
        self, record: PaymentRecord, attempt: RefundAttempt, action: RefundAction
    ) -> None:
        if action is RefundAction.REPUBLISH:
            await self._publish(record, attempt)
        elif action is RefundAction.LOOK_UP:
            await self._look_up_then_refund(record, attempt)
        elif action is RefundAction.REFUND:
            await self._refund(record, attempt)
        # WAIT: the reconciler owns it

    async def _refuse(
        self, record: PaymentRecord | None, event: RefundRequested, code: str, reason: str
    ) -> None:
        """Never sent to the gateway; recorded (when there is a payment) so a redelivery of the
        request gets the same answer even after other refunds change what is left."""
        log.warning("refund %s of %s refused: %s", event.refund_id, event.order_id, reason)
        now = self.clock()
        refused = RefundAttempt.first(event.refund_id, event.amount, event.reason).settle(
            RefundDeclined(decline_for(code)), now
        )
        if record is not None and record.refund(event.refund_id) is None:
            record = record.with_refund(refused)
            self.payments.put(record)
            await self._publish(record, refused)
            return
        failed = RefundFailed(
            event.order_id,
            event.refund_id,
            event.amount,
            event.currency,
            decline_for(code),
            rfc3339(now),
        )
        await self.publisher.publish(failed)

    async def _look_up_then_refund(self, record: PaymentRecord, attempt: RefundAttempt) -> None:
        """An earlier attempt may have reached the gateway: ask before refunding again."""
        try:
            found = await self.gateway.find_refund(attempt.idempotency_key)
        except GatewayError as exc:
            self._unknown(record, attempt, exc)
            return
        if found is None:  # never reached the gateway: the same key makes a new attempt safe
            await self._refund(record, attempt)
            return
        problem = refund_mismatch(attempt, record.charge_id, found)
        if problem is not None:
            # Not ours to settle from, and never sent again: a person must look (the raise
            # dead-letters the event with the reason: the alert).
            log.error(
                "refund %s of %s INCONSISTENT: %s", attempt.refund_id, record.order_id, problem
            )
            odd = replace(attempt, status=RefundStatus.INCONSISTENT, updated_at=self.clock())
            record = record.with_refund(odd)
            self.payments.put(record)
            self.track(record)
            raise RefundMismatchError(problem)
        await self._settle(record, attempt, found.outcome)

    async def _refund(self, record: PaymentRecord, attempt: RefundAttempt) -> None:
        attempt = attempt.attempt(self.clock())
        record = record.with_refund(attempt)
        # ATTEMPTING in the changelog before the gateway may refund: a crash after the call
        # leaves a record that makes the next owner look the refund up before any new attempt.
        await self.payments.put_durable(record)
        assert record.charge_id is not None  # a COMPLETED payment names its charge
        request = RefundRequest(
            attempt.idempotency_key,
            attempt.refund_id,
            record.order_id,
            record.charge_id,
            attempt.amount,
        )
        try:
            outcome = await self.gateway.refund(request)
        except TransientGatewayError as exc:  # the money may have moved: never call it failed
            self._unknown(record, attempt, exc)
            return
        except PermanentGatewayError as exc:
            # The request itself was refused; an earlier attempt may still have refunded.
            try:
                found = await self.gateway.find_refund(attempt.idempotency_key)
            except GatewayError as lookup_error:
                self._unknown(record, attempt, lookup_error)
                return
            if found is not None:
                await self._settle(record, attempt, found.outcome)
                return
            log.warning("refund %s refused by the gateway (%s)", attempt.refund_id, exc)
            outcome = RefundDeclined(decline_for("gateway_rejected"))
        await self._settle(record, attempt, outcome)

    def _unknown(self, record: PaymentRecord, attempt: RefundAttempt, reason: Exception) -> None:
        unknown = attempt.unknown(self.clock())
        log.warning(
            "refund %s of %s UNKNOWN (%s); asking again in %.0fs",
            attempt.refund_id,
            record.order_id,
            reason,
            unknown.next_attempt_at - unknown.updated_at,
        )
        record = record.with_refund(unknown)
        self.payments.put(record)
        self.track(record)

    async def _settle(
        self, record: PaymentRecord, attempt: RefundAttempt, outcome: RefundOutcome
    ) -> None:
        settled = attempt.settle(outcome, self.clock())
        record = record.with_refund(settled)
        self.payments.put(record)
        self.track(record)
        await self._publish(record, settled)

    async def _publish(self, record: PaymentRecord, refund: RefundAttempt) -> None:
        event = refund_event(record, refund)
        if event is not None:
            await self.publisher.publish(event)
