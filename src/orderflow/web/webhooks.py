"""The webhook endpoints of the HTTP API: register, list and delete a client's endpoints; see and
resend an order's deliveries.

Endpoints are records of the compacted topic ``orderflow.webhook-endpoints`` (any worker writes
one and answers once Kafka has it; every worker reads them all: ``EndpointDirectory``). An
order's deliveries are in WebhookDB, on the worker that owns the order (any other forwards the
request there); a resend is a record on ``orderflow.webhook-attempts`` that the order service
applies. A client sees and changes only its own endpoints and orders.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Protocol

from orderflow.agents.webhooks import EndpointDirectory
from orderflow.domain.events import rfc3339
from orderflow.domain.validation import (
    Problem,
    validate_endpoint_request,
    validate_resend_request,
)
from orderflow.domain.webhooks import (
    MAX_ENDPOINTS_PER_CLIENT,
    Endpoint,
    OrderWebhooks,
    delivery_to_public,
    endpoint_secret,
    endpoint_to_public,
)
from orderflow.ports import CommandSender, HttpRequest
from orderflow.web.auth import Caller
from orderflow.web.orders import (
    UNAUTHORIZED,
    ApiResponse,
    OrderApi,
    is_order_id,
    problems_response,
    send_confirmed,
    unavailable,
)
from orderflow.web.routing import NotReady
from orderflow.wire.webhooks import WebhookResend, encode_attempts_record, endpoint_to_bytes

__all__ = ["WebhookApi"]

log = logging.getLogger(__name__)


class WebhookReader(Protocol):
    def get(self, order_id: str) -> OrderWebhooks | None: ...


class WebhookApi:
    """The HTTP behaviour of webhooks, over the order API's reading, routing and auth."""

    def __init__(
        self,
        api: OrderApi,
        directory: EndpointDirectory,
        deliveries: WebhookReader,
        endpoints_topic: CommandSender,
        attempts_topic: CommandSender,
        signing_key: bytes,
        allow_private: bool,
    ) -> None:
        self.api = api
        self.directory = directory
        self.deliveries = deliveries
        self.endpoints_topic = endpoints_topic
        self.attempts_topic = attempts_topic
        self.signing_key = signing_key
        self.allow_private = allow_private

    async def register(self, request: HttpRequest) -> ApiResponse:
        read = await self.api.caller_and_body(request, optional_body=False)
        if isinstance(read, ApiResponse):
            return read
        caller, body = read
        if not caller.client_id:
            return _needs_client()
        url = validate_endpoint_request(body, self.allow_private)
        if isinstance(url, list):
            return problems_response(400, "invalid_request", url)
        if not self.directory.loaded:
            return unavailable("the registered endpoints are still being read; retry")
        if len(self.directory.for_client(caller.client_id)) >= MAX_ENDPOINTS_PER_CLIENT:
            problem = Problem(
                "url", "limit", f"a client has at most {MAX_ENDPOINTS_PER_CLIENT} endpoints"
            )
            return problems_response(409, "limit_reached", [problem])
        endpoint = Endpoint("we_" + secrets.token_hex(12), caller.client_id, url, rfc3339(_now()))
        if not await self._send(
            self.endpoints_topic, endpoint.endpoint_id.encode(), endpoint_to_bytes(endpoint)
        ):
            return unavailable("the broker did not confirm the endpoint; nothing was registered")
        self.directory.remember(endpoint)
        log.info("webhook endpoint %s registered for %s", endpoint.endpoint_id, caller.client_id)
        body = {
            **endpoint_to_public(endpoint),
            # Shown this once: the endpoint checks each delivery's Orderflow-Signature with it.
            "secret": endpoint_secret(self.signing_key, endpoint.endpoint_id),
        }
        return ApiResponse(201, body, {"Location": f"/webhooks/{endpoint.endpoint_id}"})

    async def list(self, request: HttpRequest) -> ApiResponse:
        caller = self.api.auth.caller(request)
        if caller is None or caller.forwarded:
            return UNAUTHORIZED
        if not self.directory.loaded:
            return unavailable("the registered endpoints are still being read; retry")
        endpoints = sorted(self.directory.for_client(caller.client_id), key=lambda e: e.created_at)
        return ApiResponse(200, {"endpoints": [endpoint_to_public(e) for e in endpoints]})

    async def delete(self, request: HttpRequest, endpoint_id: str) -> ApiResponse:
        caller = self.api.auth.caller(request)
        if caller is None or caller.forwarded:
            return UNAUTHORIZED
        if not self.directory.loaded:
            return unavailable("the registered endpoints are still being read; retry")
        endpoint = self.directory.get(endpoint_id)
        if endpoint is None or endpoint.client_id != caller.client_id:
            return ApiResponse(404, {"error": "not_found", "endpoint_id": endpoint_id[:64]})
        if not await self._send(self.endpoints_topic, endpoint_id.encode(), None):
            return unavailable("the broker did not confirm the deletion; retry")
        self.directory.forget(endpoint_id)
        log.info("webhook endpoint %s deleted by %s", endpoint_id, caller.client_id)
        return ApiResponse(204, None, raw=b"", content_type="application/json")

    async def order_deliveries(self, request: HttpRequest, order_id: str) -> ApiResponse:
        read = await self.api.caller_and_body(request, optional_body=True)
        if isinstance(read, ApiResponse):
            return read
        caller, _ = read
        routed = await self._at_owner(request, order_id, caller)
        if routed is not None:
            return routed
        record = self.deliveries.get(order_id)
        deliveries = [] if record is None else [delivery_to_public(d) for d in record.deliveries]
        return ApiResponse(200, {"order_id": order_id, "deliveries": deliveries})

    async def resend(self, request: HttpRequest, order_id: str) -> ApiResponse:
        read = await self.api.caller_and_body(request, optional_body=True)
        if isinstance(read, ApiResponse):
            return read
        caller, body = read
        event_id = validate_resend_request(body)
        if isinstance(event_id, list):
            return problems_response(400, "invalid_request", event_id)
        routed = await self._at_owner(request, order_id, caller)
        if routed is not None:
            return routed
        record = self.deliveries.get(order_id)
        chosen = (
            []
            if record is None
            else [d for d in record.deliveries if event_id is None or d.event_id == event_id]
        )
        if not chosen:
            what = "no such event" if event_id is not None else "the order has no deliveries"
            return ApiResponse(404, {"error": "not_found", "order_id": order_id, "message": what})
        command = WebhookResend(
            order_id=order_id, event_id=event_id, requested_at=_now(), client_id=caller.client_id
        )
        if not await self._send(
            self.attempts_topic, order_id.encode(), encode_attempts_record(command)
        ):
            return unavailable("the broker did not confirm the request; the same request is safe")
        body = {"order_id": order_id, "resending": len(chosen), "event_id": event_id}
        return ApiResponse(202, body, {"Location": f"/orders/{order_id}/webhooks"})

    async def _at_owner(
        self, request: HttpRequest, order_id: str, caller: Caller
    ) -> ApiResponse | None:
        """The owner's answer (forwarded), a 404/503; None: this worker owns the order and the
        caller may see it."""
        api = self.api
        if not is_order_id(order_id):
            return _order_not_found(order_id)
        try:
            answered = await api.at_owner(request, order_id, caller)
        except NotReady as exc:
            return unavailable(f"{exc}; retry")
        if answered is not None:
            return answered
        if api.visible(api.orders.get(order_id), caller) is None:
            # Not stored here: answered as GET /orders/{id} answers it (503 while its POST may
            # still land or the owner has not read it; 404 only after that).
            found = await api.not_stored(order_id, caller)
            if isinstance(found, ApiResponse):
                return found
        return None

    async def _send(self, topic: CommandSender, key: bytes, value: bytes | None) -> bool:
        return await send_confirmed(topic, key, value, self.api.post_wait_s, f"webhook {key!r}")


def _now() -> float:
    return time.time()


def _needs_client() -> ApiResponse:
    body = {
        "error": "forbidden",
        "message": "webhooks belong to an API client: call with an API key (ORDERFLOW_API_AUTH=keys)",
    }
    return ApiResponse(403, body)


def _order_not_found(order_id: str) -> ApiResponse:
    return ApiResponse(404, {"error": "not_found", "order_id": order_id[:64]})
