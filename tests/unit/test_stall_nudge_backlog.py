"""An order PENDING behind a backlog is queued, not stalled: the nudge waits for its consumers.

The pipeline benchmark injected 100,000 orders; those still queued after ``stall_after`` were
nudged (``order.created`` published again), the copies joined the queue (1.52 ``order.created``
per order) and the drain never ended. A due order is now nudged only once the consumers after
it (``DownstreamProgress``) have read past where their partitions ended when it was found due,
or have stood still for ``stall_after``.
"""

from __future__ import annotations

from collections.abc import Mapping

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
from tests.unit.builders import place_command

PARTITIONS = 8
STALL_AFTER = 30.0


class Downstream:
    """The consumers after the order service, as the nudge sees them."""

    def __init__(self) -> None:
        self.end: dict[str, int] = {ORDER_CREATED: 500, PAYMENT_COMPLETED: 200}
        self.at: dict[str, int | None] = {ORDER_CREATED: 100, PAYMENT_COMPLETED: 200}

    async def ends(self, partition: int) -> Mapping[str, int]:
        return dict(self.end)

    def committed(self, partition: int) -> Mapping[str, int | None]:
        return dict(self.at)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def _service_with_a_due_order(
    downstream: Downstream,
) -> tuple[OrderService, FakePublisher, Clock]:
    command = place_command(order_id="ord-1")
    partition = order_partition("ord-1", PARTITIONS)
    record = CommandRecord(ORDER_COMMANDS, partition, 7, b"ord-1", encode_event(command), ())
    kafka, sent, clock = ReadableCommands([record]), FakePublisher(), Clock()
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
    )
    await service.handle(event_of(record))
    clock.now += STALL_AFTER + 1  # due
    return service, sent, clock


def _copies(sent: FakePublisher) -> int:
    return len(sent.created()) - 1  # the first order.created is the order's own


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

    armed_at = gates.opened(3, {ORDER_CREATED: 10}, now=110.0)

    assert armed_at == 100.0 and not gates.armed(3)
    assert stalled.due_by(["early", "late"], armed_at) == ["early"]


def test_a_gate_of_a_partition_that_moved_away_is_forgotten() -> None:
    stalled = StalledOrders(STALL_AFTER, partitions=PARTITIONS)
    stalled.gates.arm(3, {ORDER_CREATED: 10}, {ORDER_CREATED: 4}, now=100.0)
    stalled.gates.arm(5, {ORDER_CREATED: 10}, {ORDER_CREATED: 4}, now=100.0)

    stalled.assigned({5})

    assert not stalled.gates.armed(3) and stalled.gates.armed(5)
