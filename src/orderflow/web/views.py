"""The Faust views: thin adapters from Faust's web server to ``OrderApi`` and the health checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import web
from faust.web import View

from orderflow.logs import order_context
from orderflow.metrics import CONTENT_TYPE, Metrics
from orderflow.web.auth import Authenticator
from orderflow.web.changes import OrderChanges
from orderflow.web.events import OrderStream
from orderflow.web.orders import UNAUTHORIZED, ApiResponse, OrderApi
from orderflow.web.routing import OwnerLookup
from orderflow.web.webhooks import WebhookApi

__all__ = ["register_views"]


def _respond(view: View, response: ApiResponse) -> Any:
    if response.raw is not None:
        return view.bytes(
            response.raw,
            status=response.status,
            content_type=response.content_type,
            headers=response.headers,
        )
    return view.bytes(
        orjson.dumps(response.body),
        status=response.status,
        content_type="application/json",
        headers=response.headers,
    )


# (HTTP status, JSON body) of the liveness check; built by the app from what its agents report.
HealthCheck = Callable[[], tuple[int, dict[str, Any]]]


def register_views(
    app: Any,
    api: OrderApi,
    routing: OwnerLookup,
    health: HealthCheck,
    metrics: Metrics | None = None,
    openapi: dict[str, Any] | None = None,
    gateway: Mapping[str, str] | None = None,
    auth: Authenticator | None = None,
    changes: OrderChanges | None = None,
    stream: OrderStream | None = None,
    webhooks: WebhookApi | None = None,
) -> None:
    """Mount the HTTP API on the worker's web server; ``gateway`` says which one /ready shows."""
    mount = _Mount(app, metrics, auth or api.auth)
    _order_views(mount, api)
    if changes is not None:
        _change_views(mount, changes)
    if stream is not None:
        _stream_view(mount, stream)
    if webhooks is not None:
        _webhook_views(mount, webhooks)
    _worker_views(mount, routing, health, dict(gateway or {}))
    if metrics is not None:
        _metrics_view(mount, metrics)
    if openapi is not None:
        _openapi_view(mount, orjson.dumps(openapi))


# What a worker page answers once the key check let the request through: (view, request).
PageAnswer = Callable[[View, Any], Any]


class _Mount:
    """What every view shares: the app it is mounted on, the request counter, the key check."""

    def __init__(self, app: Any, metrics: Metrics | None, auth: Authenticator) -> None:
        self.app = app
        self.metrics = metrics
        self.auth = auth

    def counted(self, request: Any, route: str, response: Any) -> Any:
        # By route template, never the raw path: order ids would make unbounded label values.
        if self.metrics is not None:
            self.metrics.http(request.method, route, response.status)
        return response

    def refused(self, endpoint: str, request: Any) -> bool:
        """An endpoint not in ORDERFLOW_OPEN_ENDPOINTS needs an API key like /orders."""
        return not self.auth.is_open(endpoint) and self.auth.caller(request) is None

    def worker_page(
        self, path: str, endpoint: str, answer: PageAnswer, *, name: str, count: bool = True
    ) -> None:
        """Mount GET ``path``, one of the worker's own pages: open when ``endpoint`` is.

        ``count=False``: the answer counts itself (``/metrics``, before it renders).
        """
        mount = self

        @self.app.page(path, name=name)
        class WorkerPage(View):  # type: ignore[misc]
            """GET ``path``: a 401 unless open or keyed, else ``answer``; counted by route."""

            async def get(self, request: Any) -> Any:
                if mount.refused(endpoint, request):
                    return mount.counted(request, path, _respond(self, UNAUTHORIZED))
                response = answer(self, request)
                return mount.counted(request, path, response) if count else response


def _order_views(mount: _Mount, api: OrderApi) -> None:
    counted = mount.counted

    @mount.app.page("/orders")
    class OrderCollection(View):  # type: ignore[misc]
        """POST /orders: place an order."""

        async def post(self, request: Any) -> Any:
            return counted(request, "/orders", _respond(self, await api.create(request)))

    @mount.app.page("/orders/{order_id}")
    class OrderResource(View):  # type: ignore[misc]
        """GET /orders/{order_id}[?wait=SECONDS]: the order, from its partition's owner."""

        async def get(self, request: Any, order_id: str) -> Any:
            with order_context(order_id):
                response = _respond(self, await api.get(request, order_id))
            return counted(request, "/orders/{order_id}", response)


def _change_views(mount: _Mount, changes: OrderChanges) -> None:
    counted = mount.counted

    @mount.app.page("/orders/{order_id}/cancel")
    class OrderCancel(View):  # type: ignore[misc]
        """POST /orders/{order_id}/cancel: cancel a PENDING order (idempotent)."""

        async def post(self, request: Any, order_id: str) -> Any:
            with order_context(order_id):
                response = _respond(self, await changes.cancel(request, order_id))
            return counted(request, "/orders/{order_id}/cancel", response)

    @mount.app.page("/orders/{order_id}/refunds")
    class OrderRefunds(View):  # type: ignore[misc]
        """POST /orders/{order_id}/refunds: refund part or all of the captured money."""

        async def post(self, request: Any, order_id: str) -> Any:
            with order_context(order_id):
                response = _respond(self, await changes.refund(request, order_id))
            return counted(request, "/orders/{order_id}/refunds", response)


def _stream_view(mount: _Mount, stream: OrderStream) -> None:
    counted = mount.counted

    @mount.app.page("/orders/{order_id}/events")
    class OrderEvents(View):  # type: ignore[misc]
        """GET /orders/{order_id}/events: the order's states as Server-Sent Events."""

        async def get(self, request: Any, order_id: str) -> Any:
            route = "/orders/{order_id}/events"
            with order_context(order_id):
                opened = await stream.open(request, order_id)
                if isinstance(opened, ApiResponse):
                    return counted(request, route, _respond(self, opened))
                response = web.StreamResponse(
                    headers={
                        "Content-Type": "text/event-stream",
                        "Cache-Control": "no-cache",
                        "X-Accel-Buffering": "no",  # a proxy must pass events on at once
                    }
                )
                await response.prepare(request)
                try:
                    async for frame in opened:
                        await response.write(frame)
                except ConnectionError:  # the client went away: nothing more to send
                    return counted(request, route, response)
                await response.write_eof()
            return counted(request, route, response)


def _webhook_views(mount: _Mount, hooks: WebhookApi) -> None:
    counted = mount.counted

    @mount.app.page("/webhooks")
    class WebhookEndpoints(View):  # type: ignore[misc]
        """POST /webhooks: register an endpoint; GET /webhooks: the caller's endpoints."""

        async def post(self, request: Any) -> Any:
            return counted(request, "/webhooks", _respond(self, await hooks.register(request)))

        async def get(self, request: Any) -> Any:
            return counted(request, "/webhooks", _respond(self, await hooks.list(request)))

    @mount.app.page("/webhooks/{endpoint_id}")
    class WebhookEndpoint(View):  # type: ignore[misc]
        """DELETE /webhooks/{endpoint_id}: stop sending to an endpoint."""

        async def delete(self, request: Any, endpoint_id: str) -> Any:
            response = _respond(self, await hooks.delete(request, endpoint_id))
            return counted(request, "/webhooks/{endpoint_id}", response)

    @mount.app.page("/orders/{order_id}/webhooks")
    class OrderWebhookDeliveries(View):  # type: ignore[misc]
        """GET /orders/{order_id}/webhooks: the order's webhook deliveries and their attempts."""

        async def get(self, request: Any, order_id: str) -> Any:
            with order_context(order_id):
                response = _respond(self, await hooks.order_deliveries(request, order_id))
            return counted(request, "/orders/{order_id}/webhooks", response)

    @mount.app.page("/orders/{order_id}/webhooks/resend")
    class OrderWebhookResend(View):  # type: ignore[misc]
        """POST /orders/{order_id}/webhooks/resend: send the order's deliveries again."""

        async def post(self, request: Any, order_id: str) -> Any:
            with order_context(order_id):
                response = _respond(self, await hooks.resend(request, order_id))
            return counted(request, "/orders/{order_id}/webhooks/resend", response)


def _worker_views(
    mount: _Mount, routing: OwnerLookup, health: HealthCheck, shown: dict[str, str]
) -> None:
    def alive(view: View, request: Any) -> Any:
        status, body = health()
        return view.json(body, status=status)

    def ready(view: View, request: Any) -> Any:
        if routing.is_ready():
            return view.json({"status": "ready", **shown})
        return view.json({"status": "not_ready", **shown}, status=503, headers={"Retry-After": "1"})

    # Liveness: 200 while every agent moves on; 503 naming an agent stuck on one event.
    mount.worker_page("/health", "health", alive, name="Health")
    # Readiness: partitions assigned and tables recovered (503 otherwise).
    mount.worker_page("/ready", "ready", ready, name="Ready")


def _metrics_view(mount: _Mount, metrics: Metrics) -> None:
    def render(view: View, request: Any) -> Any:
        # Counted before rendering, so that a scrape sees itself counted.
        metrics.http(request.method, "/metrics", 200)
        return view.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    # Prometheus metrics of this worker (its own registry), in the text format.
    mount.worker_page("/metrics", "metrics", render, name="MetricsPage", count=False)


def _openapi_view(mount: _Mount, document: bytes) -> None:
    def send(view: View, request: Any) -> Any:
        return view.bytes(document, content_type="application/json")

    # The OpenAPI 3.1 document of this API.
    mount.worker_page("/openapi.json", "openapi", send, name="OpenApi")
