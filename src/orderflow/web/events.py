"""``GET /orders/{id}/events``: an order's states as Server-Sent Events, from any worker.

The stream is a loop of long-polls of the order (``GET /orders/{id}?wait=..&after=<version>``)
through the same path as any GET: served locally when this worker owns the order, forwarded to
its owner otherwise, waiting for a moving partition's new owner. So a rebalance costs a stream
nothing: its next poll goes to the new owner. Each event's id is the version of the order's
public view; a client that reconnects with ``Last-Event-ID`` gets only what changed since.

The first event is the current state, at once; then one per change; the stream ends after a
state that nothing will change any more without a new request (PAID, PAYMENT_FAILED, CANCELLED
with nothing owed, REFUNDED; not while a refund is being made), or after ``max_s`` (the client
reconnects). A comment every ``heartbeat_s`` keeps proxies from closing an idle stream. Each
stream holds one of its client's long-poll slots while it waits.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from orderflow.domain.responses import public_version
from orderflow.ports import BodyStream, HttpRequest
from orderflow.web.orders import ApiResponse, OrderApi

__all__ = ["OrderStream", "is_final_view"]

_VERSION = re.compile(r"[0-9a-f]{16}")
_RETRY_S = 1.0  # the pause after a 202/503 before the next poll
_FINAL_STATUSES = frozenset({"PAYMENT_FAILED", "REFUNDED"})


def is_final_view(order: Mapping[str, Any]) -> bool:
    """Whether an order's public view will not change without a new request."""
    status = order.get("status")
    refunds = order.get("refunds") or []
    if any(r.get("status") == "REQUESTED" for r in refunds):
        return False
    if status == "CANCELLED":
        return bool(order.get("refunded", 0) >= order.get("captured", 0))
    return status == "PAID" or status in _FINAL_STATUSES


class _NoBody:
    async def read(self, n: int, /) -> bytes:
        return b""


@dataclass(eq=False)
class _Poll(dict[str, Any]):
    """A GET of the order, as ``OrderApi.get`` reads a request (and forwards it)."""

    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    remote: str | None
    method: str = "GET"
    content: BodyStream = field(default_factory=_NoBody)
    content_length: int | None = 0

    @property
    def raw_path(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query.items())
        return f"{self.path}?{query}" if query else self.path


def _frame(version: str, body: bytes) -> bytes:
    return b"id: " + version.encode() + b"\nevent: order\ndata: " + body + b"\n\n"


class OrderStream:
    """The Server-Sent Events of one order, over ``OrderApi.get``."""

    def __init__(self, api: OrderApi, heartbeat_s: float = 15.0, max_s: float = 300.0) -> None:
        self.api = api
        self.heartbeat_s = heartbeat_s
        self.max_s = max_s

    async def open(self, request: HttpRequest, order_id: str) -> ApiResponse | AsyncIterator[bytes]:
        """The stream's frames, or the answer that refuses it (401, 404, 429, 503) before any
        byte of the stream is sent."""
        last = request.headers.get("Last-Event-ID")
        after = last if last is not None and _VERSION.fullmatch(last) else None
        first = await self._poll(request, order_id, after, 0.0)
        if first.status != 200:
            return first
        return self._frames(request, order_id, after, first)

    async def _frames(
        self, request: HttpRequest, order_id: str, after: str | None, answer: ApiResponse
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_s
        while True:
            if answer.status == 200:
                body = answer.raw if answer.raw is not None else orjson.dumps(answer.body)
                order = orjson.loads(body)
                version = public_version(order)
                if version != after:
                    after = version
                    yield _frame(version, orjson.dumps(order))
                else:
                    yield b": keep-alive\n\n"
                if is_final_view(order):
                    return
            elif answer.status in (202, 503):
                yield b": waiting for the order's owner\n\n"
                await asyncio.sleep(_RETRY_S)
            else:  # gone (404), or over the client's long-poll cap (429): it reconnects
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            answer = await self._poll(request, order_id, after, min(self.heartbeat_s, remaining))

    async def _poll(
        self, request: HttpRequest, order_id: str, after: str | None, wait: float
    ) -> ApiResponse:
        query = {"wait": f"{wait:g}"}
        if after is not None:
            query["after"] = after
        poll = _Poll(f"/orders/{order_id}", query, request.headers, request.remote)
        return await self.api.get(poll, order_id)
