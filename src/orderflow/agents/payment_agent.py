"""The payment service's agent, its reconcile timer, and where its results are published.

Consumes ``topics.sources(PAYMENT_AGENT)`` (``order.created`` and the reconcile requests) and
drives ``PaymentService`` (agents/payments.py) a batch at a time, one order's events in order,
orders concurrently. Publishes through ``orderflow.publisher`` (each event to the topic
``topics.EVENT_TOPICS`` names for its type, reconcile requests to their own topic).
"""

from __future__ import annotations

from typing import Any

from orderflow import faust_glue
from orderflow.agents.batches import FencedBatches
from orderflow.agents.payments import PaymentService
from orderflow.config import Settings
from orderflow.metrics import Metrics
from orderflow.topics import PAYMENT_AGENT, sources

__all__ = ["PAYMENT_AGENT", "register_payment_agent"]


def register_payment_agent(
    app: Any,
    settings: Settings,
    service: PaymentService,
    batches: FencedBatches,
    metrics: Metrics,
) -> None:
    """Subscribe the payment service to its topics and start its reconcile timer."""

    @app.agent(faust_glue.raw_topic(app, settings, sources(PAYMENT_AGENT)), name=PAYMENT_AGENT)
    async def payment_agent(stream: Any) -> None:
        # Batches let one partition's gateway calls overlap; acks follow the whole batch.
        async for events in faust_glue.take_batches(stream, settings.payment_batch_size):
            await batches.run(PAYMENT_AGENT, events, service.handle_batch)

    @app.timer(interval=settings.reconcile_interval_s)
    async def reconcile_unknown_payments() -> None:
        metrics.reconciliations.inc(await service.request_due_reconciliations())
