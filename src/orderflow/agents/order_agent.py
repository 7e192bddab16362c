"""The order service's agent and its timer: what it consumes, and how often it nudges.

Consumes ``topics.sources(ORDER_AGENT)`` (the commands and the payment outcomes) and drives
``OrderService`` (agents/orders.py) one event after the other, a batch at a time; publishes
``order.created``. The timer re-publishes ``order.created`` for orders PENDING too long.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from orderflow import faust_glue
from orderflow.agents.batches import FencedBatches
from orderflow.agents.orders import OrderService
from orderflow.config import Settings
from orderflow.delivery import sequentially
from orderflow.metrics import Metrics
from orderflow.topics import ORDER_AGENT, sources

__all__ = ["NUDGE_TICK_S", "ORDER_AGENT", "register_order_agent"]

NUDGE_TICK_S = 0.5  # how often the stalled-order timer asks whether a pass is due


def register_order_agent(
    app: Any,
    settings: Settings,
    service: OrderService,
    batches: FencedBatches,
    owns: Callable[[str], bool],
    metrics: Metrics,
) -> None:
    """Subscribe the order service to its topics and start its stalled-order timer."""
    handle = sequentially(partial(batches.handle_fenced, service.handle))

    @app.agent(faust_glue.raw_topic(app, settings, sources(ORDER_AGENT)), name=ORDER_AGENT)
    async def order_agent(stream: Any) -> None:
        # Batches, handled one event after the other: one delivery wait per batch, not per event.
        async for events in faust_glue.take_batches(stream, settings.payment_batch_size):
            await batches.run(ORDER_AGENT, events, handle)

    every = max(NUDGE_TICK_S, settings.stall_after_s / 5)

    # Ticks often; a pass runs every ``every`` seconds, and at the next tick once partitions
    # settle (``StalledOrders.pass_due``).
    @app.timer(interval=NUDGE_TICK_S)
    async def nudge_stalled_orders() -> None:
        metrics.stall_nudges.inc(await service.nudge_paced(owns, every))
