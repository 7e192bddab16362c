"""What a worker does as its partitions move, at start and at stop (Faust's app signals).

A rebalance, in Faust's order: the fence learns of the revocation first (``FencedApp``), then
``partitions_revoked`` stops serving moved keys; ``partitions_assigned`` marks the worker
moving until ``rebalance_complete``, sent once the new assignment's tables are recovered, when
the safety nets (UNKNOWN payments, stalled orders) learn their partitions and the worker serves
again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orderflow import faust_glue
from orderflow.agents.orders import StalledOrders
from orderflow.agents.payments import UnknownPayments
from orderflow.agents.progress import CommandLog
from orderflow.config import Settings
from orderflow.consumer import RewindingConsumer
from orderflow.fencing import Fence
from orderflow.metrics import Metrics
from orderflow.tables.recovery_check import RecoveryCheck
from orderflow.tables.scan import HeldThroughout
from orderflow.topics import ORDER_CHANGELOG, ORDER_TABLE
from orderflow.watch import OrderWatch
from orderflow.web.routing import OwnerLookup

__all__ = ["Lifecycle"]

log = logging.getLogger(__name__)


@dataclass
class Lifecycle:
    """The worker's reactions to Faust's app signals, its start-up tasks and its stop."""

    app: Any
    settings: Settings
    fence: Fence
    gateway: Any  # GatewayHolder (orderflow.app): get() at start, close() at stop
    routing: OwnerLookup
    metrics: Metrics
    watch: OrderWatch
    recovery_check: RecoveryCheck
    unknown: UnknownPayments
    stalled: StalledOrders
    topics: Iterable[Any]  # the worker's own topics, declared at the first assignment
    command_logs: Iterable[CommandLog]  # closed at stop
    # Told of the partitions owned once an assignment settles (the webhook dispatcher's index).
    webhooks_assigned: Callable[..., None] = lambda owned, rescan_all, rescan: None
    declared: bool = False
    freezes_seen: int = 0  # the fence's freezes when the last assignment settled
    # Which partitions were another worker's since the last settle: the safety nets read
    # those again (``HeldThroughout``).
    held: HeldThroughout = field(default_factory=HeldThroughout)

    def connect(self) -> None:
        """Connect to the app's signals; add the start-up tasks and the read-again timer."""
        app = self.app
        faust_glue.connect(app.on_partitions_assigned, self.partitions_assigned)
        faust_glue.connect(app.on_rebalance_complete, self.rebalance_complete)
        faust_glue.connect(app.on_partitions_revoked, self.partitions_revoked)
        faust_glue.connect(app.on_before_shutdown, self.before_shutdown)
        app.task(self.start_gateway)
        app.task(self.start_fence)
        app.timer(interval=2.0)(self.read_undelivered_partitions)

    async def partitions_assigned(self) -> None:
        self.routing.mark_moving()  # until this assignment's tables are recovered
        self.metrics.rebalances.inc()
        self.held.assigned(
            self.app.consumer_generation_id,
            faust_glue.assigned_actives(self.app, ORDER_CHANGELOG),
        )
        # Faust declares the topics it consumes; the dead-letter topic is only written to, and
        # must exist before the first poison message (the broker's auto-create is off).
        if not self.declared:
            for topic in self.topics:
                await topic.maybe_declare()
            self.declared = True

    async def rebalance_complete(self) -> None:
        # Sent once the new assignment's tables are recovered, just before streams resume.
        if not await self.recovery_check.verify():
            return  # recovering again (or rebalanced meanwhile): settle at the next completion
        # The safety nets read only the partitions they did not hold (all of them after a freeze:
        # another worker wrote even the ones we get back), at their next tick, in chunks.
        owned = faust_glue.assigned_actives(self.app, ORDER_CHANGELOG)
        fence = self.fence
        rescan_all = fence.freezes != self.freezes_seen
        self.freezes_seen = fence.freezes
        rescan = self.held.settled(owned)
        self.unknown.assigned(owned, rescan_all=rescan_all, rescan=rescan)
        self.stalled.assigned(owned, rescan_all=rescan_all, rescan=rescan)
        self.webhooks_assigned(owned, rescan_all=rescan_all, rescan=rescan)
        fence.settled(owned)
        # How long this worker could not serve its partitions itself (POSTs were accepted
        # durably meanwhile): the rebalance and its table recovery (make chaos reports these).
        unready_s = self.routing.unready_for()
        self.metrics.unready_seconds.observe(unready_s)
        log.info(
            "partitions settled: %d of %s, after %.1fs unready", len(owned), ORDER_TABLE, unready_s
        )
        self.routing.mark_settled()

    async def partitions_revoked(self) -> None:
        # (the fence learnt of the revocation first: FencedApp)
        self.routing.mark_moving()
        self.watch.notify_all()  # waiting GETs re-check that they still own their order

    async def before_shutdown(self) -> None:
        # Sent before the app's children (LocalStateGuard) stop: no redo may write after its check.
        await self.fence.shutdown()
        await self.gateway.close()
        await self.routing.close()
        for command_log in self.command_logs:
            await command_log.close()

    async def start_gateway(self) -> None:
        described = self.settings.gateway_description
        log.info("payment gateway: %s", " ".join(described.values()))
        log.info("tracing: %s (ORDERFLOW_TRACING)", self.settings.tracing)
        loop = asyncio.get_running_loop()
        log.info("event loop: %s.%s", type(loop).__module__, type(loop).__qualname__)
        await self.gateway.get()  # fail fast (in the log) and warm the connection pool

    async def start_fence(self) -> None:
        self.fence.start()

    async def read_undelivered_partitions(self) -> None:
        consumer = self.app.consumer
        if not isinstance(consumer, RewindingConsumer):
            return
        if self.routing.is_ready():  # never during a recovery: Faust holds partitions back then
            await consumer.read_undelivered_again()
        else:
            consumer.forget_undelivered()
