"""``GET /openapi.json``: the OpenAPI 3.1 document, built from the shapes that validate requests
(``domain.validation.ORDER_REQUEST``) and describe answers (``domain.responses``): one source.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from orderflow.domain import responses
from orderflow.domain.validation import CANCEL_REQUEST, ORDER_REQUEST, REFUND_REQUEST

__all__ = ["OPENAPI_VERSION", "OPEN_PATHS", "openapi_document"]

OPENAPI_VERSION = "3.1.0"
_MAX_KEY_LENGTH = 255  # as web.orders checks it
_MAX_WAIT_S = 30  # as web.orders checks it


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: str, description: str, *headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref("schemas", schema)}},
    }
    if headers:
        answer["headers"] = {name: _ref("headers", name) for name in headers}
    return answer


_UNAUTHORIZED = _json("Error", "No API key, or a wrong one (`Authorization: Bearer <key>`).")
_UNAVAILABLE = _json(
    "Error",
    "Cannot be answered now (the broker did not confirm in time, the partition is moving, its "
    "owner is away): retry after `Retry-After`. A POST without `Idempotency-Key` also names the "
    "`order_id` and its `Location`: GET it before placing the order again.",
    "Retry-After",
    "Location",
)


def _post_orders() -> dict[str, Any]:
    return {
        "operationId": "placeOrder",
        "summary": "Place an order",
        "description": "No 2xx before Kafka acknowledged the order (acks=all). The body may be "
        "sent with `Content-Encoding: gzip` or `deflate`; at most 64 KiB once decoded.",
        "parameters": [_ref("parameters", "Idempotency-Key")],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("schemas", "OrderRequest")}},
        },
        "responses": {
            "201": _json(
                "Order",
                "Stored by its owner (or the same request again, with "
                "`Idempotent-Replayed: true`).",
                "Location",
                "Idempotent-Replayed",
            ),
            "202": _json(
                "Accepted",
                "Durably in Kafka, not stored yet: GET the Location; the "
                "same keyed POST again answers 201 (or 422).",
                "Location",
                "Retry-After",
            ),
            "400": _json(
                "Problems",
                "The body or a header is invalid (every problem listed); "
                "also a body that is not JSON, not UTF-8 or undecodable.",
            ),
            "401": _UNAUTHORIZED,
            "408": _json(
                "Problems",
                "The body did not arrive in time (`ORDERFLOW_BODY_READ_TIMEOUT`, 10 s by default).",
            ),
            "413": _json("Problems", "The body is over 64 KiB (declared or once decoded)."),
            "415": _json("Problems", "A `Content-Encoding` other than gzip, deflate, identity."),
            "422": _json(
                "Problems",
                "The `Idempotency-Key` was first used for another body; nothing was changed.",
            ),
            "503": _UNAVAILABLE,
        },
    }


def _get_order() -> dict[str, Any]:
    return {
        "operationId": "getOrder",
        "summary": "An order, from the worker owning its partition (any worker forwards it)",
        "parameters": [
            {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": "long-poll: answer as soon as the order is terminal, or after this "
                "many seconds with its current state",
                "schema": {"type": "number", "minimum": 0, "maximum": _MAX_WAIT_S},
            },
        ],
        "responses": {
            "200": _json("Order", "The order."),
            "202": _json(
                "Accepted",
                "Accepted (202) by this worker and not stored yet.",
                "Location",
                "Retry-After",
            ),
            "400": _json("Problems", "`wait` is not a number from 0 to 30."),
            "401": _UNAUTHORIZED,
            "404": _json(
                "Error",
                "No such order (said only once the owner has read every "
                "order placed on its partition before the GET).",
            ),
            "429": _json(
                "Error", "Too many long-polls on this worker, or from this client.", "Retry-After"
            ),
            "503": _UNAVAILABLE,
        },
    }


_ORDER_ID_PARAMETER = {
    "name": "order_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}
_CHANGE_RESPONSES: dict[str, Any] = {
    "202": _json(
        "Accepted",
        "Durably in Kafka, not decided yet: the same request again answers the decision.",
        "Location",
        "Retry-After",
    ),
    "404": _json("Error", "No such order (or another client's)."),
    "408": _json("Problems", "The body did not arrive in time."),
    "409": _json("Conflict", "Not possible in the order's state; the message says why."),
    "413": _json("Problems", "The body is over 64 KiB."),
    "415": _json("Problems", "A body not declared `application/json`, or an unknown coding."),
    "503": _UNAVAILABLE,
}


def _get_events() -> dict[str, Any]:
    return {
        "operationId": "orderEvents",
        "summary": "The order's states as Server-Sent Events (from any worker)",
        "description": "`event: order` with the order as `data` and its version as `id`: the "
        "current state at once, then each change; the stream ends after PAID, PAYMENT_FAILED, "
        "CANCELLED (nothing owed) or REFUNDED, or after 5 minutes. Reconnect with "
        "`Last-Event-ID` to get only what changed since. Comments keep an idle stream open.",
        "parameters": [
            _ORDER_ID_PARAMETER,
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": {
                "description": "The stream.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            "404": _json("Error", "No such order (or another client's)."),
            "429": _json(
                "Error", "Too many long-polls on this worker, or from this client.", "Retry-After"
            ),
            "503": _UNAVAILABLE,
        },
    }


def _post_cancel() -> dict[str, Any]:
    return {
        "operationId": "cancelOrder",
        "summary": "Cancel an order that is not paid",
        "description": "A PENDING order becomes CANCELLED and is never charged; a charge that "
        "raced the cancel is refunded in full (the order stays CANCELLED). Idempotent: a "
        "CANCELLED order answers 200 again. A paid or declined order answers 409.",
        "parameters": [_ORDER_ID_PARAMETER],
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": _ref("schemas", "CancelRequest")}},
        },
        "responses": {
            "200": _json("Order", "The order, CANCELLED.", "Idempotent-Replayed"),
            "400": _json("Problems", "The body is invalid (every problem listed)."),
            **_CHANGE_RESPONSES,
        },
    }


def _post_refund() -> dict[str, Any]:
    return {
        "operationId": "refundOrder",
        "summary": "Refund part or all of an order's captured payment",
        "description": "Several partial refunds may follow each other, never beyond what was "
        "captured (refunds in progress count). The `Idempotency-Key` (required) names the "
        "refund: the same key and body answer the same refund, never a second one. The "
        "refund's `status` is REQUESTED until the gateway answers; GET the order to follow it.",
        "parameters": [
            _ORDER_ID_PARAMETER,
            _ref("parameters", "Refund-Idempotency-Key"),
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("schemas", "RefundRequest")}},
        },
        "responses": {
            "201": _json(
                "RefundAnswer", "The refund, reserved and asked of the gateway.", "Location"
            ),
            "200": _json(
                "RefundAnswer", "The same refund again (`Idempotent-Replayed: true`).", "Location"
            ),
            "400": _json("Problems", "The body or the Idempotency-Key is invalid or missing."),
            "422": _json(
                "Problems",
                "`amount` beyond what is left to refund, `currency` not the order's, or the "
                "`Idempotency-Key` used for another refund body; nothing was changed.",
            ),
            **_CHANGE_RESPONSES,
        },
    }


OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/openapi.json"})


def _open(operation: dict[str, Any]) -> dict[str, Any]:
    """An operation that needs no API key (unless the deployment closes it: ``_secure``)."""
    return {**operation, "security": []}


def _secure(paths: dict[str, Any], open_paths: Collection[str]) -> dict[str, Any]:
    """The operations of paths not left open need the API key, and may answer 401."""
    for path, operations in paths.items():
        if path in open_paths:
            continue
        for operation in operations.values():
            operation.pop("security", None)
            operation["responses"].setdefault("401", _UNAUTHORIZED)
    return paths


def _paths() -> dict[str, Any]:
    return {
        "/orders": {"post": _post_orders()},
        "/orders/{order_id}": {"get": _get_order()},
        "/orders/{order_id}/events": {"get": _get_events()},
        "/orders/{order_id}/cancel": {"post": _post_cancel()},
        "/orders/{order_id}/refunds": {"post": _post_refund()},
        "/health": {"get": _open_get("health", "Liveness, with the worker's counters", _HEALTH)},
        "/ready": {"get": _open_get("ready", "Readiness", _READY)},
        "/metrics": {
            "get": _open_get("metrics", "Prometheus metrics (text exposition format)", _METRICS)
        },
        "/openapi.json": {"get": _open_get("openapi", "This document", _OPENAPI)},
    }


def _open_get(operation_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    """A GET of the worker itself (health, metrics, this document): no API key by default."""
    # A copy: ``_secure`` adds a 401 to the responses of a path it closes.
    operation = {"operationId": operation_id, "summary": summary, "responses": dict(responses)}
    return _open(operation)


_HEALTH = {
    "200": _json("Health", "Every agent moves on."),
    "503": _json(
        "Health",
        "An agent is stuck on one event, or a rebalance/table "
        "recovery outlasted its deadline (`status: stuck`).",
    ),
}
_READY = {
    "200": _json("Ready", "Partitions assigned and tables recovered."),
    "503": _json("Ready", "Recovering or rebalancing.", "Retry-After"),
}
_METRICS = {
    "200": {
        "description": "The worker's metrics (`orderflow_*`).",
        "content": {"text/plain; version=0.0.4; charset=utf-8": {"schema": {"type": "string"}}},
    }
}
_OPENAPI = {
    "200": {
        "description": "OpenAPI 3.1",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def _components() -> dict[str, Any]:
    string = {"type": "string"}
    return {
        "schemas": {
            "OrderRequest": ORDER_REQUEST.json_schema(),
            "CancelRequest": CANCEL_REQUEST.json_schema(),
            "RefundRequest": REFUND_REQUEST.json_schema(),
            "Order": responses.ORDER.json_schema(),
            "RefundAnswer": responses.REFUND_ANSWER.json_schema(),
            "Conflict": responses.CONFLICT.json_schema(),
            "Accepted": responses.ACCEPTED.json_schema(),
            "Problems": responses.PROBLEMS.json_schema(),
            "Error": responses.ERROR.json_schema(),
            "Health": responses.HEALTH.json_schema(),
            "Ready": responses.READY.json_schema(),
        },
        "parameters": {
            "Idempotency-Key": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "The same key and body return the same order and never charge "
                "twice; without a key every POST is a new order.",
                "schema": {"type": "string", "minLength": 1, "maxLength": _MAX_KEY_LENGTH},
            },
            "Refund-Idempotency-Key": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": "Names the refund: the same key and body answer the same refund "
                "and never refund twice.",
                "schema": {"type": "string", "minLength": 1, "maxLength": _MAX_KEY_LENGTH},
            },
        },
        "headers": {
            "Location": {"description": "`/orders/{order_id}`", "schema": string},
            "Retry-After": {"description": "seconds", "schema": {"type": "integer"}},
            "Idempotent-Replayed": {
                "description": "`true` when a keyed POST was answered from the order stored before",
                "schema": {"type": "string", "enum": ["true"]},
            },
        },
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "the client's API key",
            },
        },
    }


def openapi_document(
    version: str = "0.1.0", open_paths: Collection[str] = OPEN_PATHS
) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document of a worker's HTTP API; ``open_paths`` need no API key."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "orderflow",
            "version": version,
            "description": "Orders placed over HTTP, paid through the payment gateway, exact "
            "with money. Money is an integer in the currency's minor unit.",
        },
        "security": [{"bearerAuth": []}],
        "paths": _secure(_paths(), open_paths),
        "components": _components(),
    }
