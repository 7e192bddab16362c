"""The order state machine, decided by the order service alone (the single writer of OrderDB).

    PENDING -> PAID | PAYMENT_FAILED | CANCELLED
    PAID -> PARTIALLY_REFUNDED -> ... -> REFUNDED        (refunds, up to the captured amount)

PAYMENT_FAILED, CANCELLED and REFUNDED are final: no command or event changes the status again.
A CANCELLED order may still learn of money a racing charge took and of its compensation refund
(``captured``, ``refunded``), never becoming PAID. Money refunded never exceeds money captured.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from orderflow.domain.events import (
    CancelOrder,
    OrderCancelled,
    OrderCreated,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    PlaceOrder,
    RefundFailed,
    RefundOrder,
    RefundRequested,
)
from orderflow.domain.money import order_total
from orderflow.domain.payment import Decline
from orderflow.domain.validation import LineItem

__all__ = [
    "MAX_REFUNDS_PER_ORDER",
    "Answer",
    "Cancellation",
    "Order",
    "OrderDecision",
    "OrderRefund",
    "OrderStatus",
    "Placement",
    "PlacementKind",
    "RefundState",
    "Transition",
    "apply_payment",
    "apply_refund",
    "cancel_order",
    "place_order",
    "refund_order",
]


class OrderStatus(enum.StrEnum):
    """The states of an order (the module's docstring draws the machine)."""

    PENDING = "PENDING"
    PAID = "PAID"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    CANCELLED = "CANCELLED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"

    @property
    def is_terminal(self) -> bool:
        """The order's placement is decided (a long-poll for its outcome ends here)."""
        return self is not OrderStatus.PENDING

    @property
    def is_final(self) -> bool:
        """No command or event changes this status any more."""
        return self in _FINAL


# Refunds one order may have: each is kept in its OrderDB entry (rewritten at every change), so a
# client asking for refunds of one minor unit at a time must not grow it without bound.
MAX_REFUNDS_PER_ORDER = 50

_FINAL = frozenset({OrderStatus.PAYMENT_FAILED, OrderStatus.CANCELLED, OrderStatus.REFUNDED})
# The statuses a refund may be asked of: money was captured and not all of it given back.
_REFUNDABLE = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED})


class RefundState(enum.StrEnum):
    """One refund as the order service sees it. REQUESTED: its amount is reserved."""

    REQUESTED = "REQUESTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class Cancellation:
    """Why and when an order was cancelled (the client's words; "" when none were given)."""

    reason: str
    at: str


@dataclass(frozen=True)
class OrderRefund:
    """One refund of an order, in OrderDB: asked for by a client, or a cancellation's
    compensation (made by the payment service on its own: no fingerprint, no request)."""

    refund_id: str
    amount: int
    state: RefundState
    reason: str
    requested_at: str
    fingerprint: str = ""  # of the RefundOrder body; "" for a compensation
    request_id: str = ""
    gateway_refund_id: str | None = None
    decline: Decline | None = None
    compensation: bool = False


@dataclass(frozen=True)
class Order:
    """OrderDB's entry: the order, its status, and the payment's outcome once known.

    Never the payment token (OrderDB's changelog is compacted and kept forever): a copy of
    ``order.created`` made again (a replayed POST, the stall nudge) takes it from the PlaceOrder
    command, which ``command_offset`` locates on the command topic.
    """

    order_id: str
    customer_id: str
    currency: str
    items: tuple[LineItem, ...]
    amount: int
    status: OrderStatus
    created_at: str
    updated_at: str
    fingerprint: str
    request_id: str
    charge_id: str | None = None
    decline: Decline | None = None
    # Where its PlaceOrder is on the command topic (same partition as the order); None: unknown
    # (an order stored before this field existed).
    command_offset: int | None = None
    client_id: str = ""  # the API client that placed it; "": before API keys (no owner)
    # The token an entry stored before ``command_offset`` existed still holds: read for the
    # stall nudge, in memory only (``order_to_bytes`` never writes it back), never printed.
    legacy_payment_token: str = field(default="", repr=False, compare=False)
    # Money, in minor units: what the gateway took (the amount once PAID, or a charge that
    # raced a cancellation) and what it gave back; refunded <= captured always.
    captured: int = 0
    refunded: int = 0
    refunds: tuple[OrderRefund, ...] = ()
    cancellation: Cancellation | None = None  # set once CANCELLED

    @property
    def reserved(self) -> int:
        """Money promised back by refunds still REQUESTED."""
        return sum(r.amount for r in self.refunds if r.state is RefundState.REQUESTED)

    @property
    def refundable(self) -> int:
        """What a new refund may still ask for."""
        return self.captured - self.refunded - self.reserved

    def refund(self, refund_id: str) -> OrderRefund | None:
        return next((r for r in self.refunds if r.refund_id == refund_id), None)

    @property
    def awaiting_money(self) -> bool:
        """The payment service still owes this order an answer about money: a refund asked for,
        or a cancelled order's charge not yet given back."""
        return bool(self.money_events())

    def money_events(self) -> tuple[OrderCancelled | RefundRequested, ...]:
        """What asks the payment service for what it still owes (published again by the nudge)."""
        events: list[OrderCancelled | RefundRequested] = [
            _requested_event(self, r) for r in self.refunds if r.state is RefundState.REQUESTED
        ]
        # (A compensation the gateway refused waits for a person, not for another nudge.)
        refused = any(r.compensation and r.state is RefundState.FAILED for r in self.refunds)
        if self.status is OrderStatus.CANCELLED and self.refunded < self.captured and not refused:
            events.append(self.cancelled_event())
        return tuple(events)

    def cancelled_event(self) -> OrderCancelled:
        """The order's ``order.cancelled`` (the same event, time included, each time)."""
        assert self.cancellation is not None
        return OrderCancelled(
            self.order_id,
            self.cancellation.reason,
            self.cancellation.at,
            self.amount,
            self.currency,
        )

    def created_event(self, payment_token: str) -> OrderCreated:
        return OrderCreated(
            self.order_id,
            self.customer_id,
            self.currency,
            self.amount,
            self.items,
            payment_token,
            self.created_at,
            self.client_id,
        )


class PlacementKind(enum.Enum):
    """How the order service answered a PlaceOrder command."""

    CREATED = "created"
    REPLAYED = "replayed"  # same idempotency key and body: the existing order, no new charge
    CONFLICT = "conflict"  # same idempotency key, different body: refused, nothing changes


@dataclass(frozen=True)
class Placement:
    """The decision for a PlaceOrder: the order to store and whether to (re)publish it."""

    kind: PlacementKind
    order: Order
    publish: OrderCreated | None


def place_order(existing: Order | None, command: PlaceOrder) -> Placement:
    """Create the order, or recognise a replay.

    A replay of a still-PENDING order publishes ``order.created`` again: after a crash between
    the table write and the publish this is how the order reaches the payment service at all.
    The payment service is idempotent, so a copy too many costs nothing.
    """
    if existing is None:
        amount = order_total((item.quantity, item.unit_amount) for item in command.items)
        order = Order(
            order_id=command.order_id,
            customer_id=command.customer_id,
            currency=command.currency,
            items=command.items,
            amount=amount,
            status=OrderStatus.PENDING,
            created_at=command.occurred_at,
            updated_at=command.occurred_at,
            fingerprint=command.fingerprint,
            request_id=command.request_id,
            client_id=command.client_id,
        )
        return Placement(PlacementKind.CREATED, order, order.created_event(command.payment_token))
    if existing.fingerprint != command.fingerprint:
        return Placement(PlacementKind.CONFLICT, existing, None)
    # The same fingerprint: the same body, token included (web.orders keys its hash of it).
    republish = (
        None if existing.status.is_terminal else existing.created_event(command.payment_token)
    )
    return Placement(PlacementKind.REPLAYED, existing, republish)


@dataclass(frozen=True)
class Transition:
    """The result of applying a payment event: the new order, or why it was refused/ignored."""

    order: Order
    changed: bool
    reason: str = ""
    anomaly: bool = False  # True: the event contradicts the order (goes to the dead-letter topic)
    # Events to publish (again): a charge that raced a cancellation sends ``order.cancelled``
    # once more, so the payment service refunds it even if it missed the first copy.
    publish: tuple[OrderCancelled, ...] = ()


def apply_payment(order: Order, event: PaymentCompleted | PaymentFailed, now: str) -> Transition:
    """Move a PENDING order to PAID or PAYMENT_FAILED; a CANCELLED one records a racing charge."""
    if order.status.is_terminal and order.status is not OrderStatus.CANCELLED:
        was_paid = order.status is not OrderStatus.PAYMENT_FAILED  # PAID, or refunded since
        same = was_paid == isinstance(event, PaymentCompleted)
        reason = "duplicate" if same else f"order already {order.status}"
        # A duplicate is normal at-least-once life; the opposite outcome is a real contradiction.
        return Transition(order, False, reason, anomaly=not same)
    if event.amount != order.amount or event.currency != order.currency:
        return Transition(
            order,
            False,
            f"payment of {event.amount} {event.currency} does not match the order's "
            f"{order.amount} {order.currency}",
            anomaly=True,
        )
    if order.status is OrderStatus.CANCELLED:
        return _payment_after_cancel(order, event, now)
    if isinstance(event, PaymentCompleted):
        paid = replace(
            order,
            status=OrderStatus.PAID,
            charge_id=event.charge_id,
            captured=event.amount,
            updated_at=now,
        )
        return Transition(paid, True)
    failed = replace(
        order,
        status=OrderStatus.PAYMENT_FAILED,
        decline=event.reason,
        charge_id=event.charge_id,
        updated_at=now,
    )
    return Transition(failed, True)


def _payment_after_cancel(
    order: Order, event: PaymentCompleted | PaymentFailed, now: str
) -> Transition:
    """A charge that raced the cancellation: CANCELLED stays and the money is recorded; the
    payment service refunds it (``order.cancelled`` goes out again, should it have missed it)."""
    if isinstance(event, PaymentFailed):
        if order.captured:
            return Transition(order, False, "the order's charge was captured", anomaly=True)
        if order.decline is not None:
            return Transition(order, False, "duplicate")
        return Transition(replace(order, decline=event.reason, updated_at=now), True)
    if order.decline is not None:
        return Transition(order, False, "the order's charge was declined", anomaly=True)
    if order.captured:  # known already (this event again, or the compensation came first)
        again = (order.cancelled_event(),) if order.refunded < order.captured else ()
        return Transition(order, False, "duplicate", publish=again)
    charged = replace(order, charge_id=event.charge_id, captured=event.amount, updated_at=now)
    return Transition(charged, True, publish=(charged.cancelled_event(),))


class Answer(enum.Enum):
    """How the order service answered a cancel or refund command."""

    ACCEPTED = "accepted"
    REPLAYED = "replayed"  # asked before: the same answer, nothing new
    CONFLICT = "conflict"  # the same refund id with another body: refused, nothing changes
    REFUSED = "refused"  # not possible in the order's state (``reason`` says why)


@dataclass(frozen=True)
class OrderDecision:
    """The decision for a cancel or refund command: the order to store and what to publish."""

    answer: Answer
    order: Order
    publish: tuple[OrderCancelled | RefundRequested, ...] = ()
    reason: str = ""
    field: str = ""  # the request field the refusal is about ("" : the order's state)


def cancel_order(order: Order, command: CancelOrder, now: str) -> OrderDecision:
    """Cancel a PENDING order; a CANCELLED one answers the same again (and re-sends the event:
    a crash may have lost it between the table write and the publish)."""
    if order.status is OrderStatus.PENDING:
        cancelled = replace(
            order,
            status=OrderStatus.CANCELLED,
            cancellation=Cancellation(command.reason, command.occurred_at),
            updated_at=now,
        )
        return OrderDecision(Answer.ACCEPTED, cancelled, (cancelled.cancelled_event(),))
    if order.status is OrderStatus.CANCELLED:
        return OrderDecision(Answer.REPLAYED, order, (order.cancelled_event(),))
    hint = " (refund it instead)" if order.status in _REFUNDABLE else ""
    return OrderDecision(
        Answer.REFUSED, order, reason=f"the order is {order.status}{hint}: it cannot be cancelled"
    )


def refund_order(order: Order, command: RefundOrder, now: str) -> OrderDecision:
    """Reserve a refund of captured money, or recognise a replay of one."""
    existing = order.refund(command.refund_id)
    if existing is not None:
        if existing.fingerprint != command.fingerprint:
            return OrderDecision(
                Answer.CONFLICT, order, reason="the idempotency key was used for another refund"
            )
        again = (
            (_requested_event(order, existing),) if existing.state is RefundState.REQUESTED else ()
        )
        return OrderDecision(Answer.REPLAYED, order, again)
    if command.currency != order.currency:
        return OrderDecision(
            Answer.REFUSED,
            order,
            reason=f"the order is in {order.currency}, not {command.currency}",
            field="currency",
        )
    if order.status not in _REFUNDABLE:
        reason = f"the order is {order.status}: nothing captured to refund"
        if order.status is OrderStatus.PENDING:
            reason = "the order is PENDING: nothing captured yet (cancel it instead)"
        return OrderDecision(Answer.REFUSED, order, reason=reason)
    if len(order.refunds) >= MAX_REFUNDS_PER_ORDER:
        return OrderDecision(
            Answer.REFUSED,
            order,
            reason=f"the order has {len(order.refunds)} refunds, the most one order may have",
        )
    if command.amount <= 0 or command.amount > order.refundable:
        return OrderDecision(
            Answer.REFUSED,
            order,
            reason=f"must be 1..{order.refundable} (captured {order.captured}, refunded "
            f"{order.refunded}, in progress {order.reserved})",
            field="amount",
        )
    refund = OrderRefund(
        command.refund_id,
        command.amount,
        RefundState.REQUESTED,
        command.reason,
        command.occurred_at,
        fingerprint=command.fingerprint,
        request_id=command.request_id,
    )
    reserved = replace(order, refunds=(*order.refunds, refund), updated_at=now)
    return OrderDecision(Answer.ACCEPTED, reserved, (_requested_event(reserved, refund),))


def _requested_event(order: Order, refund: OrderRefund) -> RefundRequested:
    return RefundRequested(
        order.order_id,
        refund.refund_id,
        refund.amount,
        order.currency,
        refund.reason,
        refund.requested_at,
    )


def apply_refund(order: Order, event: PaymentRefunded | RefundFailed, now: str) -> Transition:
    """Record a refund's outcome: money given back moves PAID towards REFUNDED (a CANCELLED
    order stays CANCELLED); a failed refund releases its reservation."""
    known = order.refund(event.refund_id)
    problem = _refund_problem(order, known, event)
    if problem:
        return Transition(order, False, problem, anomaly=True)
    working = order
    if known is None:
        # The payment service's own refund of a charge that raced the cancellation. It names
        # the charge: its ``payment.completed`` travels on another topic and may come later.
        known = OrderRefund(
            event.refund_id,
            event.amount,
            RefundState.REQUESTED,
            "cancelled",
            now,
            compensation=True,
        )
        working = replace(order, refunds=(*order.refunds, known))
        if not working.captured and isinstance(event, PaymentRefunded) and event.charge_id:
            working = replace(working, captured=order.amount, charge_id=event.charge_id)
    if known.state is not RefundState.REQUESTED:
        same = (known.state is RefundState.COMPLETED) == isinstance(event, PaymentRefunded)
        reason = "duplicate" if same else f"refund {event.refund_id} already {known.state}"
        return Transition(order, False, reason, anomaly=not same)
    if isinstance(event, RefundFailed):
        failed = replace(known, state=RefundState.FAILED, decline=event.reason)
        # A compensation that fails leaves a cancelled customer's money taken: a person must
        # look (the dead-letter topic is the alert), although the order records it.
        return Transition(
            _with_refund(working, failed, now),
            True,
            "compensation refund refused" if event.compensation else "",
            anomaly=event.compensation,
        )
    if working.refunded + event.amount > working.captured:
        return Transition(
            order,
            False,
            f"refund of {event.amount} would exceed the captured {working.captured} "
            f"(refunded {working.refunded})",
            anomaly=True,
        )
    done = replace(known, state=RefundState.COMPLETED, gateway_refund_id=event.gateway_refund_id)
    refunded = replace(_with_refund(working, done, now), refunded=working.refunded + event.amount)
    if refunded.status is not OrderStatus.CANCELLED:
        full = refunded.refunded == refunded.captured
        status = OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED
        refunded = replace(refunded, status=status)
    return Transition(refunded, True)


def _refund_problem(
    order: Order, known: OrderRefund | None, event: PaymentRefunded | RefundFailed
) -> str:
    """Why a refund's outcome contradicts the order ("" when it does not)."""
    if event.currency != order.currency:
        return f"refund in {event.currency}, order in {order.currency}"
    if known is not None:
        if known.amount != event.amount:
            return f"refund {event.refund_id} of {event.amount}, {known.amount} was asked"
        return ""
    if not (event.compensation and order.status is OrderStatus.CANCELLED):
        return f"unknown refund {event.refund_id}"
    if event.amount != order.amount:  # a compensation gives the whole charge back
        return f"compensation of {event.amount}, the charge was {order.amount}"
    if order.decline is not None:
        return "compensation of a declined charge"
    return ""


def _with_refund(order: Order, refund: OrderRefund, now: str) -> Order:
    refunds = tuple(refund if r.refund_id == refund.refund_id else r for r in order.refunds)
    return replace(order, refunds=refunds, updated_at=now)
