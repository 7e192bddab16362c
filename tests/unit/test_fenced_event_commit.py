"""An event whose handler the fence refused is never committed past before its redo ends.

Chaos run f2 (seed 4) lost an accepted order, ``orderflow.order-commands[2]`` offset 32: worker
w2 handled 31 and 32 in one batch, a revocation arrived between them, so 32's writes were refused
and its handler deferred (``Fence.run``). Faust acked the batch anyway; w2 kept partition 2 through
the rebalance and committed 33 at once. The redo then found the partition gone ("moved: in-flight
work left to its owner"), and the new owner started reading at 33: the order never reached OrderDB.

Driven with the real fence, ``FencedBatches`` and the consumer's commit decision (no broker).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from orderflow.agents.batches import FencedBatches
from orderflow.agents.dead_letters import DeadLetters
from orderflow.agents.in_flight import InFlight
from orderflow.agents.payments import PaymentService, UnknownPayments
from orderflow.fencing import Fence
from orderflow.gateway.base import TransientGatewayError
from tests.fakes import (
    Event,
    FakeGateway,
    FakePaymentStore,
    FakePublisher,
    FakeRecordTopic,
    event,
    no_sleep,
)
from tests.unit.builders import bare_consumer

COMMANDS = TP("orderflow.order-commands", 2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _acked_by_faust(consumer: Any, *offsets: int) -> None:
    """Faust acks a batch's events when the agent asks for the next batch, refused or not."""
    for offset in offsets:
        consumer._acked[COMMANDS].append(offset)
        consumer._acked_index[COMMANDS].add(offset)


def _commit(consumer: Any) -> int | None:
    """Faust's commit timer, for the command partition: the offset it commits (None: none)."""
    offset: int | None = consumer._new_offset(COMMANDS)
    if offset is not None:
        consumer._committed_offset[COMMANDS] = offset
    return offset


def _command(offset: int) -> Event:
    return event(COMMANDS.topic, b"{}", key=b"o%d" % offset, partition=2, offset=offset)


class Worker:
    """The fence, the agents' batch runner and the consumer of one worker."""

    def __init__(self) -> None:
        self.fence = Fence(freeze_after=5, clock=FakeClock())
        self.fence.settled({2})
        self.consumer = bare_consumer({COMMANDS: 31})
        app = SimpleNamespace(consumer=self.consumer, _consumer=self.consumer)
        self.batches = FencedBatches(app, self.fence, InFlight())
        self.written: list[int] = []

    async def place(self, command: Event) -> None:
        """The order service's handler: the rebalance starts once it has handled 31."""
        self.fence.check()
        self.written.append(command.message.offset)
        if self.written == [31]:
            self.fence.revoked()

    async def batch_31_32(self) -> None:
        self.fence.bind()  # the agent binds the batch
        for offset in (31, 32):
            await self.batches.handle_fenced(self.place, _command(offset))
        _acked_by_faust(self.consumer, 31, 32)


async def test_a_refused_command_is_not_committed_past_until_its_redo_has_handled_it() -> None:
    worker = Worker()
    await worker.batch_31_32()
    assert worker.written == [31]  # 32 was refused: its redo waits for the rebalance to settle
    # Kept through the rebalance: Faust's commit timer runs. 31 is done, 32 is not.
    assert _commit(worker.consumer) == 32
    assert _commit(worker.consumer) is None  # and nothing past 32 later either
    worker.fence.settled({2})
    await asyncio.wait_for(asyncio.gather(*worker.fence.redoing), 5)
    assert worker.written == [31, 32]
    assert _commit(worker.consumer) == 33  # handled: committed past it now


async def test_a_refused_command_left_to_the_new_owner_is_not_committed_past_meanwhile() -> None:
    worker = Worker()
    await worker.batch_31_32()
    # The incident: partition 2 kept through one rebalance (the commit timer runs), then moved.
    assert _commit(worker.consumer) == 32
    worker.fence.settled({5})
    await asyncio.wait_for(asyncio.gather(*worker.fence.redoing), 5)
    assert worker.written == [31]  # the new owner reads it from 32
    assert not worker.consumer.deferred(COMMANDS)  # the hold ends with the redo


class RefusedPayments(PaymentService):
    """The payment service, whose handler a revocation refuses (the fence's check)."""

    fence: Fence

    async def handle(self, event: Any) -> None:
        self.fence.revoked()
        self.fence.check()


async def test_a_refused_payment_event_is_not_committed_past_until_its_redo_ends() -> None:
    worker = Worker()
    service = RefusedPayments(
        FakePaymentStore(),
        FakeGateway(TransientGatewayError("unused")),
        FakePublisher(),
        DeadLetters(FakeRecordTopic(), sleep=no_sleep),
        UnknownPayments(),
        run_event=worker.batches.run_event,
    )
    service.fence = worker.fence
    worker.fence.bind()
    await service.handle_batch([_command(31)])
    _acked_by_faust(worker.consumer, 31)
    assert worker.fence.redoing  # refused, redone once the rebalance settles
    assert _commit(worker.consumer) is None  # 31 is held by its redo
    await worker.fence.shutdown()  # the redo is cancelled: its hold ends with it
    assert not worker.consumer.deferred(COMMANDS)
