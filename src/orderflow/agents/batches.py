"""How both agents run a batch: fenced, on the partitions still assigned, deliveries awaited.

An agent takes a batch of events (``stream.take_events``), binds it to the fence's epoch, drops
the events whose partition moved away while they were buffered, handles the rest, and returns
only once everything the batch produced is in Kafka (``delivery.run_batch``): Faust acks the
batch's offsets when the agent asks for the next one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from orderflow import faust_glue
from orderflow.agents.in_flight import InFlight
from orderflow.delivery import run_batch
from orderflow.fencing import Fence
from orderflow.logs import order_context
from orderflow.ports import InboundMessage

__all__ = ["BatchAssignment", "FencedBatches"]


class BatchAssignment:
    """The partitions a batch started with; which of its failed records may be sent again."""

    def __init__(self, assigned: set[Any], fence: Fence) -> None:
        self.assigned = assigned
        self.fence = fence

    def holds(self, event: Any) -> bool:
        return event.message.tp in self.assigned

    def keeps(self, event: Any) -> bool:
        # A failed record is sent again only if the fence agrees (a resumed zombie's consumer
        # still lists partitions that another worker has written since).
        return self.holds(event) and self.fence.keeps(event.message.partition)


class FencedBatches:
    """Runs the agents' batches and single events under the worker's fence."""

    def __init__(self, app: Any, fence: Fence, in_flight: InFlight) -> None:
        self.app = app
        self.fence = fence
        self.in_flight = in_flight

    def start(self, events: Sequence[Any]) -> tuple[list[Any], BatchAssignment]:
        """Bind the batch to the fence; its live events and its assignment."""
        self.fence.bind()
        # Events buffered before a rebalance took their partition away belong to the new owner
        # now: handling them here too would make two writers of one order. Read once per batch.
        assignment = BatchAssignment(faust_glue.assigned(self.app), self.fence)
        return [e for e in events if assignment.holds(e)], assignment

    async def run(
        self,
        agent: str,
        events: Sequence[Any],
        handle: Callable[[Sequence[Any]], Awaitable[None]],
    ) -> None:
        """Handle a batch of ``agent``'s events once the fence is ready; wait for its sends."""
        await self.fence.wait_ready()
        live, assignment = self.start(events)
        with self.in_flight.handling(agent, live):
            await run_batch(live, handle, assignment.keeps)

    async def run_event(
        self,
        partition: int,
        handle: Callable[[], Awaitable[None]],
        key: bytes | None = None,
        message: InboundMessage | None = None,
    ) -> bool:
        """Run one event's handler under the fence (redone later when refused mid-way; until
        then the consumer commits nothing past ``message``, which Faust acks with its batch)."""
        hold = None if message is None else partial(faust_glue.defer_offset, self.app, message)
        with order_context(key):  # the key is the order id: its log lines name it
            return await self.fence.run(partition, handle, key, hold)

    async def handle_fenced(self, handle: Callable[[Any], Awaitable[None]], event: Any) -> None:
        """``handle(event)`` under the fence, redone like a payment when refused: the batch is
        acked at its end, so an event dropped after a freeze that no revocation followed would
        be lost."""
        message = event.message
        await self.run_event(message.partition, partial(handle, event), message.key, message)
