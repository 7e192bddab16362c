"""``replay --dry-run``: fold recorded history through today's code and report where it differs.

Like a workflow replayer, this is deterministic and does no I/O: no gateway call, nothing
produced. The gateway's answers are taken from the history (as a replayer takes activity
results): PaymentDB's settled records, else the recorded ``payment.*`` and refund events. What
is re-checked is our own code: validation and ``place_order`` on the commands (the
``order.created`` it would publish), ``cancel_order`` and ``refund_order`` on cancels and
refunds, the event a settled PaymentDB record publishes today (``outcome_event``), and the state
machine (``apply_payment``, ``apply_refund``) against the OrderDB changelog's final status.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orderflow.domain.errors import DomainError
from orderflow.domain.events import (
    CancelOrder,
    Event,
    OrderCreated,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    PlaceOrder,
    RefundFailed,
    RefundOrder,
)
from orderflow.domain.order import (
    Order,
    OrderStatus,
    PlacementKind,
    apply_payment,
    apply_refund,
    cancel_order,
    place_order,
    refund_order,
)
from orderflow.domain.payment import PaymentRecord
from orderflow.domain.settlement import outcome_event
from orderflow.tools.replay.model import (
    ORDER_CHANGELOG,
    PAYMENT_CHANGELOG,
    TopicRecord,
    json_value,
    time_order,
)
from orderflow.topics import (
    ORDER_COMMANDS,
    ORDER_CREATED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_REFUNDED,
    REFUND_FAILED,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_CHANGELOG,
    WEBHOOK_ENDPOINTS,
)
from orderflow.wire import decode_event, event_to_dict, payment_from_bytes

__all__ = ["DIFFERENCE_KINDS", "WEBHOOK_TOPICS", "DryRunReport", "Finding", "dry_run"]

# Read by a replay, never folded: an order's webhook deliveries are what its changes caused.
WEBHOOK_TOPICS = frozenset({WEBHOOK_ATTEMPTS, WEBHOOK_CHANGELOG, WEBHOOK_ENDPOINTS})

# Findings that mean "today's code decides differently"; the other kinds are information.
DIFFERENCE_KINDS = frozenset({"validation", "order_created", "payment_event", "final_status"})

_SUMMARY = ("orders", "compared", "differing_orders", "differences", "findings")

# The command topic carries cancels and refunds too (None: any of its types).
_EXPECTED_TYPE: dict[str, str | None] = {
    ORDER_COMMANDS: None,
    ORDER_CREATED: "order.created",
    PAYMENT_COMPLETED: "payment.completed",
    PAYMENT_FAILED: "payment.failed",
    PAYMENT_REFUNDED: "payment.refunded",
    REFUND_FAILED: "refund.failed",
}


@dataclass(frozen=True)
class Finding:
    """Something the dry run noticed about one order; ``kind`` in DIFFERENCE_KINDS is a diff."""

    order_id: str
    kind: str
    recorded: str
    today: str
    at: str  # topic:partition:offset of the recorded event compared

    @property
    def is_difference(self) -> bool:
        return self.kind in DIFFERENCE_KINDS

    def to_json(self) -> dict[str, Any]:
        fields = ("order_id", "kind", "difference", "recorded", "today", "at")
        values = (self.order_id, self.kind, self.is_difference, self.recorded, self.today, self.at)
        return dict(zip(fields, values, strict=True))


@dataclass
class DryRunReport:
    """Counts and findings of one dry run."""

    orders: int = 0
    compared: int = 0  # orders with a recorded gateway outcome (payment event)
    findings: list[Finding] = field(default_factory=list)

    @property
    def differences(self) -> list[Finding]:
        return [f for f in self.findings if f.is_difference]

    @property
    def differing_orders(self) -> int:
        return len({f.order_id for f in self.differences})

    def summary(self) -> dict[str, int]:
        counts = (self.compared, self.differing_orders, len(self.differences), len(self.findings))
        return dict(zip(_SUMMARY, (self.orders, *counts), strict=True))


def _order_from_created(created: OrderCreated) -> Order:
    # No command in the selection: the state machine starts from what order.created says.
    return Order(
        created.order_id,
        created.customer_id,
        created.currency,
        created.items,
        created.amount,
        OrderStatus.PENDING,
        created.occurred_at,
        created.occurred_at,
        fingerprint="",
        request_id="",
        client_id=created.client_id,
    )


def _changes(today: Event, then: Event, ignore: frozenset[str] = frozenset()) -> tuple[str, str]:
    """The fields that differ, as (recorded, today) texts; ("", "") when none does."""
    now, was = event_to_dict(today), event_to_dict(then)
    keys = sorted(k for k in now.keys() | was.keys() if k not in ignore)
    changed = [k for k in keys if now.get(k) != was.get(k)]
    return (
        ", ".join(f"{k}={was.get(k)!r}" for k in changed),
        ", ".join(f"{k}={now.get(k)!r}" for k in changed),
    )


# A settled record's event is published when it settles and again on a republish: its time
# is the record's, not what is compared. The event id follows the type, compared as event_type.
_OUTCOME_IGNORED = frozenset({"occurred_at", "event_id"})


@dataclass
class _OrderFold:
    order_id: str
    findings: list[Finding] = field(default_factory=list)
    order: Order | None = None
    published: OrderCreated | None = None  # what today's place_order would publish
    refused: str = ""  # why today's place_order refuses the command, if it does
    created: OrderCreated | None = None
    outcome: tuple[PaymentCompleted | PaymentFailed, str] | None = None  # first recorded
    settled: tuple[PaymentRecord, str] | None = None  # the gateway's answer, in PaymentDB
    recorded_status: str | None = None
    recorded_at: str = ""

    def add(self, kind: str, recorded: str, today: str, at: str) -> None:
        self.findings.append(Finding(self.order_id, kind, recorded, today, at))

    def feed(self, record: TopicRecord) -> None:
        if record.topic == ORDER_CHANGELOG:
            data = json_value(record)
            self.recorded_status = data.get("status") if isinstance(data, dict) else None
            self.recorded_at = record.at
        elif record.topic == PAYMENT_CHANGELOG:
            self._payment_record(record)
        elif record.topic in _EXPECTED_TYPE:
            self._event(record)
        # else: reconcile requests, dead letters: not decisions to re-check

    def _event(self, record: TopicRecord) -> None:
        try:
            event = decode_event(record.value, _EXPECTED_TYPE[record.topic])
        except DomainError as exc:
            self.add("undecodable", "on the topic", f"rejected: {exc}", record.at)
            return
        if isinstance(event, PlaceOrder):
            self._place(event)
        elif isinstance(event, OrderCreated):
            self._created(event, record)
        elif isinstance(event, PaymentCompleted | PaymentFailed):
            self._outcome(event, record)
        elif isinstance(event, CancelOrder | RefundOrder):
            self._decide(event)
        elif isinstance(event, PaymentRefunded | RefundFailed):
            self._refund_outcome(event, record)

    def _decide(self, command: CancelOrder | RefundOrder) -> None:
        """Today's decision on a cancel or refund (the gateway's answers come as recorded)."""
        if self.order is None:
            return
        at = command.occurred_at
        decision = (
            cancel_order(self.order, command, at)
            if isinstance(command, CancelOrder)
            else refund_order(self.order, command, at)
        )
        self.order = decision.order

    def _refund_outcome(self, event: PaymentRefunded | RefundFailed, record: TopicRecord) -> None:
        if self.order is None:
            return
        transition = apply_refund(self.order, event, event.occurred_at)
        if transition.changed:
            self.order = transition.order
        if transition.anomaly:
            self.add(
                "refused",
                f"{event.event_type} on the topic",
                f"apply_refund refuses it: {transition.reason}",
                record.at,
            )

    def _payment_record(self, record: TopicRecord) -> None:
        if record.value is None:
            return  # a tombstone: nothing settled
        try:
            payment = payment_from_bytes(record.value)
        except (DomainError, ValueError, KeyError, TypeError) as exc:
            self.add("undecodable", "in PaymentDB", f"rejected: {exc}", record.at)
            return
        if payment.status.is_settled:
            self.settled = (payment, record.at)  # the latest settled answer wins

    def _place(self, command: PlaceOrder) -> None:
        try:
            placement = place_order(self.order, command)
        except DomainError as exc:
            self.refused = str(exc)
            return
        if placement.kind is PlacementKind.CREATED:
            self.order, self.published = placement.order, placement.publish

    def _created(self, created: OrderCreated, record: TopicRecord) -> None:
        if not created.payment_token:
            # A stall nudge's copy whose token was gone: settled from PaymentDB or dead-lettered,
            # never charged; not a changed body.
            if self.order is None:
                self.order = _order_from_created(created)
            return
        if self.created is not None:
            return  # a republished copy: the first one was decided on
        self.created = created
        if self.published is not None:
            recorded, today = _changes(self.published, created)
            if recorded or today:
                self.add("order_created", recorded, today, record.at)
        elif self.refused:
            self.add("validation", "order.created", f"refused: {self.refused}", record.at)
        if self.order is None:
            self.order = _order_from_created(created)

    def _outcome(self, event: PaymentCompleted | PaymentFailed, record: TopicRecord) -> None:
        if self.outcome is None:
            self.outcome = (event, record.at)
        if self.order is None:
            return
        transition = apply_payment(self.order, event, event.occurred_at)
        if transition.changed:
            self.order = transition.order
        elif transition.anomaly:
            self.add(
                "refused",
                f"{event.event_type} on the topic",
                f"apply_payment refuses it: {transition.reason}",
                record.at,
            )

    def _check_outcome_event(self) -> None:
        """Today's event for the recorded gateway answer, against the event recorded."""
        if self.outcome is None or self.settled is None:
            return
        (event, at), (payment, _) = self.outcome, self.settled
        today = outcome_event(payment)
        if today is None:
            return
        recorded_text, today_text = _changes(today, event, _OUTCOME_IGNORED)
        if recorded_text or today_text:
            self.add("payment_event", recorded_text, today_text, at)

    def finish(self) -> None:
        self._check_outcome_event()
        today = None if self.order is None else str(self.order.status)
        if self.recorded_status is not None and today is not None and today != self.recorded_status:
            self.add(
                "final_status",
                f"OrderDB {self.recorded_status}",
                f"state machine {today}",
                self.recorded_at,
            )


def _order_id(record: TopicRecord) -> str | None:
    if record.key is not None:
        return record.key.decode("utf-8", "replace")
    data = json_value(record)
    return data.get("order_id") if isinstance(data, dict) else None


def dry_run(records: Iterable[TopicRecord]) -> DryRunReport:
    """Fold ``records`` order by order through today's code, the gateway's answers as recorded
    (the webhook topics are skipped: deliveries are not order state, and nothing folds them)."""
    by_order: dict[str, list[TopicRecord]] = {}
    for record in records:
        if record.topic in WEBHOOK_TOPICS:
            continue
        order_id = _order_id(record)
        if order_id:
            by_order.setdefault(order_id, []).append(record)
    report = DryRunReport(orders=len(by_order))
    for order_id in sorted(by_order):
        fold = _OrderFold(order_id)
        for record in sorted(by_order[order_id], key=time_order):
            fold.feed(record)
        fold.finish()
        report.compared += fold.outcome is not None
        report.findings.extend(fold.findings)
    return report
