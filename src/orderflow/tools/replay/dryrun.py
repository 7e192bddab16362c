"""``replay --dry-run``: fold recorded events through today's domain code and report disagreements.

Like a workflow replayer, this is deterministic and does no I/O: no gateway call, nothing
produced. For each order it takes the recorded ``order.created`` and asks today's decision rule
what the gateway would answer for its token (``sandbox_decision`` by default; injectable, so a
changed rule can be tried before it ships), compares that with the recorded ``payment.completed``
or ``payment.failed`` (and decline code), re-runs the state machine (``place_order`` on the
commands, ``apply_payment`` on the recorded outcomes) and compares the final status with the
OrderDB changelog when it was read too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orderflow.domain.errors import DomainError
from orderflow.domain.events import (
    OrderCreated,
    PaymentCompleted,
    PaymentFailed,
    PlaceOrder,
    event_to_dict,
)
from orderflow.domain.order import Order, OrderStatus, PlacementKind, apply_payment, place_order
from orderflow.domain.payment import Approved, Decline
from orderflow.records import decode_event
from orderflow.tools.replay.model import ORDER_CHANGELOG, TopicRecord, json_value, time_order
from orderflow.tools.sandbox.rules import sandbox_decision
from orderflow.topics import ORDER_COMMANDS, ORDER_CREATED, PAYMENT_COMPLETED, PAYMENT_FAILED

__all__ = ["DIFFERENCE_KINDS", "DecisionRule", "DryRunReport", "Finding", "dry_run"]

DecisionRule = Callable[[str], Approved | Decline]

# Findings that mean "today's code decides differently"; the other kinds are information.
DIFFERENCE_KINDS = frozenset({"payment_decision", "decline", "order_created", "final_status"})

_EXPECTED_TYPE = {
    ORDER_COMMANDS: "order.place",
    ORDER_CREATED: "order.created",
    PAYMENT_COMPLETED: "payment.completed",
    PAYMENT_FAILED: "payment.failed",
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
        return {
            "order_id": self.order_id,
            "kind": self.kind,
            "difference": self.is_difference,
            "recorded": self.recorded,
            "today": self.today,
            "at": self.at,
        }


@dataclass
class DryRunReport:
    """Counts and findings of one dry run."""

    orders: int = 0
    compared: int = 0  # orders with both an order.created and a recorded outcome
    findings: list[Finding] = field(default_factory=list)

    @property
    def differences(self) -> list[Finding]:
        return [f for f in self.findings if f.is_difference]

    @property
    def differing_orders(self) -> int:
        return len({f.order_id for f in self.differences})

    def summary(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "compared": self.compared,
            "differing_orders": self.differing_orders,
            "differences": len(self.differences),
            "findings": len(self.findings),
        }


def _outcome_text(outcome: Approved | Decline | PaymentCompleted | PaymentFailed) -> str:
    if isinstance(outcome, Approved | PaymentCompleted):
        return "approved"
    decline = outcome if isinstance(outcome, Decline) else outcome.reason
    return f"declined ({decline.code}, retryable={decline.retryable})"


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


@dataclass
class _OrderFold:
    order_id: str
    decide: DecisionRule
    findings: list[Finding] = field(default_factory=list)
    order: Order | None = None
    published: OrderCreated | None = None  # what today's place_order would publish
    created: OrderCreated | None = None
    expected: Approved | Decline | None = None
    outcome_seen: bool = False
    recorded_status: str | None = None
    recorded_at: str = ""

    def add(self, kind: str, recorded: str, today: str, at: str) -> None:
        self.findings.append(Finding(self.order_id, kind, recorded, today, at))

    def feed(self, record: TopicRecord) -> None:
        if record.topic == ORDER_CHANGELOG:
            data = json_value(record)
            self.recorded_status = data.get("status") if isinstance(data, dict) else None
            self.recorded_at = record.at
            return
        expected_type = _EXPECTED_TYPE.get(record.topic)
        if expected_type is None:
            return  # PaymentDB, reconcile requests, dead letters: not events to re-decide
        try:
            event = decode_event(record.value, expected_type)
        except DomainError as exc:
            self.add("undecodable", "on the topic", f"rejected: {exc}", record.at)
            return
        if isinstance(event, PlaceOrder):
            self._place(event)
        elif isinstance(event, OrderCreated):
            self._created(event, record)
        else:
            self._outcome(event, record)

    def _place(self, command: PlaceOrder) -> None:
        try:
            placement = place_order(self.order, command)
        except DomainError:
            return  # today's code refuses the command; an order.created will show the effect
        if placement.kind is PlacementKind.CREATED:
            self.order, self.published = placement.order, placement.publish

    def _created(self, created: OrderCreated, record: TopicRecord) -> None:
        if not created.payment_token:
            # A stall nudge's copy whose token was gone: settled from PaymentDB or dead-lettered,
            # never charged; nothing for the payment rule to decide (nor a changed body).
            if self.order is None:
                self.order = _order_from_created(created)
            return
        if self.created is not None:
            return  # a republished copy: the first one was decided on
        self.created = created
        if self.published is not None:
            today, then = event_to_dict(self.published), event_to_dict(created)
            changed = sorted(k for k in today.keys() | then.keys() if today.get(k) != then.get(k))
            if changed:
                self.add(
                    "order_created",
                    ", ".join(f"{k}={then.get(k)!r}" for k in changed),
                    ", ".join(f"{k}={today.get(k)!r}" for k in changed),
                    record.at,
                )
        if self.order is None:
            self.order = _order_from_created(created)
        self.expected = self.decide(created.payment_token)

    def _outcome(self, event: PaymentCompleted | PaymentFailed, record: TopicRecord) -> None:
        if not self.outcome_seen and self.expected is not None:
            self.outcome_seen = True
            self._compare_decision(event, self.expected, record.at)
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

    def _compare_decision(
        self, event: PaymentCompleted | PaymentFailed, expected: Approved | Decline, at: str
    ) -> None:
        recorded, today = _outcome_text(event), _outcome_text(expected)
        if isinstance(event, PaymentCompleted) != isinstance(expected, Approved):
            self.add("payment_decision", recorded, today, at)
        elif recorded != today:
            self.add("decline", recorded, today, at)

    def finish(self) -> None:
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


def dry_run(
    records: Iterable[TopicRecord], decide: DecisionRule = sandbox_decision
) -> DryRunReport:
    """Fold ``records`` order by order through today's code; ``decide`` is the payment rule."""
    by_order: dict[str, list[TopicRecord]] = {}
    for record in records:
        order_id = _order_id(record)
        if order_id:
            by_order.setdefault(order_id, []).append(record)
    report = DryRunReport(orders=len(by_order))
    for order_id in sorted(by_order):
        fold = _OrderFold(order_id, decide)
        for record in sorted(by_order[order_id], key=time_order):
            fold.feed(record)
        fold.finish()
        report.compared += fold.outcome_seen
        report.findings.extend(fold.findings)
    return report
