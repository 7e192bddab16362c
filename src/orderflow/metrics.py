"""The worker's Prometheus metrics (``GET /metrics``), kept in a registry of its own per app.

Counters are moved by the thin layers only (the app's wiring, views, a gateway wrapper, hooks the
agents call): the domain stays pure. Gauges of what the services already index (UNKNOWN payments,
PENDING orders) and the consumer lag are read at scrape time from in-memory state: no table scan
and no broker round trip per scrape. Label values are bounded (route templates, known codes).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from orderflow.domain.order import Order, OrderStatus
from orderflow.domain.payment import DECLINE_MESSAGES, Approved, ChargeOutcome, GatewayCharge
from orderflow.domain.refund import GatewayRefund, Refunded, RefundOutcome
from orderflow.gateway.base import (
    ChargeRequest,
    CircuitOpenError,
    GatewayError,
    PaymentGateway,
    PermanentGatewayError,
    RefundRequest,
)

__all__ = ["CONTENT_TYPE", "MeteredGateway", "Metrics", "dead_letter_reason"]

# The classic text format (0.0.4), which every Prometheus version scrapes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# The gateway's decline codes we name; any other code a gateway invents is counted as "other".
_KNOWN_DECLINES = frozenset(DECLINE_MESSAGES) | {"gateway_rejected"}
# Dead-letter reasons start with a category ("malformed: <detail>"): the detail is unbounded.
_DEAD_LETTER_REASONS = {
    "inconsistent": "inconsistent",
    "malformed": "malformed",
    "unexpected": "unexpected",
    "refused": "refused",
    "payment result for an unknown order": "unknown_order",
    "payment token no longer available": "token_gone",
}
# POST -> terminal: a sandbox answers in milliseconds, a real gateway in seconds, retries longer.
_ORDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
_GATEWAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0)
_UNREADY_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# The outcomes MeteredGateway counts (the HELP text of orderflow_gateway_requests).
_GATEWAY_REQUESTS_HELP = (
    "Gateway calls (retries included) by operation (charge, lookup, refund, refund_lookup) and "
    "outcome: approved, declined, refunded, transient (answered 5xx/429, or not sent: circuit "
    "open), unknown (no answer: the charge or refund may have happened), rejected (4xx); "
    "lookups: found, not_found"
)

# No `*_created` series (a timestamp per labelled counter): they double the output and
# Prometheus does not use them. A switch of the library for the whole process.
disable_created_metrics()  # type: ignore[no-untyped-call]

_T = TypeVar("_T")

# partition lag: (topic, partition) -> records not yet handled
LagReader = Callable[[], Mapping[tuple[str, int], int]]


def dead_letter_reason(reason: str) -> str:
    """The bounded label of a dead letter's reason: its category, never its detail."""
    category = reason.split(":", 1)[0].strip()
    return _DEAD_LETTER_REASONS.get(category, "other")


class _Indexed(Collector):
    """Gauges read at scrape time from what the services already keep in memory."""

    def __init__(self, unknown: Callable[[], int], pending: Callable[[], int], lag: LagReader):
        self.unknown = unknown
        self.pending = pending
        self.lag = lag

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "orderflow_payments_unknown",
            "Payments whose outcome the gateway has not confirmed yet (this worker's partitions)",
            value=self.unknown(),
        )
        yield GaugeMetricFamily(
            "orderflow_orders_pending",
            "Orders not terminal yet (this worker's partitions, from the stalled-order index)",
            value=self.pending(),
        )
        lag = GaugeMetricFamily(
            "orderflow_consumer_lag",
            "Records of an assigned partition not handled yet (highwater - committed offset)",
            labels=["topic", "partition"],
        )
        for (topic, partition), records in sorted(self.lag().items()):
            lag.add_metric([topic, str(partition)], records)
        yield lag


class Metrics:
    """Every metric of one worker, in its own registry (tests run several apps per process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        counter, histogram = self._counter, self._histogram
        self.orders_created = counter("orders_created", "Orders stored by the order service")
        self.orders_terminal = counter(
            "orders_terminal", "Orders that reached a terminal status", "status"
        )
        self.declines = counter(
            "payment_declines", "Orders failed by a payment decline, by decline code", "code"
        )
        self.order_seconds = histogram(
            "order_completion_seconds",
            "From the order's creation (POST) to the order service's terminal status",
            _ORDER_BUCKETS,
            "status",
        )
        self.gateway_requests = counter(
            "gateway_requests", _GATEWAY_REQUESTS_HELP, "operation", "outcome"
        )
        self.gateway_seconds = histogram(
            "gateway_request_duration_seconds",
            "Gateway call duration, retries included",
            _GATEWAY_BUCKETS,
            "operation",
        )
        self.stall_nudges = counter(
            "stall_nudges", "order.created published again for a stalled order"
        )
        self.reconciliations = counter(
            "reconciliations", "Reconcile requests sent for UNKNOWN payments"
        )
        self.dead_letters = counter(
            "dead_letters", "Events sent to the dead-letter topic, by reason", "reason"
        )
        self.rebalances = counter("rebalances", "Partition assignments received (rebalances)")
        self.unready_seconds = histogram(
            "partitions_unready_seconds",
            "How long partitions were unready (rebalance and table recovery) until settled",
            _UNREADY_BUCKETS,
        )
        self.webhook_posts = counter(
            "webhook_posts",
            "Webhook POSTs sent, by outcome (2xx, 3xx, 4xx, 5xx, or error: no HTTP answer)",
            "outcome",
        )
        self.webhook_post_seconds = histogram(
            "webhook_post_duration_seconds", "Webhook POST duration", _GATEWAY_BUCKETS
        )
        self.webhook_deliveries_failed = counter(
            "webhook_deliveries_failed",
            "Webhook deliveries given up after the retry period (FAILED; resend to try again)",
        )
        self.http_requests = counter(
            "http_requests",
            "HTTP requests by method, route template and status",
            "method",
            "route",
            "status",
        )

    # Every metric is named orderflow_<name> and kept in this worker's registry.

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        return Counter(f"orderflow_{name}", documentation, labels, registry=self.registry)

    def _histogram(
        self, name: str, documentation: str, buckets: tuple[float, ...], *labels: str
    ) -> Histogram:
        return Histogram(
            f"orderflow_{name}", documentation, labels, buckets=buckets, registry=self.registry
        )

    def watch(self, unknown: Callable[[], int], pending: Callable[[], int], lag: LagReader) -> None:
        """Register the gauges read from the services' in-memory indexes at scrape time."""
        self.registry.register(_Indexed(unknown, pending, lag))

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)

    def order_created(self, order: Order) -> None:
        self.orders_created.inc()

    def order_terminal(self, order: Order, now: float | None = None) -> None:
        """Count a terminal transition and its latency from the order's ``created_at``."""
        status = str(order.status)
        self.orders_terminal.labels(status).inc()
        if order.status is OrderStatus.PAYMENT_FAILED and order.decline is not None:
            code = order.decline.code
            self.declines.labels(code if code in _KNOWN_DECLINES else "other").inc()
        try:
            created = datetime.fromisoformat(order.created_at).timestamp()
        except ValueError:
            return
        now = time.time() if now is None else now
        self.order_seconds.labels(status).observe(max(0.0, now - created))

    def dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(dead_letter_reason(reason)).inc()

    def webhook_post(self, status: int, duration_ms: int) -> None:
        self.webhook_posts.labels(f"{status // 100}xx" if status else "error").inc()
        self.webhook_post_seconds.observe(duration_ms / 1000)

    def webhook_failed(self) -> None:
        self.webhook_deliveries_failed.inc()

    def http(self, method: str, route: str, status: int) -> None:
        self.http_requests.labels(method, route, str(status)).inc()


def _charge_outcome(outcome: ChargeOutcome) -> str:
    return "approved" if isinstance(outcome, Approved) else "declined"


def _lookup_outcome(found: GatewayCharge | GatewayRefund | None) -> str:
    return "not_found" if found is None else "found"


def _refund_outcome(outcome: RefundOutcome) -> str:
    return "refunded" if isinstance(outcome, Refunded) else "declined"


def _error_outcome(exc: GatewayError) -> str:
    if isinstance(exc, PermanentGatewayError):
        return "rejected"
    if isinstance(exc, CircuitOpenError) or exc.status is not None:
        return "transient"  # answered 5xx/429, or never sent
    return "unknown"  # a timeout or a lost connection: the charge may have happened


class MeteredGateway:
    """A ``PaymentGateway`` that counts each call's outcome and times it."""

    def __init__(
        self, gateway: PaymentGateway, metrics: Metrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.gateway = gateway
        self.metrics = metrics
        self.clock = clock

    def _observe(self, operation: str, outcome: str, started: float) -> None:
        self.metrics.gateway_requests.labels(operation, outcome).inc()
        self.metrics.gateway_seconds.labels(operation).observe(self.clock() - started)

    async def _metered(
        self, operation: str, call: Awaitable[_T], outcome: Callable[[_T], str]
    ) -> _T:
        """Await ``call``, then count its outcome (or its error's) and time it."""
        started = self.clock()
        try:
            result = await call
        except GatewayError as exc:
            self._observe(operation, _error_outcome(exc), started)
            raise
        self._observe(operation, outcome(result), started)
        return result

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        return await self._metered("charge", self.gateway.charge(request), _charge_outcome)

    async def find_charge(self, idempotency_key: str) -> GatewayCharge | None:
        found = self.gateway.find_charge(idempotency_key)
        return await self._metered("lookup", found, _lookup_outcome)

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        return await self._metered("refund", self.gateway.refund(request), _refund_outcome)

    async def find_refund(self, idempotency_key: str) -> GatewayRefund | None:
        found = self.gateway.find_refund(idempotency_key)
        return await self._metered("refund_lookup", found, _lookup_outcome)

    async def close(self) -> None:
        await self.gateway.close()
