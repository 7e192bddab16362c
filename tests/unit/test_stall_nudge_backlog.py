"""An order PENDING behind a backlog is queued, not stalled: the nudge waits for its consumers.

The pipeline benchmark injected 100,000 orders; those still queued after ``stall_after`` were
nudged (``order.created`` published again), the copies joined the queue (1.52 ``order.created``
per order) and the drain never ended. A due order is now nudged only once the consumers after
it (``DownstreamProgress``) have read past where their partitions ended when it was found due,
or have stood still for ``stall_after``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from orderflow.agents.downstream import DownstreamGates
from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.progress import CommandProgress, CommandRecord
from orderflow.tables.scan import order_partition
from orderflow.topics import ORDER_COMMANDS, ORDER_CREATED, PAYMENT_COMPLETED
from orderflow.watch import OrderWatch
from orderflow.wire import encode_event
from tests.fakes import (
    FakeOrderStore,
    FakePublisher,
    PassingDeadLetters,
    ReadableCommands,
    event_of,
)
from tests.unit.builders import T0, place_command

PARTITIONS = 8
STALL_AFTER = 30.0


class Downstream:
    """The consumers after the order service, as the nudge sees them."""

    stages = ((ORDER_CREATED,), (PAYMENT_COMPLETED,))

    def __init__(self) -> None:
        self.end: dict[str, int] = {ORDER_CREATED: 500, PAYMENT_COMPLETED: 200}
        self.at: dict[str, int | None] = {ORDER_CREATED: 100, PAYMENT_COMPLETED: 200}
        self.asked = 0  # ListOffsets round trips

    async def ends(self, partition: int, topics: Sequence[str]) -> Mapping[str, int]:
        self.asked += 1
        return {topic: self.end[topic] for topic in topics}

    def committed(self, partition: int) -> Mapping[str, int | None]:
        return dict(self.at)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def _service_with_a_due_order(
    downstream: Downstream,
    order_ids: tuple[str, ...] = ("ord-1",),
    nudge_batch: int = 200,
    handled_at: float | None = None,
) -> tuple[OrderService, FakePublisher, Clock]:
    """A service that has placed ``order_ids`` (their commands written at T0), then the clock
    moved ``STALL_AFTER`` on: due. ``handled_at``: the clock when they were placed, and not moved
    on after."""
    records = [
        CommandRecord(
            ORDER_COMMANDS,
            order_partition(order_id, PARTITIONS),
            7 + n,
            order_id.encode(),
            encode_event(place_command(order_id=order_id)),
            (),
        )
        for n, order_id in enumerate(order_ids)
    ]
    kafka, sent, clock = ReadableCommands(records), FakePublisher(), Clock()
    if handled_at is not None:
        clock.now = handled_at
    service = OrderService(
        FakeOrderStore(),
        sent,
        PassingDeadLetters(),
        OrderWatch(),
        StalledOrders(STALL_AFTER, partitions=PARTITIONS),
        clock=clock,
        progress=CommandProgress(PARTITIONS, lambda partition: None, kafka),
        commands=kafka,
        downstream=downstream,
        nudge_batch=nudge_batch,
    )
    for record in records:
        await service.handle(event_of(record))
    if handled_at is None:
        clock.now += STALL_AFTER + 1  # due
    return service, sent, clock


def _copies(sent: FakePublisher, orders: int = 1) -> int:
    return len(sent.created()) - orders  # each order's first order.created is its own


async def test_a_due_order_whose_consumers_are_still_working_through_a_backlog_is_not_nudged() -> (
    None
):
    downstream = Downstream()
    service, sent, clock = await _service_with_a_due_order(downstream)

    for _ in range(20):  # the payment service moves, but has not reached the mark (500) yet
        assert await service.nudge_stalled(lambda order_id: True) == 0
        downstream.at[ORDER_CREATED] = (downstream.at[ORDER_CREATED] or 0) + 10
        clock.now += STALL_AFTER / 5

    assert _copies(sent) == 0


async def test_a_due_order_is_nudged_once_its_consumers_passed_where_they_ended() -> None:
    downstream = Downstream()
    service, sent, clock = await _service_with_a_due_order(downstream)
    assert await service.nudge_stalled(lambda order_id: True) == 0  # marks taken: 500, 200

    downstream.at[ORDER_CREATED] = 500  # read past the order: still PENDING, so lost
    clock.now += 1

    assert await service.nudge_stalled(lambda order_id: True) == 1
    assert _copies(sent) == 1


async def test_a_due_order_is_nudged_when_its_consumers_stand_still() -> None:
    downstream = Downstream()
    service, sent, clock = await _service_with_a_due_order(downstream)
    assert await service.nudge_stalled(lambda order_id: True) == 0
    clock.now += STALL_AFTER - 1
    assert await service.nudge_stalled(lambda order_id: True) == 0  # not long enough

    clock.now += 1  # stuck at 100 for stall_after

    assert await service.nudge_stalled(lambda order_id: True) == 1
    assert _copies(sent) == 1


async def test_a_due_order_whose_consumers_are_elsewhere_is_nudged_as_before() -> None:
    downstream = Downstream()
    downstream.at[PAYMENT_COMPLETED] = None  # that partition is not read on this worker
    service, sent, _ = await _service_with_a_due_order(downstream)

    assert await service.nudge_stalled(lambda order_id: True) == 1
    assert _copies(sent) == 1


def test_an_order_that_became_due_after_the_gate_was_armed_waits_for_the_next_one() -> None:
    gates = DownstreamGates(patience=STALL_AFTER)
    gates.arm(3, {ORDER_CREATED: 10}, {ORDER_CREATED: 4}, now=100.0)
    stalled = StalledOrders(STALL_AFTER)
    stalled.due_at.update({"early": 90.0, "late": 105.0})

    assert gates.passed(3, {ORDER_CREATED: 10}, now=110.0)
    armed_at = gates.open(3)

    assert armed_at == 100.0 and not gates.armed(3)
    assert stalled.split_due(["early", "late"], armed_at) == (["early"], ["late"])


def test_a_gate_of_a_partition_that_moved_away_is_forgotten() -> None:
    stalled = StalledOrders(STALL_AFTER, partitions=PARTITIONS)
    stalled.gates.arm(3, {ORDER_CREATED: 10}, {ORDER_CREATED: 4}, now=100.0)
    stalled.gates.arm(5, {ORDER_CREATED: 10}, {ORDER_CREATED: 4}, now=100.0)

    stalled.assigned({5})

    assert not stalled.gates.armed(3) and stalled.gates.armed(5)


async def test_one_consumer_stuck_below_its_mark_opens_the_gate_while_another_moves() -> None:
    # order.created's commits held (a hole, a deferred record) while the order service keeps
    # committing payment results: the stuck one alone must open the gate.
    downstream = Downstream()
    service, sent, clock = await _service_with_a_due_order(downstream)
    for _ in range(3):  # 0, 10, 20 s: order.created stuck at 100, payment results moving
        assert await service.nudge_stalled(lambda order_id: True) == 0
        downstream.at[PAYMENT_COMPLETED] = (downstream.at[PAYMENT_COMPLETED] or 0) + 5
        downstream.end[PAYMENT_COMPLETED] += 5
        clock.now += STALL_AFTER / 3

    assert await service.nudge_stalled(lambda order_id: True) == 1
    assert _copies(sent) == 1


def _same_partition_ids(n: int) -> tuple[str, ...]:
    ids = (f"ord-{i}" for i in range(1000))
    first = order_partition("ord-0", PARTITIONS)
    return tuple([o for o in ids if order_partition(o, PARTITIONS) == first][:n])


async def test_idle_consumers_let_due_orders_through_at_once_and_a_batch_at_a_time() -> None:
    downstream = Downstream()
    downstream.at = {topic: end for topic, end in downstream.end.items()}  # nothing queued
    service, sent, _ = await _service_with_a_due_order(
        downstream, _same_partition_ids(3), nudge_batch=1
    )

    nudged = [await service.nudge_stalled(lambda order_id: True) for _ in range(3)]

    assert nudged == [1, 1, 1]  # one command read per partition and pass, no pass lost
    assert downstream.asked == 2  # one mark per stage: later passes need none
    assert _copies(sent, orders=3) == 3


def test_a_clock_set_back_restarts_the_wait_instead_of_suspending_it() -> None:
    gates = DownstreamGates(patience=STALL_AFTER)
    gates.arm(3, {ORDER_CREATED: 10}, {ORDER_CREATED: 4}, now=1_000.0)
    assert not gates.passed(3, {ORDER_CREATED: 4}, now=400.0)  # set back 600 s

    assert gates.passed(3, {ORDER_CREATED: 4}, now=400.0 + STALL_AFTER)


async def test_a_payment_result_published_after_the_gate_was_armed_is_waited_for() -> None:
    # 100,000 injected orders: the gate marked every downstream topic at once, the payment
    # service then passed order.created's mark, and the order was nudged while its payment result
    # (published after the marks were taken) waited for the order service: 35,000 copies.
    downstream = Downstream()
    service, sent, clock = await _service_with_a_due_order(downstream)
    assert await service.nudge_stalled(lambda order_id: True) == 0
    downstream.at[ORDER_CREATED] = 500  # the payment service handled the order...
    downstream.end[PAYMENT_COMPLETED] = 260  # ...and published its result, not yet read
    clock.now += 1

    assert await service.nudge_stalled(lambda order_id: True) == 0

    downstream.at[PAYMENT_COMPLETED] = 260  # read, and the order still PENDING: lost
    clock.now += 1
    assert await service.nudge_stalled(lambda order_id: True) == 1
    assert _copies(sent) == 1


async def test_an_order_placed_late_from_an_old_command_is_due_stall_after_its_placement() -> None:
    # Behind a backlog a command is handled minutes after it was written; the order stores the
    # command's time (T0), but its order.created has only just been sent.
    downstream = Downstream()
    downstream.at = {topic: end for topic, end in downstream.end.items()}  # nothing queued
    handled_at = datetime.fromisoformat(T0).timestamp() + 600  # 10 minutes late
    service, _, clock = await _service_with_a_due_order(downstream, handled_at=handled_at)

    assert await service.nudge_stalled(lambda order_id: True) == 0
    clock.now += STALL_AFTER
    assert await service.nudge_stalled(lambda order_id: True) == 1
