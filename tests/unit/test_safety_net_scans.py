"""The safety-net timers' rescans: chunked, only new partitions, due times kept across rebalances."""

from __future__ import annotations

import asyncio

import pytest

from orderflow.agents.order_agent import NUDGE_TICK_S
from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.payments import PaymentService, UnknownPayments
from orderflow.domain.events import rfc3339
from orderflow.domain.order import Order, OrderStatus
from orderflow.domain.payment import PaymentRecord, PaymentStatus
from orderflow.domain.validation import LineItem
from orderflow.tables.scan import HeldThroughout, PartitionScan, order_partition
from orderflow.watch import OrderWatch
from tests.fakes import (
    FakeGateway,
    FakeOrderStore,
    FakePaymentStore,
    FakePublisher,
    PassingDeadLetters,
)

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


def _service(
    orders: FakeOrderStore, stalled: StalledOrders, now: list[float]
) -> tuple[OrderService, FakePublisher]:
    """An order service without a command reader: its nudges go without a token."""
    publisher = FakePublisher()
    service = OrderService(
        orders, publisher, PassingDeadLetters(), OrderWatch(), stalled, clock=lambda: now[0]
    )
    return service, publisher


def _nudged(publisher: FakePublisher) -> list[str]:
    return [e.order_id for e in publisher.created()]


class _WatchedStalled(StalledOrders):
    """Notes, for each row tracked, how often the loop had run other tasks (``ticks``)."""

    def __init__(self, stall_after: float, ticks: list[int]) -> None:
        super().__init__(stall_after)
        self.ticks = ticks
        self.seen: list[int] = []

    def track(self, order: Order, now: float, *, written: bool = False) -> None:
        self.seen.append(self.ticks[0])
        super().track(order, now, written=written)


def test_rescan_yields_to_the_loop_at_least_every_n_rows() -> None:
    orders = FakeOrderStore()
    for i in range(2_500):
        orders.place(_order(f"o{i}", "PAID"), i % 2)
    ticks = [0]
    stalled = _WatchedStalled(10, ticks)
    stalled.scan = PartitionScan(every=100)
    stalled.scan.assigned({0, 1})
    service, _ = _service(orders, stalled, [T0])
    seen = stalled.seen  # how often the loop ran other tasks before each row

    async def scenario() -> None:
        async def ticker() -> None:
            while True:
                ticks[0] += 1
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
    orders = FakeOrderStore()
    orders.place(_order("stalled", updated=T0), 0)
    for i in range(50):
        orders.place(_order(f"paid{i}", "PAID"), 1)
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
    assert _nudged(topic) == []
    # ...never push the nudge back: due 10 s after the order's own stored time.
    now[0] = T0 + 10
    assert asyncio.run(service.nudge_stalled(lambda _: True)) == 1
    assert _nudged(topic) == ["stalled"]
    # Partition 0 was never read again; partition 1 once per time it came back.
    assert orders.reads - reads == 2 * 50
    assert orders.writes == 0  # a nudge never writes OrderDB


def test_a_partition_held_at_every_generation_is_not_read_again() -> None:
    held = HeldThroughout()
    held.assigned(7, {0, 1})
    assert held.settled({0, 1}) == {0, 1}  # the first assignment: everything is new
    held.assigned(8, {0, 1, 2})
    assert held.settled({0, 1, 2}) == {2}


def test_a_partition_another_worker_held_between_two_settles_is_read_again() -> None:
    held = HeldThroughout()
    held.assigned(7, {0, 1})
    held.settled({0, 1})
    held.assigned(8, {0})  # partition 1 elsewhere; this assignment never settles ...
    held.assigned(9, {0, 1})  # ... and it is back
    assert held.settled({0, 1}) == {1}


def test_a_missed_generation_makes_every_partition_suspect() -> None:
    held = HeldThroughout()
    held.assigned(7, {0, 1})
    held.settled({0, 1})
    # Generation 8 went on without this worker (it joined late, or was thrown out): its
    # partitions were other workers' then, whatever it holds at 7 and 9.
    held.assigned(9, {0, 1})
    assert held.settled({0, 1}) == {0, 1}


def test_a_rescan_reads_a_kept_partition_again() -> None:
    scan = PartitionScan()
    scan.assigned({0, 1})
    asyncio.run(scan.run(lambda p: [], lambda raw: raw, lambda value: None))
    assert scan.pending == set()
    scan.assigned({0, 1})
    assert scan.pending == set()  # kept: not read again ...
    scan.assigned({0, 1}, rescan={1})
    assert scan.pending == {1}  # ... unless another worker may have written it


def test_nudges_skip_orders_of_other_owners_and_terminal_orders() -> None:
    orders = FakeOrderStore()
    orders.place(_order("mine"), 0)
    orders.place(_order("theirs"), 0)
    orders.place(_order("done"), 0)
    stalled = StalledOrders(stall_after=10)
    now = [T0]
    service, topic = _service(orders, stalled, now)
    stalled.scan.assigned({0})
    asyncio.run(service.nudge_stalled(lambda _: True))
    orders.place(_order("done", "PAID"), 0)  # settled since it was indexed
    now[0] = T0 + 11
    assert asyncio.run(service.nudge_stalled(lambda order_id: order_id != "theirs")) == 1
    assert _nudged(topic) == ["mine"]
    assert "done" not in stalled.due_at  # forgotten for good
    assert "theirs" in stalled.due_at  # its owner may change back: kept, not nudged here


def test_a_rescan_keeps_pending_reconcile_requests() -> None:
    # Each rescan used to forget what had been asked: a rebalance every few seconds asked again
    # and again for the same UNKNOWN payment.
    record = PaymentRecord(
        "o1", "key-o1", 100, "EUR", PaymentStatus.UNKNOWN, attempts=1, next_attempt_at=T0
    )
    unknown = UnknownPayments(request_timeout=30)
    payments, publisher = FakePaymentStore(), FakePublisher()
    payments.put(record)
    gateway = FakeGateway(AssertionError("no gateway call here"))
    now = [T0]
    service = PaymentService(
        payments, gateway, publisher, PassingDeadLetters(), unknown, clock=lambda: now[0]
    )
    home = order_partition("o1", 8)
    unknown.scan.assigned({home})
    assert asyncio.run(service.request_due_reconciliations()) == 1
    for step in range(5):
        now[0] = T0 + 1 + step
        other = (home + 1) % 8
        unknown.scan.assigned({home, other} if step % 2 else {home}, rescan_all=step == 2)
        assert asyncio.run(service.request_due_reconciliations()) == 0
    assert publisher.reconciliations == ["o1"]
    assert gateway.requests == [] and gateway.lookups == []


def test_indexes_forget_the_partitions_that_moved_away() -> None:
    # Finding 4: a worker that once held an UNKNOWN payment (or a PENDING order) must stop
    # publishing for it once its partition moved, and the index must not grow without bound.
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
    orders = FakeOrderStore()
    orders.place(_order("stalled", updated=T0), 0)
    stalled = StalledOrders(stall_after=10)
    now = [T0 + 10]
    service, topic = _service(orders, stalled, now)
    stalled.scan.assigned({0})
    for step in range(5):  # five ticks while the partition is moving
        now[0] = T0 + 10 + step
        assert asyncio.run(service.nudge_stalled(lambda _: False)) == 0
    now[0] = T0 + 15  # settled again, ours: nudged at once, not 10 * 2**5 s later
    assert asyncio.run(service.nudge_stalled(lambda _: True)) == 1
    assert _nudged(topic) == ["stalled"]


@pytest.mark.parametrize("phase", [x / 2 for x in range(24)])
def test_a_stalled_order_is_nudged_in_the_first_window_its_worker_owns_it(phase: float) -> None:
    # Workers joining and leaving every 12 s, and a loaded worker that recovers its tables for
    # 9 s of each cycle: it owns the order's partition (ready) 3 s out of 12. The app's timer
    # ticks every NUDGE_TICK_S. A pass every stall_after / 5 = 6 s alone (the timer before)
    # never nudged in 120 s for 12 of these 24 phases: its ticks kept falling outside the windows.
    orders = FakeOrderStore()
    orders.place(_order("stalled", updated=T0), 0)
    stalled = StalledOrders(stall_after=30)
    now = [T0]
    service, _ = _service(orders, stalled, now)
    stalled.scan.assigned({0})

    def owned_at(t: float) -> bool:
        return (t - T0 - phase) % 12 >= 9

    ticks = [T0 + n * NUDGE_TICK_S for n in range(int(120 / NUDGE_TICK_S))]
    nudged_at: list[float] = []
    for now[0] in ticks:
        if asyncio.run(service.nudge_paced(lambda _: owned_at(now[0]), every=30 / 5)):
            nudged_at.append(now[0])
    first_owned_once_due = next(t for t in ticks if t >= T0 + 30 and owned_at(t))
    assert nudged_at[:1] == [first_owned_once_due]
