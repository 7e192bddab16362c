"""The Faust views: thin adapters from Faust's web server to ``OrderApi`` and the health checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from faust.web import View

from orderflow.web.auth import Authenticator
from orderflow.web.orders import UNAUTHORIZED, ApiResponse, OrderApi
from orderflow.web.routing import OwnerLookup

__all__ = ["register_views"]


def _respond(view: View, response: ApiResponse) -> Any:
    if response.raw is not None:
        return view.bytes(response.raw, status=response.status,
                          content_type=response.content_type, headers=response.headers)  # fmt: skip
    return view.bytes(orjson.dumps(response.body), status=response.status,
                      content_type="application/json", headers=response.headers)  # fmt: skip


# (HTTP status, JSON body) of the liveness check; built by the app from what its agents report.
HealthCheck = Callable[[], tuple[int, dict[str, Any]]]


def register_views(
    app: Any, api: OrderApi, routing: OwnerLookup, health: HealthCheck,
    auth: Authenticator | None = None,
) -> None:  # fmt: skip
    """Mount the HTTP API on the worker's web server."""
    auth = auth or api.auth

    def refused(endpoint: str, request: Any) -> bool:
        """An endpoint not in ORDERFLOW_OPEN_ENDPOINTS needs an API key like /orders."""
        return not auth.is_open(endpoint) and auth.caller(request) is None

    @app.page("/orders")
    class OrderCollection(View):  # type: ignore[misc]
        """POST /orders: place an order."""

        async def post(self, request: Any) -> Any:
            return _respond(self, await api.create(request))

    @app.page("/orders/{order_id}")
    class OrderResource(View):  # type: ignore[misc]
        """GET /orders/{order_id}[?wait=SECONDS]: the order, from its partition's owner."""

        async def get(self, request: Any, order_id: str) -> Any:
            return _respond(self, await api.get(request, order_id))

    @app.page("/health")
    class Health(View):  # type: ignore[misc]
        """Liveness: 200 while every agent moves on; 503 naming an agent stuck on one event."""

        async def get(self, request: Any) -> Any:
            if refused("health", request):
                return _respond(self, UNAUTHORIZED)
            status, body = health()
            return self.json(body, status=status)

    @app.page("/ready")
    class Ready(View):  # type: ignore[misc]
        """Readiness: partitions assigned and tables recovered (503 otherwise)."""

        async def get(self, request: Any) -> Any:
            if refused("ready", request):
                return _respond(self, UNAUTHORIZED)
            if routing.is_ready():
                return self.json({"status": "ready"})
            return self.json({"status": "not_ready"}, status=503, headers={"Retry-After": "1"})
