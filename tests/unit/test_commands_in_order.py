"""The order service handles a partition's commands in offset order, whatever Faust delivers.

A command that reaches it ahead of a hole has the hole read from Kafka (``CommandLog.read``) and
handled first.

A chaos run saw records 45.. of a command partition reach the order agent before 36..44 after a
rebalance (36..44 came back only with the read-again of the hole, 16 s later). With POSTs
accepted durably by any worker, two PlaceOrders of one Idempotency-Key can both be in Kafka
before the owner reads either: the one at 45 (another body, 202'd during the move) was stored,
and the first, at 36, was refused as a reused key. The client of the first had its order placed
with the other body.
"""

from __future__ import annotations

from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.progress import CommandProgress, CommandRecord
from orderflow.topics import ORDER_COMMANDS
from orderflow.watch import OrderWatch
from orderflow.wire import encode_event
from tests.fakes import (
    FakeOrderStore,
    FakePublisher,
    PassingDeadLetters,
    ReadableCommands,
    event_of,
)
from tests.unit.builders import place_command


def _record(offset: int, fingerprint: str) -> CommandRecord:
    command = place_command(order_id="ord-1", fingerprint=fingerprint, request_id=f"r-{offset}")
    return CommandRecord(ORDER_COMMANDS, 5, offset, b"ord-1", encode_event(command), ())


def _service(kafka: ReadableCommands, committed: int | None) -> tuple[OrderService, FakeOrderStore]:
    progress = CommandProgress(8, lambda partition: committed, kafka)
    orders = FakeOrderStore()
    service = OrderService(
        orders,
        FakePublisher(),
        PassingDeadLetters(),
        OrderWatch(),
        StalledOrders(30.0),
        progress=progress,
    )
    return service, orders


# Offsets 36..45 of partition 5: the first body at 36, the same key with another body after.
_LOG = [_record(o, "fp-first-body" if o == 36 else "fp-other-body") for o in range(36, 46)]


async def test_a_command_ahead_of_a_hole_has_the_hole_read_first_and_the_first_body_wins() -> None:
    kafka = ReadableCommands(_LOG)
    service, orders = _service(kafka, committed=36)
    await service.handle(event_of(_LOG[-1]))  # offset 45 delivered first, out of order
    assert kafka.reads == [(5, 36, 45)]
    stored = orders.get("ord-1")
    assert stored is not None and stored.fingerprint == "fp-first-body"
    for record in _LOG:  # Faust delivers 36..45 again later: duplicates, nothing changes
        await service.handle(event_of(record))
    assert kafka.reads == [(5, 36, 45)]
    assert orders.get("ord-1") == stored


async def test_commands_in_order_read_nothing_from_kafka() -> None:
    kafka = ReadableCommands(_LOG)
    service, orders = _service(kafka, committed=36)
    for record in _LOG:
        await service.handle(event_of(record))
    assert kafka.reads == []
    stored = orders.get("ord-1")
    assert stored is not None and stored.fingerprint == "fp-first-body"


async def test_with_nothing_known_of_the_partition_nothing_is_read() -> None:
    kafka = ReadableCommands(_LOG)
    service, orders = _service(kafka, committed=None)
    await service.handle(event_of(_LOG[-1]))
    assert kafka.reads == [] and orders.get("ord-1") is not None


async def test_commands_read_ahead_of_a_hole_log_under_their_own_order_id() -> None:
    # Regression: they were handled inside the triggering event's order_context, so their log
    # lines named the wrong order.
    from orderflow.logs import current_order, order_context

    first = CommandRecord(
        ORDER_COMMANDS,
        5,
        36,
        b"ord-1",
        encode_event(place_command(order_id="ord-1", fingerprint="fp", request_id="r-36")),
        (),
    )
    second = CommandRecord(
        ORDER_COMMANDS,
        5,
        37,
        b"ord-2",
        encode_event(place_command(order_id="ord-2", fingerprint="fp", request_id="r-37")),
        (),
    )
    service, _ = _service(ReadableCommands([first, second]), committed=36)
    seen: list[tuple[str, str | None]] = []
    service.on_created = lambda order: seen.append((order.order_id, current_order.get()))
    with order_context(b"ord-2"):  # as the app wraps the event that arrived (offset 37)
        await service.handle(event_of(second))
    assert seen == [("ord-1", "ord-1"), ("ord-2", "ord-2")]
