"""The Faust views: thin adapters from Faust's web server to ``OrderApi`` and the health checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from faust.web import View

from orderflow.logs import order_context
from orderflow.metrics import CONTENT_TYPE, Metrics
from orderflow.web.auth import Authenticator
from orderflow.web.orders import UNAUTHORIZED, ApiResponse, OrderApi
from orderflow.web.routing import OwnerLookup

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
) -> None:
    """Mount the HTTP API on the worker's web server; ``gateway`` says which one /ready shows."""
    shown = dict(gateway or {})
    auth = auth or api.auth

    def counted(request: Any, route: str, response: Any) -> Any:
        # By route template, never the raw path: order ids would make unbounded label values.
        if metrics is not None:
            metrics.http(request.method, route, response.status)
        return response

    def refused(endpoint: str, request: Any) -> bool:
        """An endpoint not in ORDERFLOW_OPEN_ENDPOINTS needs an API key like /orders."""
        return not auth.is_open(endpoint) and auth.caller(request) is None

    @app.page("/orders")
    class OrderCollection(View):  # type: ignore[misc]
        """POST /orders: place an order."""

        async def post(self, request: Any) -> Any:
            return counted(request, "/orders", _respond(self, await api.create(request)))

    @app.page("/orders/{order_id}")
    class OrderResource(View):  # type: ignore[misc]
        """GET /orders/{order_id}[?wait=SECONDS]: the order, from its partition's owner."""

        async def get(self, request: Any, order_id: str) -> Any:
            with order_context(order_id):
                response = _respond(self, await api.get(request, order_id))
            return counted(request, "/orders/{order_id}", response)

    @app.page("/health")
    class Health(View):  # type: ignore[misc]
        """Liveness: 200 while every agent moves on; 503 naming an agent stuck on one event."""

        async def get(self, request: Any) -> Any:
            if refused("health", request):
                return counted(request, "/health", _respond(self, UNAUTHORIZED))
            status, body = health()
            return counted(request, "/health", self.json(body, status=status))

    @app.page("/ready")
    class Ready(View):  # type: ignore[misc]
        """Readiness: partitions assigned and tables recovered (503 otherwise)."""

        async def get(self, request: Any) -> Any:
            if refused("ready", request):
                return counted(request, "/ready", _respond(self, UNAUTHORIZED))
            if routing.is_ready():
                return counted(request, "/ready", self.json({"status": "ready", **shown}))
            response = self.json(
                {"status": "not_ready", **shown}, status=503, headers={"Retry-After": "1"}
            )
            return counted(request, "/ready", response)

    if metrics is not None:
        registered = metrics

        @app.page("/metrics")
        class MetricsPage(View):  # type: ignore[misc]
            """Prometheus metrics of this worker (its own registry), in the text format."""

            async def get(self, request: Any) -> Any:
                if refused("metrics", request):
                    return counted(request, "/metrics", _respond(self, UNAUTHORIZED))
                # Counted before rendering, so that a scrape sees itself counted.
                registered.http(request.method, "/metrics", 200)
                return self.bytes(registered.render(), headers={"Content-Type": CONTENT_TYPE})

    if openapi is not None:
        document = orjson.dumps(openapi)

        @app.page("/openapi.json")
        class OpenApi(View):  # type: ignore[misc]
            """The OpenAPI 3.1 document of this API."""

            async def get(self, request: Any) -> Any:
                if refused("openapi", request):
                    return counted(request, "/openapi.json", _respond(self, UNAUTHORIZED))
                response = self.bytes(document, content_type="application/json")
                return counted(request, "/openapi.json", response)
