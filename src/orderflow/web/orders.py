"""``POST /orders`` and ``GET /orders/{order_id}``: validate, route to the owner, answer in JSON.

POST does not write a table (only agents can): it sends a PlaceOrder command keyed by the order
id and waits, in process, until the order service has stored the order. The request is served by
the worker that owns the order's partition, so that wait is an in-memory signal, and an
``Idempotency-Key`` is checked against the order the single writer actually stored.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from orderflow.domain.events import PlaceOrder, rfc3339
from orderflow.domain.validation import OrderRequest, Problem, validate_order_request
from orderflow.records import encode_event, order_to_public
from orderflow.tables import OrderTable
from orderflow.watch import OrderWatch
from orderflow.web.routing import FORWARDED_HEADER, NotReady, OwnerLookup

__all__ = ["MAX_BODY_BYTES", "MAX_WAIT_S", "ApiResponse", "OrderApi", "order_id_for_key"]

MAX_BODY_BYTES = 64 * 1024
MAX_WAIT_S = 30.0
_KEY_NAMESPACE = uuid.UUID("0b8f7c52-3e0e-4a4f-8f59-0e5f3d7f8a21")
_MAX_KEY_LENGTH = 255
_ORDER_ID_LENGTH = len("ord_") + 32


def order_id_for_key(idempotency_key: str) -> str:
    """The order id an Idempotency-Key stands for: the same key always names the same order."""
    return "ord_" + uuid.uuid5(_KEY_NAMESPACE, idempotency_key).hex


def _fingerprint(request: OrderRequest) -> str:
    canonical = {
        "customer_id": request.customer_id,
        "currency": request.currency,
        "items": [[i.sku, i.quantity, i.unit_amount] for i in request.items],
        "token": request.payment_token,
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ApiResponse:
    """What a view answers: status, a JSON-able body, extra headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a forwarded answer, passed through untouched
    content_type: str = "application/json"


def _problems(status: int, error: str, problems: list[Problem]) -> ApiResponse:
    listed = [{"field": p.field, "code": p.code, "message": p.message} for p in problems]
    return ApiResponse(status, {"error": error, "problems": listed})


def _unavailable(reason: str) -> ApiResponse:
    return ApiResponse(503, {"error": "unavailable", "message": reason}, {"Retry-After": "1"})


class OrderApi:
    """The HTTP behaviour of orders, kept apart from Faust's View classes."""

    def __init__(
        self,
        orders: OrderTable,
        commands: Any,
        watch: OrderWatch,
        routing: OwnerLookup,
        post_wait_s: float,
    ) -> None:
        self.orders = orders
        self.commands = commands
        self.watch = watch
        self.routing = routing
        self.post_wait_s = post_wait_s

    async def create(self, request: Any) -> ApiResponse:
        body, problem = await self._read_body(request)
        if problem is not None:
            return _problems(400, "invalid_request", [problem])
        key = request.headers.get("Idempotency-Key")
        problems: list[Problem] = []
        if key is not None and not (0 < len(key) <= _MAX_KEY_LENGTH and key.isprintable()):
            problems.append(Problem("Idempotency-Key", "format",
                                    f"must be 1 to {_MAX_KEY_LENGTH} printable characters"))  # fmt: skip
        validated = validate_order_request(body)
        if isinstance(validated, list):
            problems.extend(validated)
        if problems:
            return _problems(400, "invalid_request", problems)
        assert isinstance(validated, OrderRequest)
        try:
            if key is not None:
                order_id = order_id_for_key(key)
                owner = self.routing.owner(order_id)
                if not owner.is_local:
                    return await self._forward(owner, request, body_bytes=request["raw_body"])
            else:
                order_id = self._local_order_id()
            return await self._place(order_id, validated, keyed=key is not None)
        except NotReady as exc:
            return _unavailable(str(exc))

    def _local_order_id(self) -> str:
        """A fresh order id whose partition this worker owns, so the POST needs no extra hop."""
        for _ in range(256):
            order_id = "ord_" + uuid.uuid4().hex
            if self.routing.owner(order_id).is_local:
                return order_id
        raise NotReady("this worker owns no partition")

    async def _place(self, order_id: str, request: OrderRequest, keyed: bool) -> ApiResponse:
        fingerprint = _fingerprint(request)
        existing = self.orders.get(order_id)
        request_id = str(uuid.uuid4())
        if existing is None:
            command = PlaceOrder(order_id, request_id, fingerprint, request.customer_id,
                                 request.currency, request.items, request.payment_token,
                                 rfc3339(time.time()))  # fmt: skip
            await self.commands.send(key=order_id.encode(), value=encode_event(command))
            existing = await self.watch.wait_for(
                order_id, lambda: self.orders.get(order_id), lambda o: o is not None,
                self.post_wait_s,
            )  # fmt: skip
            if existing is None and keyed:
                return _unavailable("the order was not stored in time; retry with the same "
                                    "Idempotency-Key")  # fmt: skip
            if existing is None:
                # Without a key a retry would be a second order (and charge): say it was taken.
                body = {"order_id": order_id, "status": "ACCEPTED",
                        "message": "accepted; not stored yet: GET the Location to follow it"}  # fmt: skip
                return ApiResponse(202, body, {"Location": f"/orders/{order_id}"})
        if existing.fingerprint != fingerprint:
            return _problems(422, "idempotency_key_reused", [Problem(
                "Idempotency-Key", "reused",
                "was already used for a different request; nothing was changed")])  # fmt: skip
        headers = {"Location": f"/orders/{order_id}"}
        if existing.request_id != request_id:
            headers["Idempotent-Replayed"] = "true"
        return ApiResponse(201, order_to_public(existing), headers)

    async def get(self, request: Any, order_id: str) -> ApiResponse:
        problems: list[Problem] = []
        if not (order_id.startswith("ord_") and len(order_id) == _ORDER_ID_LENGTH):
            return ApiResponse(404, {"error": "not_found", "order_id": order_id})
        wait = 0.0
        raw_wait = request.query.get("wait")
        if raw_wait is not None:
            try:
                wait = float(raw_wait)
                if not 0 <= wait <= MAX_WAIT_S:
                    raise ValueError
            except ValueError:
                problems.append(
                    Problem("wait", "range", f"must be a number from 0 to {MAX_WAIT_S:g}")
                )
        if problems:
            return _problems(400, "invalid_request", problems)
        try:
            owner = self.routing.owner(order_id)
            if not owner.is_local:
                return await self._forward(owner, request, body_bytes=None, extra=wait)
        except NotReady as exc:
            return _unavailable(str(exc))
        order = await self.watch.wait_for(
            order_id, lambda: self.orders.get(order_id),
            lambda o: o is not None and o.status.is_terminal, wait,
        )  # fmt: skip
        if order is None:
            return ApiResponse(404, {"error": "not_found", "order_id": order_id})
        return ApiResponse(200, order_to_public(order))

    async def _forward(
        self, owner: Any, request: Any, body_bytes: bytes | None, extra: float = 0.0
    ) -> ApiResponse:
        if request.headers.get(FORWARDED_HEADER):
            # The sender thought we own the key; we think not: assignments are moving.
            raise NotReady("partition ownership is changing")
        status, payload, content_type, headers = await self.routing.forward(
            owner, request, body_bytes, timeout=self.post_wait_s + extra + 5
        )
        return ApiResponse(status, None, headers, raw=payload, content_type=content_type)

    async def _read_body(self, request: Any) -> tuple[Any, Problem | None]:
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return None, Problem("$", "too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            return None, Problem("$", "too_large", f"the body exceeds {MAX_BODY_BYTES} bytes")
        request["raw_body"] = raw
        try:
            return orjson.loads(raw), None
        except orjson.JSONDecodeError:
            return None, Problem("$", "invalid_json", "the body is not valid JSON")
