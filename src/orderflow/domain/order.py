"""The order state machine: PENDING -> PAID | PAYMENT_FAILED, and terminal states never change."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from orderflow.domain.events import OrderCreated, PaymentCompleted, PaymentFailed, PlaceOrder
from orderflow.domain.money import order_total
from orderflow.domain.payment import Decline
from orderflow.domain.validation import LineItem

__all__ = [
    "Order",
    "OrderStatus",
    "Placement",
    "PlacementKind",
    "Transition",
    "apply_payment",
    "place_order",
]


class OrderStatus(enum.StrEnum):
    """The states of an order. Only PENDING moves; the other two are terminal."""

    PENDING = "PENDING"
    PAID = "PAID"
    PAYMENT_FAILED = "PAYMENT_FAILED"

    @property
    def is_terminal(self) -> bool:
        return self is not OrderStatus.PENDING


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


def apply_payment(order: Order, event: PaymentCompleted | PaymentFailed, now: str) -> Transition:
    """Move a PENDING order to PAID or PAYMENT_FAILED; anything else leaves it as it is."""
    if order.status.is_terminal:
        same = (order.status is OrderStatus.PAID) == isinstance(event, PaymentCompleted)
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
    if isinstance(event, PaymentCompleted):
        paid = replace(order, status=OrderStatus.PAID, charge_id=event.charge_id, updated_at=now)
        return Transition(paid, True)
    failed = replace(
        order,
        status=OrderStatus.PAYMENT_FAILED,
        decline=event.reason,
        charge_id=event.charge_id,
        updated_at=now,
    )
    return Transition(failed, True)
