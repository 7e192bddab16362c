"""The safety-net timers' rescans: chunked, only new partitions, due times kept across rebalances."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Any

from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.payments import PaymentService, UnknownPayments
from orderflow.agents.progress import CommandProgress, CommandRecord
from orderflow.domain.events import rfc3339
from orderflow.domain.order import Order, OrderStatus
from orderflow.domain.payment import PaymentRecord, PaymentStatus
from orderflow.domain.validation import LineItem
from orderflow.tables.scan import PartitionScan
from orderflow.topics import ORDER_COMMANDS
from orderflow.wire import (
    encode_event,
    order_from_bytes,
    order_to_bytes,
    payment_from_bytes,
    payment_to_bytes,
)
from tests.unit.builders import place_command

T0 = 1_800_000_000.0


def _order(order_id: str, status: str = "PENDING", updated: float = T0) -> Order:
    at = rfc3339(updated)
    return Order(
        order_id,
        "c-1",
        "EUR",
        (LineItem("SKU-1", 1, 100),),
        100,
        OrderStatus(status),
        at,
        at,
        "fp",
        "req",
    )


class FakeOrders:
    """OrderDB rows by partition, as raw bytes (what the stores hold)."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, bytes]] = {}
        self.reads = 0  # rows handed out by partition_rows
        self.commands: list[str] = []  # command topic offset -> order id

    def add(self, partition: int, order: Order) -> None:
        order = dataclasses.replace(order, command_offset=len(self.commands))
        self.commands.append(order.order_id)
        self.rows.setdefault(partition, {})[order.order_id] = order_to_bytes(order)

    def get(self, order_id: str) -> Order | None:
        for rows in self.rows.values():
            if order_id in rows:
                return order_from_bytes(rows[order_id])
        return None

    def put(self, order: Order) -> None:
        raise AssertionError("a nudge never writes OrderDB")

    def decode(self, raw: bytes) -> Order:
        return order_from_bytes(raw)

    def values(self) -> Iterable[Order]:  # the whole-table read the rescans used to do
        for rows in self.rows.values():
            for raw in rows.values():
                self.reads += 1
                yield order_from_bytes(raw)

    def partition_rows(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        for key, raw in self.rows.get(partition, {}).items():
            self.reads += 1
            yield key.encode(), raw


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, *, key: bytes, value: bytes) -> None:
        self.sent.append(key)


class FakeCommands:
    """The command topic: each order's PlaceOrder at its ``command_offset`` (a nudge reads the
    token there)."""

    def __init__(self, orders: FakeOrders) -> None:
        self.orders = orders

    async def read(self, partition: int, start: int, stop: int) -> list[CommandRecord]:
        order_id = self.orders.commands[start]
        command = encode_event(place_command(order_id=order_id))
        return [CommandRecord(ORDER_COMMANDS, partition, start, order_id.encode(), command, ())]


def _service(
    orders: FakeOrders, stalled: StalledOrders, now: list[float]
) -> tuple[OrderService, FakeTopic]:
    topic = FakeTopic()
    progress = CommandProgress(8, lambda partition: None, FakeCommands(orders))
    service = OrderService(
        orders,  # type: ignore[arg-type]
        topic,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        stalled,
        clock=lambda: now[0],  # type: ignore[arg-type]
        progress=progress,
    )
    return service, topic


def test_rescan_yields_to_the_loop_at_least_every_n_rows() -> None:
    orders = FakeOrders()
    for i in range(2_500):
        orders.add(i % 2, _order(f"o{i}", "PAID"))
    stalled = StalledOrders(stall_after=10)
    stalled.scan = PartitionScan(every=100)
    stalled.scan.assigned({0, 1})
    service, _ = _service(orders, stalled, [T0])
    ticks = 0
    seen: list[int] = []
    track = stalled.track

    def tracking(order: Order, now: float) -> None:
        seen.append(ticks)  # how often the loop ran other tasks before this row
        track(order, now)

    stalled.track = tracking  # type: ignore[method-assign]

    async def scenario() -> None:
        nonlocal ticks

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        await service.nudge_stalled(lambda _: True)
        task.cancel()

    asyncio.run(scenario())
    assert len(seen) == 2_500
    longest = max(seen.count(t) for t in set(seen))
    assert longest <= 100, f"{longest} rows read without yielding to the loop"


def test_a_rebalance_keeps_due_times_and_reads_only_new_partitions() -> None:
    orders = FakeOrders()
    orders.add(0, _order("stalled", updated=T0))
    for i in range(50):
        orders.add(1, _order(f"paid{i}", "PAID"))
    stalled = StalledOrders(stall_after=10)
    now = [T0 + 5]
    service, topic = _service(orders, stalled, now)
    stalled.scan.assigned({0})
    assert asyncio.run(service.nudge_stalled(lambda _: True)) == 0  # stored 5 s ago: not yet
    reads = orders.reads
    # Rebalances every few seconds (the partition stays; another one comes and goes)...
    for step, partitions in enumerate(({0, 1}, {0}, {0, 1}, {0})):
        now[0] = T0 + 6 + step
        stalled.scan.assigned(partitions)
        asyncio.run(service.nudge_stalled(lambda _: True))
    assert topic.sent == []
    # ...never push the nudge back: due 10 s after the order's own stored time.
    now[0] = T0 + 10
    assert asyncio.run(service.nudge_stalled(lambda _: True)) == 1
    assert topic.sent == [b"stalled"]
    # Partition 0 was never read again; partition 1 once per time it came back.
    assert orders.reads - reads == 2 * 50


def test_nudges_skip_orders_of_other_owners_and_terminal_orders() -> None:
    orders = FakeOrders()
    orders.add(0, _order("mine"))
    orders.add(0, _order("theirs"))
    orders.add(0, _order("done"))
    stalled = StalledOrders(stall_after=10)
    now = [T0]
    service, topic = _service(orders, stalled, now)
    stalled.scan.assigned({0})
    asyncio.run(service.nudge_stalled(lambda _: True))
    orders.add(0, _order("done", "PAID"))  # settled since it was indexed
    now[0] = T0 + 11
    assert asyncio.run(service.nudge_stalled(lambda order_id: order_id != "theirs")) == 1
    assert topic.sent == [b"mine"]
    assert "done" not in stalled.due_at  # forgotten for good
    assert "theirs" in stalled.due_at  # its owner may change back: kept, not nudged here


class FakePayments:
    def __init__(self, records: list[PaymentRecord]) -> None:
        self.rows = {r.order_id: payment_to_bytes(r) for r in records}

    def get(self, order_id: str) -> PaymentRecord | None:
        raw = self.rows.get(order_id)
        return None if raw is None else payment_from_bytes(raw)

    def decode(self, raw: bytes) -> PaymentRecord:
        return payment_from_bytes(raw)

    def partition_rows(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        return [(k.encode(), v) for k, v in self.rows.items()] if partition == 0 else []


def test_a_rescan_keeps_pending_reconcile_requests() -> None:
    # Each rescan used to forget what had been asked: a rebalance every few seconds asked again
    # and again for the same UNKNOWN payment.
    record = PaymentRecord(
        "o1", "key-o1", 100, "EUR", PaymentStatus.UNKNOWN, attempts=1, next_attempt_at=T0
    )
    unknown = UnknownPayments(request_timeout=30)
    sent: list[bytes] = []

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        sent.append(key)

    now = [T0]
    service = PaymentService(
        FakePayments([record]),  # type: ignore[arg-type]
        _no_gateway,
        publish,
        None,  # type: ignore[arg-type]
        unknown,  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    unknown.scan.assigned({0})
    assert asyncio.run(service.request_due_reconciliations()) == 1
    for step in range(5):
        now[0] = T0 + 1 + step
        unknown.scan.assigned({0, 1} if step % 2 else {0}, rescan_all=step == 2)
        assert asyncio.run(service.request_due_reconciliations()) == 0
    assert sent == [b"o1"]


async def _no_gateway() -> Any:
    raise AssertionError("no gateway call here")


def test_indexes_forget_the_partitions_that_moved_away() -> None:
    # Finding 4: a worker that once held an UNKNOWN payment (or a PENDING order) must stop
    # publishing for it once its partition moved, and the index must not grow without bound.
    from orderflow.tables.scan import order_partition

    ids = [f"o-{i}" for i in range(40)]
    unknown = UnknownPayments(request_timeout=30, partitions=4)
    stalled = StalledOrders(stall_after=10, partitions=4)
    for order_id in ids:
        unknown.track(
            PaymentRecord(order_id, "k", 100, "EUR", PaymentStatus.UNKNOWN, next_attempt_at=T0)
        )
        stalled.track(_order(order_id), T0)
    unknown.assigned({0, 1})
    stalled.assigned({0, 1})
    kept = {o for o in ids if order_partition(o, 4) in {0, 1}}
    assert 0 < len(kept) < len(ids)
    assert set(unknown.due_at) == kept
    assert set(unknown.take_due(T0 + 1)) == kept
    assert set(stalled.due_at) == kept


def test_a_due_order_skipped_while_its_partition_moves_is_nudged_at_the_next_owned_tick() -> None:
    # Seen with workers joining and leaving every few seconds: each tick that fell inside a
    # rebalance (owner unknown) spent a doubling of the order's backoff without nudging it, so
    # the stalled order was pushed out of reach of the watchdog.
    orders = FakeOrders()
    orders.add(0, _order("stalled", updated=T0))
    stalled = StalledOrders(stall_after=10)
    now = [T0 + 10]
    service, topic = _service(orders, stalled, now)
    stalled.scan.assigned({0})
    for step in range(5):  # five ticks while the partition is moving
        now[0] = T0 + 10 + step
        assert asyncio.run(service.nudge_stalled(lambda _: False)) == 0
    now[0] = T0 + 15  # settled again, ours: nudged at once, not 10 * 2**5 s later
    assert asyncio.run(service.nudge_stalled(lambda _: True)) == 1
    assert topic.sent == [b"stalled"]
