"""The payment service's agent, its reconcile timer, and where its results are published.

Consumes ``topics.sources(PAYMENT_AGENT)`` (``order.created`` and the reconcile requests) and
drives ``PaymentService`` (agents/payments.py) a batch at a time, one order's events in order,
orders concurrently. Publishes each outcome to the topic ``topics.PAYMENT_OUTCOME_TOPICS``
names for it, and reconcile requests to its own topic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orderflow import faust_glue
from orderflow.agents.batches import FencedBatches
from orderflow.agents.payments import PaymentService
from orderflow.config import Settings
from orderflow.fencing import Fence
from orderflow.metrics import Metrics
from orderflow.topics import PAYMENT_AGENT, PAYMENT_OUTCOME_TOPICS, PAYMENT_RECONCILE, sources

__all__ = ["PAYMENT_AGENT", "PaymentOutputs", "register_payment_agent"]


class PaymentOutputs:
    """The payment service's ``publish(kind, key, value)``: an outcome by its event type, or a
    reconcile request, sent to its topic once the fence allows the write."""

    def __init__(self, outputs: Mapping[str, Any], fence: Fence) -> None:
        self.fence = fence
        # Every kind the service publishes, explicitly: an unknown one is a bug (KeyError).
        routes = {**PAYMENT_OUTCOME_TOPICS, PAYMENT_RECONCILE: PAYMENT_RECONCILE}
        self.topics = {kind: outputs[topic] for kind, topic in routes.items()}

    async def __call__(self, kind: str, key: bytes, value: bytes) -> None:
        self.fence.check()
        await self.topics[kind].send(key=key, value=value)


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
        async for events in stream.take_events(settings.payment_batch_size, within=0.005):
            await batches.run(PAYMENT_AGENT, events, service.handle_batch)

    @app.timer(interval=settings.reconcile_interval_s)
    async def reconcile_unknown_payments() -> None:
        metrics.reconciliations.inc(await service.request_due_reconciliations())
