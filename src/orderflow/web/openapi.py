"""``GET /openapi.json``: the OpenAPI 3.1 document, built from the shapes that validate requests
(``domain.validation.ORDER_REQUEST``) and describe answers (``domain.responses``): one source.
The webhook answers' shapes are here (``domain.webhooks`` renders them), and so is the POST a
webhook receiver gets (the document's ``webhooks``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from orderflow.domain import responses
from orderflow.domain.shapes import Array, Field, Integer, Object, String
from orderflow.domain.validation import (
    CANCEL_REQUEST,
    ENDPOINT_ID_PATTERN,
    EVENT_ID_PATTERN,
    ORDER_REQUEST,
    REFUND_REQUEST,
    WEBHOOK_ENDPOINT_REQUEST,
    WEBHOOK_RESEND_REQUEST,
)
from orderflow.domain.webhooks import (
    MAX_ATTEMPTS_KEPT,
    MAX_ENDPOINTS_PER_CLIENT,
    SIGNATURE_HEADER,
)

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


# The webhook operations answer 503 with Retry-After only (no order to GET instead).
_WEBHOOK_UNAVAILABLE = _json(
    "Error",
    "Cannot be answered now (the endpoints are still being read at start, the broker did not "
    "confirm in time, the order's partition is moving): retry after `Retry-After`; the same "
    "request is safe.",
    "Retry-After",
)
# What reading a request's body can refuse (``OrderApi.read_body``), on every webhook operation
# that reads one.
_BODY_RESPONSES: dict[str, Any] = {
    "408": _json("Problems", "The body did not arrive in time (`ORDERFLOW_BODY_READ_TIMEOUT`)."),
    "413": _json("Problems", "The body is over 64 KiB (declared or once decoded)."),
}
_ENDPOINT_ID_PARAMETER = {
    "name": "endpoint_id",
    "in": "path",
    "required": True,
    "description": "the endpoint's id (`we_…`); any other string is an unknown endpoint (404)",
    "schema": {"type": "string"},
}


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    description: str = "",
    parameters: tuple[dict[str, Any], ...] = (),
    body: tuple[str, bool] | None = None,
) -> dict[str, Any]:
    """One operation; ``body``: its JSON request body's schema and whether it is required."""
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = list(parameters)
    if body is not None:
        schema, required = body
        operation["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": _ref("schemas", schema)}},
        }
    operation["responses"] = {**responses, "503": _WEBHOOK_UNAVAILABLE}
    return operation


def _webhook_operations() -> dict[str, Any]:
    """The paths of webhooks: the caller's endpoints, an order's deliveries."""
    bad_coding = _json("Problems", "A body not declared `application/json`, or an unknown coding.")
    register = _operation(
        "registerWebhook",
        "Register a webhook endpoint for the caller's orders",
        {
            "201": _json(
                "WebhookEndpointCreated",
                "Registered; the only answer that shows the endpoint's `secret`.",
                "Location",
            ),
            "400": _json(
                "Problems",
                "The body is invalid or the URL refused (every problem listed); also a body "
                "that is not JSON, not UTF-8 or undecodable.",
            ),
            "403": _json(
                "Error",
                "The workers run without API keys (`ORDERFLOW_API_AUTH=none`): webhooks belong "
                "to an API client.",
            ),
            "409": _json(
                "Problems",
                f"The client has {MAX_ENDPOINTS_PER_CLIENT} endpoints already (`limit_reached`); "
                "delete one first.",
            ),
            "415": _json("Problems", "A `Content-Encoding` other than gzip, deflate, identity."),
            **_BODY_RESPONSES,
        },
        "From now on each change of the caller's orders is POSTed to `url`, signed with the "
        "`secret` this answer shows once (it is derived from the cluster secret, never stored "
        "or shown again; see the document's `webhooks`). A host that is or resolves to a "
        "loopback, private, link-local or reserved address, or a local name (`localhost`, "
        "`*.local`, `*.internal`) is refused unless the workers run with "
        f"`ORDERFLOW_WEBHOOK_ALLOW_PRIVATE`. At most {MAX_ENDPOINTS_PER_CLIENT} endpoints per "
        "client. Answered once Kafka has the endpoint (every worker then sends to it).",
        body=("WebhookEndpointRequest", True),
    )
    listed = _operation(
        "listWebhooks",
        "The caller's webhook endpoints (never their secrets)",
        {"200": _json("WebhookEndpoints", "The caller's endpoints, oldest first.")},
    )
    delete = _operation(
        "deleteWebhook",
        "Stop sending to one of the caller's endpoints",
        {
            "204": {"description": "Deleted."},
            "404": _json("EndpointNotFound", "No such endpoint (or another client's)."),
        },
        "Answered once Kafka has the deletion. Nothing more is POSTed to the endpoint: its "
        "deliveries still PENDING end FAILED, unsent (their last attempt's `error` is "
        "`endpoint deleted`).",
        (_ENDPOINT_ID_PARAMETER,),
    )
    deliveries = _operation(
        "orderWebhooks",
        "An order's webhook deliveries and their attempts (from its owner)",
        {
            "200": _json("WebhookDeliveries", "The order's deliveries (none: an empty list)."),
            "400": _json("Problems", "A body was sent and is not JSON."),
            "404": _json("Error", "No such order (or another client's)."),
            "415": bad_coding,
            **_BODY_RESPONSES,
        },
        "Each event of the order, per endpoint: its state (PENDING, DELIVERED, FAILED), when "
        f"it is tried next, and its last {MAX_ATTEMPTS_KEPT} attempts (`attempt_count` counts "
        "them all). Any worker forwards it to the order's owner. A request body is not "
        "needed; one sent must be JSON.",
        (_ORDER_ID_PARAMETER,),
    )
    resend = _operation(
        "resendOrderWebhooks",
        "Send an order's webhook deliveries again",
        {
            "202": _json(
                "WebhookResending", "In Kafka: the deliveries will be sent again.", "Location"
            ),
            "400": _json("Problems", "The body is invalid (every problem listed)."),
            "404": _json(
                "Error",
                "No such order (or another client's), no such event, or an order without "
                "deliveries.",
            ),
            "415": bad_coding,
            **_BODY_RESPONSES,
        },
        "Every delivery of the order (or only those of `event_id`) becomes PENDING and due "
        "now, whatever its state (a DELIVERED one is sent again: receivers de-duplicate by "
        "event id), and is retried for a whole retry period again. The body is optional. "
        "Applied by the order's owner once Kafka has the request: follow it at the "
        "`Location`.",
        (_ORDER_ID_PARAMETER,),
        ("WebhookResendRequest", False),
    )
    return {
        "/webhooks": {"post": register, "get": listed},
        "/webhooks/{endpoint_id}": {"delete": delete},
        "/orders/{order_id}/webhooks": {"get": deliveries},
        "/orders/{order_id}/webhooks/resend": {"post": resend},
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
        **_webhook_operations(),
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


_TIME = String(description="RFC 3339 time, UTC")
_ENDPOINT_ID = String(ENDPOINT_ID_PATTERN, description="the endpoint's id")
_EVENT_ID = String(
    EVENT_ID_PATTERN,
    description="the event's id: the same for every delivery and attempt of one change",
)
_ENDPOINT_FIELDS = (
    Field("endpoint_id", _ENDPOINT_ID),
    Field("url", String(description="where the events are POSTed")),
    Field("created_at", _TIME),
)
WEBHOOK_ENDPOINT = Object(_ENDPOINT_FIELDS, description="A registered webhook endpoint.")
WEBHOOK_ENDPOINT_CREATED = Object(
    (
        *_ENDPOINT_FIELDS,
        Field(
            "secret",
            String(
                r"^whsec_[0-9a-f]{64}$",
                description="the endpoint's signing secret, shown only in this answer",
            ),
        ),
    ),
    description="The endpoint just registered, with its signing secret.",
)
WEBHOOK_ENDPOINTS = Object((Field("endpoints", Array(WEBHOOK_ENDPOINT)),))
_ATTEMPT = Object(
    (
        Field("number", Integer(minimum=1, description="1 for the first POST of the delivery")),
        Field("at", _TIME),
        Field(
            "status",
            Integer(nullable=True, description="the receiver's HTTP status; null: no answer"),
        ),
        Field(
            "error",
            String(nullable=True, description="why there was no answer (timeout, refused, …)"),
        ),
        Field("duration_ms", Integer(minimum=0)),
    )
)
_DELIVERY = Object(
    (
        Field("event_id", _EVENT_ID),
        Field("type", String(description="order.<status> (order.paid, …) or order.updated")),
        Field("sequence", Integer(minimum=1, description="the event's place among the order's")),
        Field("endpoint_id", _ENDPOINT_ID),
        Field("url", String(description="the endpoint's URL when the event was made")),
        Field(
            "state",
            String(
                allowed=frozenset({"PENDING", "DELIVERED", "FAILED"}),
                description="PENDING: to be (re)sent; DELIVERED: a 2xx answer; FAILED: no 2xx "
                "within the retry period (sent again only when asked)",
            ),
        ),
        Field("attempt_count", Integer(minimum=0, description="every attempt made")),
        Field("next_attempt_at", String(nullable=True, description="while PENDING")),
        Field(
            "attempts",
            Array(_ATTEMPT, max_items=MAX_ATTEMPTS_KEPT, description="the last attempts"),
        ),
    ),
    description="One event for one endpoint, and how its POSTs went.",
)
WEBHOOK_DELIVERIES = Object(
    (Field("order_id", responses.ORDER_ID), Field("deliveries", Array(_DELIVERY))),
    description="An order's webhook deliveries.",
)
WEBHOOK_RESENDING = Object(
    (
        Field("order_id", responses.ORDER_ID),
        Field("resending", Integer(minimum=1, description="deliveries to be sent again")),
        Field(
            "event_id",
            String(EVENT_ID_PATTERN, nullable=True, description="null: every event"),
        ),
    ),
)
ENDPOINT_NOT_FOUND = Object(
    (
        Field("error", String(allowed=frozenset({"not_found"}))),
        Field("endpoint_id", String(description="the id asked for (at most 64 characters)")),
    )
)
WEBHOOK_EVENT = Object(
    (
        Field("id", _EVENT_ID),
        Field(
            "type",
            String(
                description="order.<new status in lower case> (order.pending, order.paid, "
                "order.payment_failed, order.cancelled, order.partially_refunded, "
                "order.refunded), or order.updated when the status stayed the same"
            ),
        ),
        Field(
            "sequence",
            Integer(minimum=1, description="1, 2, 3 … per order: apply the highest one seen"),
        ),
        Field("created_at", _TIME),
        Field("data", Object((Field("order", responses.ORDER),))),
    ),
    description="The body of each webhook POST: one change of one order.",
)


def _webhook_schemas() -> dict[str, Any]:
    event = WEBHOOK_EVENT.json_schema()
    event["properties"]["data"]["properties"]["order"] = _ref("schemas", "Order")
    return {
        "WebhookEndpointRequest": WEBHOOK_ENDPOINT_REQUEST.json_schema(),
        "WebhookResendRequest": WEBHOOK_RESEND_REQUEST.json_schema(),
        "WebhookEndpoint": WEBHOOK_ENDPOINT.json_schema(),
        "WebhookEndpointCreated": WEBHOOK_ENDPOINT_CREATED.json_schema(),
        "WebhookEndpoints": WEBHOOK_ENDPOINTS.json_schema(),
        "WebhookDeliveries": WEBHOOK_DELIVERIES.json_schema(),
        "WebhookResending": WEBHOOK_RESENDING.json_schema(),
        "EndpointNotFound": ENDPOINT_NOT_FOUND.json_schema(),
        "WebhookEvent": event,
    }


def _header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _webhooks() -> dict[str, Any]:
    """The POST every registered endpoint receives (OpenAPI 3.1 ``webhooks``)."""
    receive = {
        "operationId": "orderEvent",
        "summary": "What a registered endpoint receives: one change of one of the client's orders",
        "description": "Each change of an order's public view is one event, POSTed to each "
        "endpoint of the order's client at least once: until an answer is a 2xx, retried with "
        "doubling waits (`ORDERFLOW_WEBHOOK_RETRY_FIRST` up to `_RETRY_CAP`) for "
        "`ORDERFLOW_WEBHOOK_RETRY_PERIOD` (24 h by default) after the change, then FAILED "
        "until `POST /orders/{order_id}/webhooks/resend`. Redirects are not followed.\n\n"
        f"**Verify** `{SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex>`: compute HMAC-SHA256 with "
        "the endpoint's secret (`whsec_…`, as given at registration, the whole string as the "
        "key) over `<t>.` followed by the raw body bytes, compare it in constant time with each "
        "`v1`, and refuse a `t` more than 5 minutes from your clock (a replay).\n\n"
        "**De-duplicate** by `Orderflow-Event-Id` (the body's `id`): a crash, a lost answer or "
        "a resend delivers the same event again. **Order** by `sequence`: events of one order "
        "may arrive out of order (a retried one after a later one); keep the order with the "
        "highest `sequence` seen. Events of different orders are not ordered.",
        "security": [],
        "parameters": [
            _header(
                SIGNATURE_HEADER,
                '`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`',
                {"type": "string", "pattern": r"^t=[0-9]+,v1=[0-9a-f]{64}(?![\s\S])"},
            ),
            _header(
                "Orderflow-Event-Id",
                "the event's id, as the body's `id`: de-duplicate by it",
                _EVENT_ID.json_schema(),
            ),
            _header(
                "Orderflow-Delivery-Attempt",
                "1 for the first POST of this event to this endpoint, then 2, 3, …",
                {"type": "integer", "minimum": 1},
            ),
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("schemas", "WebhookEvent")}},
        },
        "responses": {
            "2XX": {"description": "Received: the delivery is DELIVERED."},
            "default": {
                "description": "Any other status, a redirect, or no answer within "
                "`ORDERFLOW_WEBHOOK_TIMEOUT`: sent again later."
            },
        },
    }
    return {"orderEvent": {"post": receive}}


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
            **_webhook_schemas(),
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
            "Location": {
                "description": "the resource: `/orders/{order_id}` (an order), "
                "`/webhooks/{endpoint_id}` (an endpoint), `/orders/{order_id}/webhooks` (its "
                "deliveries)",
                "schema": string,
            },
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
            "with money. Money is an integer in the currency's minor unit. Clients register "
            "webhook endpoints (`/webhooks`) to be told of each change of their orders: the "
            "signed POST they receive is described under `webhooks`.",
        },
        "security": [{"bearerAuth": []}],
        "paths": _secure(_paths(), open_paths),
        "webhooks": _webhooks(),
        "components": _components(),
    }
