"""The small interfaces the services depend on (cosmicpython's "ports").

``OrderService``, ``PaymentService``, ``DeadLetters`` and ``OrderApi`` take these, never Faust
objects: the app passes the adapters (Faust tables, topics, the gateway client, the owner lookup)
and the unit tests pass the fakes of ``tests/fakes.py``, which implement the same Protocols.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from orderflow.domain.events import (
    OrderCancelled,
    OrderCreated,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    RefundFailed,
    RefundRequested,
)
from orderflow.domain.order import Order
from orderflow.domain.payment import PaymentRecord
from orderflow.gateway.base import PaymentGateway
from orderflow.web.routing import Forwarding, Owner

__all__ = [
    "BodyStream",
    "Clock",
    "CommandSender",
    "DeadLetterSink",
    "Handler",
    "HttpRequest",
    "InboundEvent",
    "InboundMessage",
    "OrderReader",
    "OrderStore",
    "OutboundEvent",
    "OwnerRouting",
    "PaymentGateway",
    "PaymentStore",
    "Publisher",
    "RecordSink",
]

# What the services publish: each goes to the topic of its type (the publisher knows which).
OutboundEvent = (
    OrderCreated
    | PaymentCompleted
    | PaymentFailed
    | OrderCancelled
    | RefundRequested
    | PaymentRefunded
    | RefundFailed
)


class InboundMessage(Protocol):
    """One Kafka record as a handler reads it (Faust's ``Message``, or a test's value)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...


class InboundEvent(Protocol):
    """What an agent hands a service: Faust's ``Event`` (tracing and table writes bind to it)."""

    @property
    def message(self) -> InboundMessage: ...


Handler = Callable[[InboundEvent], Awaitable[None]]


class Clock(Protocol):
    """Wall-clock seconds (``time.time``), injectable."""

    def __call__(self) -> float: ...


class OrderReader(Protocol):
    """Reads of OrderDB (the HTTP API)."""

    def get(self, order_id: str) -> Order | None: ...


class OrderStore(OrderReader, Protocol):
    """OrderDB as the order service uses it (``tables.OrderTable``)."""

    def put(self, order: Order) -> None: ...
    def decode(self, raw: bytes) -> Order: ...
    def partition_rows(self, partition: int) -> Iterable[tuple[bytes, bytes]]: ...


class PaymentStore(Protocol):
    """PaymentDB as the payment service uses it (``tables.PaymentTable``)."""

    def get(self, order_id: str) -> PaymentRecord | None: ...
    def put(self, record: PaymentRecord) -> None: ...
    async def put_durable(self, record: PaymentRecord) -> None:
        """Store it and wait until it is in Kafka (raises if it is not)."""
        ...

    def decode(self, raw: bytes) -> PaymentRecord: ...
    def partition_rows(self, partition: int) -> Iterable[tuple[bytes, bytes]]: ...


class Publisher(Protocol):
    """Publishes what a service decided; which topic carries it is the publisher's business."""

    async def publish(self, event: OutboundEvent) -> None:
        """Publish ``event`` keyed by its order id."""
        ...

    async def request_reconciliation(self, order_id: str) -> None:
        """Ask the owner of the order's UNKNOWN payment to settle it."""
        ...


class DeadLetterSink(Protocol):
    """Where a service parks an event it cannot process (``agents.dead_letters.DeadLetters``)."""

    async def send(
        self, event: InboundEvent, reason: str, error: BaseException | None = None
    ) -> None: ...

    async def guard(self, event: InboundEvent, handle: Handler) -> None:
        """Run ``handle(event)``; what it raises parks the event (or retries it)."""
        ...


class RecordSink(Protocol):
    """A topic that takes raw records (the dead-letter topic); ``send`` returns the delivery."""

    async def send(
        self, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Awaitable[Any]: ...


class CommandSender(Protocol):
    """The command topic as ``POST /orders`` uses it: the delivery future comes back."""

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[Any]: ...


class BodyStream(Protocol):
    """A request body as it arrives: ``read(n)`` returns at most what has arrived (aiohttp's)."""

    async def read(self, n: int, /) -> bytes: ...


class HttpRequest(Protocol):
    """What ``OrderApi`` reads of an HTTP request (aiohttp's ``web.Request``, or a test's);
    ``request["raw_body"]`` keeps the body read, for the forward and its signature.

    Only read, never set; the views hand aiohttp's request in untyped (Faust's ``View`` methods
    are), so plain attributes serve, and properties only where a read-only view is wider
    (aiohttp's multidict proxies, a test's dict).
    """

    method: str
    path: str
    content: BodyStream
    content_length: int | None
    remote: str | None

    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def query(self) -> Mapping[str, str]: ...
    def __getitem__(self, key: str, /) -> Any: ...
    def __setitem__(self, key: str, value: Any, /) -> None: ...
    def get(self, key: str, default: Any, /) -> Any: ...


class OwnerRouting(Protocol):
    """Which worker owns an order's partition, and forwarding to it (``web.routing``)."""

    def owner(self, order_id: str) -> Owner: ...
    def owns(self, order_id: str) -> bool: ...
    def is_ready(self) -> bool: ...
    async def wait_ready(self, timeout: float) -> bool: ...
    def is_suspect(self, owner: Owner) -> bool: ...
    async def forward(
        self, owner: Owner, request: HttpRequest, how: Forwarding
    ) -> tuple[int, bytes, str, dict[str, str]]: ...
