"""The stall nudge when the payment token cannot be read back, and what it costs to read it.

An order whose command is gone (an entry stored before ``command_offset``, or a command past the
topic's retention) is nudged all the same: with the legacy row's token when it has one, else
without a token; the payment service then finishes it from PaymentDB, or dead-letters it and
never charges. The nudge reads commands with its own reader (never the hot path's), knows a
command below the log start is gone without reading, and reads many orders' commands at once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from aiokafka.errors import KafkaConnectionError

from orderflow.agents.dead_letters import DeadLetters
from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.payments import PaymentService, UnknownPayments
from orderflow.agents.progress import CommandProgress, CommandRecord
from orderflow.domain.events import OrderCreated
from orderflow.domain.order import Order
from orderflow.domain.payment import Approved, PaymentRecord, PaymentStatus
from orderflow.metrics import dead_letter_reason
from orderflow.tables.scan import order_partition
from orderflow.topics import ORDER_COMMANDS, ORDER_CREATED
from orderflow.watch import OrderWatch
from orderflow.wire import decode_event, encode_event, order_from_bytes, order_to_bytes
from orderflow.wire.dead_letters import DLQ_HEADER_REASON
from orderflow.wire.schema import validate_event_dict
from tests.fakes import (
    Event,
    FakeGateway,
    FakeOrderStore,
    FakePaymentStore,
    FakePublisher,
    FakeRecordTopic,
    PassingDeadLetters,
    ReadableCommands,
    event,
)
from tests.unit.builders import T0, pending_order, place_command

TOKEN = "tok_chargeDeclinedInsufficientFunds"
PARTITIONS = 8


def _command(order_id: str, offset: int) -> CommandRecord:
    command = place_command(order_id=order_id, payment_token=f"{TOKEN}-{order_id}")
    return CommandRecord(ORDER_COMMANDS, 5, offset, order_id.encode(), encode_event(command), ())


def _stack(
    nudge_reader: ReadableCommands, orders: list[Order]
) -> tuple[OrderService, ReadableCommands, FakePublisher]:
    """An order service holding ``orders`` PENDING (due at once: stored long ago)."""
    hot_path = ReadableCommands([])  # the order agent's reader: the nudge must never use it
    rows, sent = FakeOrderStore(), FakePublisher()
    progress = CommandProgress(PARTITIONS, lambda partition: None, hot_path)
    service = OrderService(
        rows,
        sent,
        PassingDeadLetters(),
        OrderWatch(),
        StalledOrders(1.0),
        progress=progress,
        commands=nudge_reader,
    )
    for order in orders:
        rows.put(order)
        service.stalled.track(order, 1e10)
    return service, hot_path, sent


def _stored(order_id: str, offset: int | None) -> Order:
    return dataclasses.replace(pending_order(), order_id=order_id, command_offset=offset)


async def test_a_legacy_row_is_nudged_with_its_own_token_which_is_never_written_back() -> None:
    data = orjson.loads(order_to_bytes(pending_order()))
    del data["command_offset"]
    data["payment_token"] = TOKEN  # as OrderDB stored orders before the token work
    legacy = order_from_bytes(orjson.dumps(data))
    assert TOKEN not in repr(legacy)
    service, _, sent = _stack(ReadableCommands([]), [legacy])

    assert await service.nudge_stalled(lambda order_id: True) == 1

    assert [e.payment_token for e in sent.created()] == [TOKEN]
    assert TOKEN.encode() not in order_to_bytes(legacy)


async def test_a_row_without_command_offset_or_token_is_nudged_without_a_token() -> None:
    service, _, sent = _stack(ReadableCommands([]), [_stored("ord-1", None)])

    assert await service.nudge_stalled(lambda order_id: True) == 1

    assert [e.payment_token for e in sent.created()] == [""]


async def test_a_command_below_the_log_start_is_gone_at_once_without_reading_it() -> None:
    kafka = ReadableCommands([_command("ord-x", 40)])  # retention moved the log start to 40
    service, _, sent = _stack(kafka, [_stored("ord-1", 36)])

    assert await service.nudge_stalled(lambda order_id: True) == 1

    assert kafka.reads == []  # no seek below the log start (a 10 s spin at the broker)
    assert [e.payment_token for e in sent.created()] == [""]


async def test_the_nudge_reads_with_its_own_reader_never_the_order_agents() -> None:
    kafka = ReadableCommands([_command("ord-1", 36)])
    service, hot_path, sent = _stack(kafka, [_stored("ord-1", 36)])

    assert await service.nudge_stalled(lambda order_id: True) == 1

    assert hot_path.reads == []
    assert [(start, stop) for _, start, stop in kafka.reads] == [(36, 37)]
    assert [e.payment_token for e in sent.created()] == [f"{TOKEN}-ord-1"]


async def test_three_hundred_stalled_orders_cost_one_range_read_per_partition() -> None:
    ids = [f"ord-{i}" for i in range(300)]
    kafka = ReadableCommands([_command(order_id, i) for i, order_id in enumerate(ids)])
    service, _, sent = _stack(kafka, [_stored(order_id, i) for i, order_id in enumerate(ids)])

    assert await service.nudge_stalled(lambda order_id: True) == 300

    assert len(kafka.reads) <= PARTITIONS
    assert {e.order_id: e.payment_token for e in sent.created()} == {
        order_id: f"{TOKEN}-{order_id}" for order_id in ids
    }


async def test_a_tick_reads_at_most_its_batch_per_partition_and_the_rest_follow() -> None:
    ids = [f"ord-{i}" for i in range(300)]
    kafka = ReadableCommands([_command(order_id, i) for i, order_id in enumerate(ids)])
    service, _, sent = _stack(kafka, [_stored(order_id, i) for i, order_id in enumerate(ids)])
    service.nudge_batch = 10
    per_partition: dict[int, int] = {}
    for order_id in ids:
        p = order_partition(order_id, PARTITIONS)
        per_partition[p] = per_partition.get(p, 0) + 1

    first = await service.nudge_stalled(lambda order_id: True)

    assert first == sum(min(10, n) for n in per_partition.values())
    assert all(stop - start <= service.nudge_span for _, start, stop in kafka.reads)
    assert len(kafka.reads) <= PARTITIONS
    for _ in range(40):  # the orders left wait for later ticks (no backoff spent on them)
        if len(sent.created()) == 300:
            break
        await service.nudge_stalled(lambda order_id: True)
    assert sorted(e.order_id for e in sent.created()) == sorted(ids)


async def test_a_command_unreadable_now_sends_nothing_not_even_a_tokenless_copy() -> None:
    kafka = ReadableCommands([_command("ord-1", 36)])

    kafka.unreadable = KafkaConnectionError()  # the broker is away
    service, _, sent = _stack(kafka, [_stored("ord-1", 36)])

    assert await service.nudge_stalled(lambda order_id: True) == 0

    assert sent.events == []  # a tokenless copy would dead-letter an order still chargeable
    assert service.stalled.nudges["ord-1"] == 1  # asked again after the backoff


# --- the payment service and a tokenless order.created ----------------------------------------


def _payments(
    gateway: FakeGateway,
) -> tuple[PaymentService, FakePaymentStore, FakePublisher, FakeRecordTopic]:
    table, published, topic = FakePaymentStore(), FakePublisher(), FakeRecordTopic()
    service = PaymentService(
        table, gateway, published, DeadLetters(topic), UnknownPayments(), clock=lambda: 1000.0
    )
    return service, table, published, topic


def _tokenless() -> Event:
    created = OrderCreated("o1", "c-1", "EUR", 500, pending_order().items, "", T0)
    return event(ORDER_CREATED, encode_event(created), key=b"o1", offset=7)


def _record(**overrides: Any) -> PaymentRecord:
    record = PaymentRecord.first_attempt("o1", 500, "EUR", "tok_visa")
    return dataclasses.replace(record, **overrides)


async def test_tokenless_order_created_with_no_payment_record_is_dead_lettered_never_charged() -> (
    None
):
    gateway = FakeGateway(Approved("ch_1"))
    service, table, published, topic = _payments(gateway)

    await service.handle(_tokenless())

    assert gateway.requests == [] and table.rows == {} and published.events == []
    reasons = topic.header(DLQ_HEADER_REASON)
    assert reasons == ["payment token no longer available: the order's command is gone"]
    assert dead_letter_reason(reasons[0]) == "token_gone"


async def test_tokenless_order_created_for_a_payment_left_attempting_charges_with_its_token() -> (
    None
):
    gateway = FakeGateway(Approved("ch_1"), found=None)  # the lookup finds nothing: charge
    service, table, published, topic = _payments(gateway)
    table.put(_record(attempts=1))

    await service.handle(_tokenless())

    assert [r.payment_token for r in gateway.requests] == ["tok_visa"]
    assert table.rows["o1"].status is PaymentStatus.COMPLETED
    assert published.kinds() == ["payment.completed"] and topic.sent == []


async def test_tokenless_order_created_for_a_settled_payment_republishes_its_outcome() -> None:
    gateway = FakeGateway(Approved("ch_2"))
    service, table, published, topic = _payments(gateway)
    table.put(_record(attempts=1).settle(Approved("ch_1"), 900.0))

    await service.handle(_tokenless())

    assert gateway.requests == [] and published.kinds() == ["payment.completed"]
    assert topic.sent == []


def test_a_tokenless_order_created_has_no_token_field_and_validates() -> None:
    data = orjson.loads(encode_event(decode_event(_tokenless().message.value)))
    assert data["payment"] == {}
    validate_event_dict(data)
    data["payment"] = {"token": ""}  # an empty token is still malformed
    try:
        decode_event(orjson.dumps(data))
    except Exception as exc:
        assert "payment.token: empty" in str(exc)
    else:
        raise AssertionError("an empty token decoded")
