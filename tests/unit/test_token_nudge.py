"""OrderDB never holds the payment token: a stall nudge takes it from the PlaceOrder command.

The order is stored with where its command is (``command_offset``); a nudge (``order.created``
published again for an order PENDING too long) reads the command there for the token. When the
command is gone (expired with the topic's retention) the copy goes without a token: the payment
service finishes it from PaymentDB, or dead-letters it (tests/unit/test_tokenless_nudge.py).
"""

from __future__ import annotations

from dataclasses import replace

from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.progress import CommandProgress, CommandRecord
from orderflow.topics import ORDER_COMMANDS
from orderflow.watch import OrderWatch
from orderflow.wire import encode_event, order_to_bytes
from tests.fakes import (
    FakeOrderStore,
    FakePublisher,
    PassingDeadLetters,
    ReadableCommands,
    event_of,
)
from tests.unit.builders import pending_order, place_command

TOKEN = "tok_chargeDeclinedInsufficientFunds"


def _stack(
    records: list[CommandRecord],
) -> tuple[OrderService, FakeOrderStore, ReadableCommands, FakePublisher]:
    kafka = ReadableCommands(records)
    orders, sent = FakeOrderStore(), FakePublisher()
    progress = CommandProgress(8, lambda partition: None, kafka)
    # Due once handled: the order is written at 1,000 s, and every later reading of the clock is
    # stall_after (1 s) on.
    readings = iter([1_000.0])
    service = OrderService(
        orders,
        sent,
        PassingDeadLetters(),
        OrderWatch(),
        StalledOrders(1.0),
        clock=lambda: next(readings, 1_001.0),
        progress=progress,
        commands=kafka,
    )
    return service, orders, kafka, sent


def _command_at(offset: int) -> CommandRecord:
    command = place_command(order_id="ord-1", payment_token=TOKEN)
    return CommandRecord(ORDER_COMMANDS, 5, offset, b"ord-1", encode_event(command), ())


async def test_stored_order_keeps_where_its_command_is_and_never_the_token() -> None:
    record = _command_at(36)
    service, orders, _, sent = _stack([record])
    await service.handle(event_of(record))
    stored = orders.get("ord-1")
    assert stored is not None and stored.command_offset == 36
    assert TOKEN.encode() not in order_to_bytes(stored)
    # The first order.created still carries it: the charge needs it.
    assert [e.payment_token for e in sent.created()] == [TOKEN]


async def test_nudge_reads_the_token_from_the_command_for_the_order_created_copy() -> None:
    record = _command_at(36)
    service, _, kafka, sent = _stack([record])
    await service.handle(event_of(record))

    assert await service.nudge_stalled(lambda order_id: True) == 1

    assert (36, 37) in [(start, stop) for _, start, stop in kafka.reads]
    copy = sent.created()[-1]
    assert copy.payment_token == TOKEN


async def test_nudge_without_its_command_sends_a_copy_without_a_token() -> None:
    record = _command_at(36)
    service, _, kafka, sent = _stack([record])
    await service.handle(event_of(record))

    kafka.expired.add(36)  # deleted with the command topic's retention
    assert await service.nudge_stalled(lambda order_id: True) == 1
    assert (36, 37) in [(start, stop) for _, start, stop in kafka.reads]
    assert sent.created()[-1].payment_token == ""


async def test_nudge_finds_the_token_of_an_order_of_a_later_key_generation() -> None:
    # A key reused after its retention places its order under a later generation's id, on the
    # same partition; the command stays keyed by generation 0's id. The stored order and its
    # command share the request id.
    record = _command_at(36)  # PlaceOrder of ord-1 (generation 0), request REQUEST_ID
    service, orders, _, sent = _stack([record])
    later = replace(
        pending_order(
            order_id="ord-1-g1",
            created_at="2020-01-01T00:00:00.000Z",
            updated_at="2020-01-01T00:00:00.000Z",
        ),
        command_offset=36,
    )
    orders.put(later)
    service.stalled.track(later, 0.0)

    assert await service.nudge_stalled(lambda order_id: True) == 1

    copy = sent.created()[-1]
    assert (copy.order_id, copy.payment_token) == ("ord-1-g1", TOKEN)
