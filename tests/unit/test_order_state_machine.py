"""The order state machine: place_order and apply_payment."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orderflow.domain.events import OrderCreated, PaymentCompleted, PaymentFailed
from orderflow.domain.order import (
    Order,
    OrderStatus,
    PlacementKind,
    apply_payment,
    place_order,
)
from orderflow.domain.payment import decline_for
from tests.unit.builders import ITEMS, ITEMS_TOTAL, T0, T1, pending_order, place_command

DECLINE = decline_for("insufficient_funds")


def completed(amount: int = ITEMS_TOTAL, currency: str = "USD") -> PaymentCompleted:
    return PaymentCompleted("ord-1", amount, currency, "ch_123", T1)


def failed(amount: int = ITEMS_TOTAL, currency: str = "USD") -> PaymentFailed:
    return PaymentFailed("ord-1", amount, currency, DECLINE, T1, charge_id="ch_456")


def paid_order() -> Order:
    return apply_payment(pending_order(), completed(), T1).order


def failed_order() -> Order:
    return apply_payment(pending_order(), failed(), T1).order


# --- place_order ---------------------------------------------------------------------------


def test_first_place_order_creates_pending_order_and_publishes_order_created() -> None:
    command = place_command()

    placement = place_order(None, command)

    assert placement.kind is PlacementKind.CREATED
    order = placement.order
    assert order.status is OrderStatus.PENDING
    assert order.amount == ITEMS_TOTAL
    assert order.items == ITEMS
    assert (order.created_at, order.updated_at) == (T0, T0)
    assert (order.fingerprint, order.request_id) == (command.fingerprint, command.request_id)
    assert placement.publish == OrderCreated(
        "ord-1", "cust-42", "USD", ITEMS_TOTAL, ITEMS, "tok_visa", T0
    )


def test_replay_of_pending_order_republishes_the_same_order_created() -> None:
    existing = pending_order()
    replay = place_command(request_id="0d6c1a8e-1111-4c6e-9d52-1f0e2b3a4c5d", occurred_at=T1)

    placement = place_order(existing, replay)

    assert placement.kind is PlacementKind.REPLAYED
    assert placement.order is existing
    assert placement.publish == existing.created_event(replay.payment_token)
    # The copy is the first event again (same time, same event_id), not a second order.created.
    assert placement.publish is not None
    assert placement.publish.occurred_at == T0


@pytest.mark.parametrize("terminal", [paid_order, failed_order], ids=["PAID", "PAYMENT_FAILED"])
def test_replay_of_terminal_order_publishes_nothing(terminal: Callable[[], Order]) -> None:
    existing = terminal()

    placement = place_order(existing, place_command())

    assert placement.kind is PlacementKind.REPLAYED
    assert placement.order is existing
    assert placement.publish is None


@pytest.mark.parametrize("existing", [pending_order, paid_order], ids=["PENDING", "PAID"])
def test_same_key_with_different_body_is_a_conflict_that_changes_nothing(
    existing: Callable[[], Order],
) -> None:
    order = existing()

    placement = place_order(order, place_command(fingerprint="fp-bbbb", currency="EUR"))

    assert placement.kind is PlacementKind.CONFLICT
    assert placement.order is order
    assert placement.publish is None


# --- apply_payment -------------------------------------------------------------------------


def test_pending_order_becomes_paid_on_payment_completed() -> None:
    transition = apply_payment(pending_order(), completed(), T1)

    assert transition.changed
    assert not transition.anomaly
    assert transition.order.status is OrderStatus.PAID
    assert transition.order.charge_id == "ch_123"
    assert transition.order.decline is None
    assert transition.order.updated_at == T1
    assert transition.order.created_at == T0


def test_pending_order_becomes_payment_failed_on_payment_failed() -> None:
    transition = apply_payment(pending_order(), failed(), T1)

    assert transition.changed
    assert not transition.anomaly
    assert transition.order.status is OrderStatus.PAYMENT_FAILED
    assert transition.order.decline == DECLINE
    assert transition.order.charge_id == "ch_456"
    assert transition.order.updated_at == T1


@pytest.mark.parametrize(
    ("order", "event"),
    [
        pytest.param(paid_order(), completed(), id="PAID+completed"),
        pytest.param(failed_order(), failed(), id="PAYMENT_FAILED+failed"),
    ],
)
def test_terminal_order_ignores_duplicate_payment(
    order: Order, event: PaymentCompleted | PaymentFailed
) -> None:
    transition = apply_payment(order, event, "2024-05-02T00:00:00.000Z")

    assert not transition.changed
    assert not transition.anomaly
    assert transition.reason == "duplicate"
    assert transition.order is order


@pytest.mark.parametrize(
    ("order", "event"),
    [
        pytest.param(paid_order(), failed(), id="PAID+failed"),
        pytest.param(failed_order(), completed(), id="PAYMENT_FAILED+completed"),
    ],
)
def test_terminal_order_refuses_opposite_outcome_as_anomaly(
    order: Order, event: PaymentCompleted | PaymentFailed
) -> None:
    transition = apply_payment(order, event, "2024-05-02T00:00:00.000Z")

    assert not transition.changed
    assert transition.anomaly
    assert transition.order is order
    assert str(order.status) in transition.reason


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(completed(amount=ITEMS_TOTAL + 1), id="completed-amount"),
        pytest.param(completed(currency="EUR"), id="completed-currency"),
        pytest.param(failed(amount=ITEMS_TOTAL - 1), id="failed-amount"),
        pytest.param(failed(currency="JPY"), id="failed-currency"),
    ],
)
def test_payment_not_matching_amount_or_currency_is_refused_as_anomaly(
    event: PaymentCompleted | PaymentFailed,
) -> None:
    order = pending_order()

    transition = apply_payment(order, event, T1)

    assert not transition.changed
    assert transition.anomaly
    assert transition.order is order
    assert transition.order.status is OrderStatus.PENDING
    assert "does not match" in transition.reason


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (OrderStatus.PENDING, False),
        (OrderStatus.PAID, True),
        (OrderStatus.PAYMENT_FAILED, True),
    ],
)
def test_only_pending_is_not_terminal(status: OrderStatus, terminal: bool) -> None:
    assert status.is_terminal is terminal


def test_created_event_carries_the_order_fields() -> None:
    order = pending_order(currency="KWD", amount=2500)

    event = order.created_event("tok_visa")

    assert (event.order_id, event.currency, event.amount) == ("ord-1", "KWD", 2500)
    assert event.occurred_at == order.created_at
