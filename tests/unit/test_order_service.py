"""The order service over fakes of its ports: placing, duplicates, payment results, dead letters
and stall nudges, each through ``handle`` / ``nudge_stalled`` as the app drives them."""

from __future__ import annotations

import asyncio
import dataclasses

from orderflow.agents.dead_letters import DeadLetters
from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.domain.events import OrderCreated, PaymentCompleted, PaymentFailed, PlaceOrder
from orderflow.domain.order import OrderStatus
from orderflow.domain.payment import Decline
from orderflow.topics import ORDER_COMMANDS, PAYMENT_COMPLETED, PAYMENT_FAILED
from orderflow.watch import OrderWatch
from orderflow.wire import encode_event
from orderflow.wire.dead_letters import DLQ_HEADER_OFFSET, DLQ_HEADER_REASON, DLQ_HEADER_TOPIC
from tests.fakes import Event, FakeOrderStore, FakePublisher, FakeRecordTopic, event, no_sleep
from tests.unit.builders import ITEMS_TOTAL, TOKEN, place_command

T0 = 1_714_564_800.0  # builders.T0, 2024-05-01T12:00:00Z, in seconds


class Stack:
    """An order service over fakes, with the real dead-letter guard over a fake topic."""

    def __init__(self, stall_after: float = 30.0) -> None:
        self.now = T0
        self.orders = FakeOrderStore()
        self.published = FakePublisher()
        self.dead_letter_topic = FakeRecordTopic()
        self.watch = OrderWatch()
        self.stalled = StalledOrders(stall_after)
        self.service = OrderService(
            self.orders,
            self.published,
            DeadLetters(self.dead_letter_topic, sleep=no_sleep),
            self.watch,
            self.stalled,
            clock=lambda: self.now,
        )

    def reasons(self) -> list[str]:
        return self.dead_letter_topic.header(DLQ_HEADER_REASON)


def _place(command: PlaceOrder | None = None, offset: int = 36) -> Event:
    command = command or place_command()
    key = command.order_id.encode()
    return event(ORDER_COMMANDS, encode_event(command), key=key, partition=5, offset=offset)


def _paid(order_id: str = "ord-1", amount: int = ITEMS_TOTAL, offset: int = 3) -> Event:
    paid = PaymentCompleted(order_id, amount, "USD", "ch_1", "2024-05-01T12:00:09.000Z")
    return event(PAYMENT_COMPLETED, encode_event(paid), key=order_id.encode(), offset=offset)


def _failed(order_id: str = "ord-1") -> Event:
    decline = Decline("card_declined", "The card was declined.", False)
    failed = PaymentFailed(order_id, ITEMS_TOTAL, "USD", decline, "2024-05-01T12:00:09.000Z")
    return event(PAYMENT_FAILED, encode_event(failed), key=order_id.encode())


async def test_a_place_order_stores_the_order_pending_and_publishes_order_created() -> None:
    stack = Stack()
    await stack.service.handle(_place())
    stored = stack.orders.get("ord-1")
    assert stored is not None
    assert (stored.status, stored.amount, stored.command_offset) == (
        OrderStatus.PENDING,
        ITEMS_TOTAL,
        36,
    )
    (created,) = stack.published.created()
    assert (created.order_id, created.amount, created.payment_token) == (
        "ord-1",
        ITEMS_TOTAL,
        TOKEN,
    )
    assert "ord-1" in stack.stalled.due_at  # watched until it settles
    assert stack.reasons() == []


async def test_a_waiting_post_is_woken_when_its_order_is_stored() -> None:
    stack = Stack()
    waiting = asyncio.ensure_future(
        stack.watch.wait_for("ord-1", lambda: stack.orders.get("ord-1"), bool, timeout=30)
    )
    await asyncio.sleep(0)
    await stack.service.handle(_place())
    stored = await asyncio.wait_for(waiting, timeout=5)  # woken, not after its 30 s
    assert stored is not None and stored.order_id == "ord-1"


async def test_a_duplicate_command_stores_nothing_new_and_publishes_order_created_again() -> None:
    # Redelivered (a crash between the store and the publish): order.created again, so that the
    # payment service is reached; it is idempotent.
    stack = Stack()
    await stack.service.handle(_place())
    first = stack.orders.get("ord-1")
    await stack.service.handle(_place(place_command(request_id="another-request"), offset=37))
    assert stack.orders.get("ord-1") == first and stack.orders.writes == 1
    assert [e.order_id for e in stack.published.created()] == ["ord-1", "ord-1"]


async def test_a_duplicate_command_of_a_settled_order_publishes_nothing() -> None:
    stack = Stack()
    await stack.service.handle(_place())
    await stack.service.handle(_paid())
    await stack.service.handle(_place())
    assert len(stack.published.created()) == 1
    stored = stack.orders.get("ord-1")
    assert stored is not None and stored.status is OrderStatus.PAID


async def test_a_command_reusing_an_idempotency_key_with_another_body_changes_nothing() -> None:
    stack = Stack()
    await stack.service.handle(_place())
    first = stack.orders.get("ord-1")
    await stack.service.handle(_place(place_command(fingerprint="fp-other"), offset=37))
    assert stack.orders.get("ord-1") == first
    assert len(stack.published.created()) == 1
    assert stack.reasons() == []  # a client's mistake, answered 422 by the API: no dead letter


async def test_a_payment_completed_makes_the_order_paid_and_forgets_its_stall_watch() -> None:
    stack = Stack()
    await stack.service.handle(_place())
    await stack.service.handle(_paid())
    stored = stack.orders.get("ord-1")
    assert stored is not None and stored.status is OrderStatus.PAID
    assert "ord-1" not in stack.stalled.due_at
    await stack.service.handle(_paid(offset=4))  # redelivered: nothing changes
    assert stack.orders.get("ord-1") == stored and stack.reasons() == []


async def test_a_payment_failed_makes_the_order_payment_failed() -> None:
    stack = Stack()
    await stack.service.handle(_place())
    await stack.service.handle(_failed())
    stored = stack.orders.get("ord-1")
    assert stored is not None and stored.status is OrderStatus.PAYMENT_FAILED


async def test_a_payment_result_for_an_unknown_order_is_dead_lettered_untouched() -> None:
    stack = Stack()
    result = _paid("ord-unknown", offset=41)
    await stack.service.handle(result)
    assert stack.orders.rows == {} and stack.published.events == []
    (parked,) = stack.dead_letter_topic.sent
    assert (parked.key, parked.value) == (result.message.key, result.message.value)
    headers = dict(parked.headers)
    assert headers[DLQ_HEADER_REASON] == b"payment result for an unknown order"
    assert (headers[DLQ_HEADER_TOPIC], headers[DLQ_HEADER_OFFSET]) == (b"payment.completed", b"41")


async def test_a_contradictory_payment_result_is_dead_lettered_as_refused() -> None:
    stack = Stack()
    await stack.service.handle(_place())
    await stack.service.handle(_paid())
    await stack.service.handle(_failed())  # the order is PAID: a failure cannot follow
    stored = stack.orders.get("ord-1")
    assert stored is not None and stored.status is OrderStatus.PAID
    (reason,) = stack.reasons()
    assert reason.startswith("refused: ")


async def test_an_event_whose_key_is_not_its_order_id_is_dead_lettered_as_malformed() -> None:
    # The key picks the partition, hence the single writer of the order.
    stack = Stack()
    wrong = dataclasses.replace(_place(), message=dataclasses.replace(_place().message, key=b"x"))
    await stack.service.handle(wrong)
    assert stack.orders.rows == {} and stack.published.events == []
    assert stack.reasons() == ["malformed: key b'x' differs from order_id"]


async def test_an_undecodable_command_is_dead_lettered_as_malformed() -> None:
    stack = Stack()
    await stack.service.handle(event(ORDER_COMMANDS, b"{not json", key=b"ord-1"))
    assert stack.orders.rows == {}
    (reason,) = stack.reasons()
    assert reason.startswith("malformed: ")


async def test_an_order_created_on_the_command_topic_is_dead_lettered_as_malformed() -> None:
    stack = Stack()
    created = OrderCreated("ord-1", "c", "USD", 1, (), TOKEN, "2024-05-01T12:00:00.000Z")
    await stack.service.handle(event(ORDER_COMMANDS, encode_event(created), key=b"ord-1"))
    assert stack.orders.rows == {}
    (reason,) = stack.reasons()
    assert reason.startswith("malformed: ")


# -- stall nudges ---------------------------------------------------------------------------------


async def test_an_order_pending_past_the_stall_time_gets_order_created_again_then_backs_off() -> (
    None
):
    stack = Stack(stall_after=30.0)
    await stack.service.handle(_place())  # stored at T0 (its command's time)
    stack.now = T0 + 29
    assert await stack.service.nudge_stalled(lambda order_id: True) == 0
    stack.now = T0 + 30
    assert await stack.service.nudge_stalled(lambda order_id: True) == 1
    # No command reader here: the copy goes without a token (the payment service finishes it
    # from PaymentDB, or dead-letters it; tests/unit/test_tokenless_nudge.py).
    assert [(e.order_id, e.payment_token) for e in stack.published.created()] == [
        ("ord-1", TOKEN),
        ("ord-1", ""),
    ]
    stack.now = T0 + 30 + 59  # the next nudge waits twice as long
    assert await stack.service.nudge_stalled(lambda order_id: True) == 0
    stack.now = T0 + 30 + 60
    assert await stack.service.nudge_stalled(lambda order_id: True) == 1


async def test_a_settled_order_and_an_order_owned_elsewhere_are_not_nudged() -> None:
    stack = Stack(stall_after=30.0)
    await stack.service.handle(_place())
    await stack.service.handle(_place(place_command(order_id="ord-2"), offset=37))
    await stack.service.handle(_paid("ord-1"))
    stack.now = T0 + 60
    assert await stack.service.nudge_stalled(lambda order_id: order_id != "ord-2") == 0
    assert len(stack.published.created()) == 2  # the two first order.created only
    assert "ord-2" in stack.stalled.due_at  # asked again at the next tick, if ours by then
    assert await stack.service.nudge_stalled(lambda order_id: True) == 1
