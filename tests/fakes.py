"""One set of fakes for the services' ports (``orderflow.ports``), for fast tests without a broker.

Each fake implements the Protocol its real adapter implements, so mypy checks them alike: a
service built from fakes is built exactly as the app builds it from Faust tables and topics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.errors import KafkaTimeoutError
from yarl import URL

from orderflow.agents.progress import CommandRecord
from orderflow.domain.events import OrderCreated, PaymentCompleted, PaymentFailed
from orderflow.domain.order import Order
from orderflow.domain.payment import ChargeOutcome, GatewayCharge, PaymentRecord
from orderflow.domain.refund import GatewayRefund, Refunded, RefundOutcome
from orderflow.gateway.base import ChargeRequest, RefundRequest
from orderflow.ports import (
    BodyStream,
    CommandSender,
    DeadLetterSink,
    Handler,
    InboundEvent,
    OrderStore,
    OutboundEvent,
    OwnerRouting,
    PaymentGateway,
    PaymentStore,
    Publisher,
    RecordSink,
)
from orderflow.tables.scan import order_partition
from orderflow.watch import OrderWatch
from orderflow.web.routing import Forwarding, NotReady, Owner
from orderflow.wire import order_from_bytes, order_to_bytes, payment_from_bytes, payment_to_bytes
from tests.unit.builders import pending_order

__all__ = [
    "LOCAL",
    "FakeCommandTopic",
    "FakeGateway",
    "FakeOrderStore",
    "FakePaymentStore",
    "FakePublisher",
    "FakeRecordTopic",
    "FakeRequest",
    "FakeRouting",
    "Message",
    "PassingDeadLetters",
    "ReadableCommands",
    "event",
    "event_of",
    "no_sleep",
]

PARTITIONS = 8


# -- inbound records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A Kafka record as a handler reads it (``ports.InboundMessage``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Event:
    """What an agent hands a service (``ports.InboundEvent``)."""

    message: Message


def event(
    topic: str, value: bytes | None, key: bytes | None = b"o1", partition: int = 0, offset: int = 0
) -> Event:
    return Event(Message(topic, partition, offset, key, value))


def event_of(record: CommandRecord) -> Event:
    """The event that would carry ``record`` (read from the command topic)."""
    return Event(Message(record.topic, record.partition, record.offset, record.key, record.value))


async def no_sleep(delay: float) -> None:
    """A sleep that returns at once (a retry loop's backoff)."""
    return None


# -- stores ------------------------------------------------------------------------------------


class FakeOrderStore:
    """OrderDB as a dict; rows live on their order id's partition, as the table's do."""

    def __init__(self, partitions: int = PARTITIONS) -> None:
        self.rows: dict[str, Order] = {}
        self.partitions = partitions
        self.placed: dict[str, int] = {}  # order id -> partition, where a test put it by hand
        self.writes = 0
        self.reads = 0  # rows handed out by partition_rows

    def get(self, order_id: str) -> Order | None:
        return self.rows.get(order_id)

    def put(self, order: Order) -> None:
        self.writes += 1
        self.rows[order.order_id] = order

    def place(self, order: Order, partition: int) -> None:
        """Hold ``order`` on ``partition`` (a test's table content, not a service's write)."""
        self.rows[order.order_id] = order
        self.placed[order.order_id] = partition

    def decode(self, raw: bytes) -> Order:
        return order_from_bytes(raw)

    def partition_rows(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        for order_id, order in list(self.rows.items()):
            if self.placed.get(order_id, order_partition(order_id, self.partitions)) == partition:
                self.reads += 1
                yield order_id.encode(), order_to_bytes(order)


class FakePaymentStore:
    """PaymentDB as a dict. ``put_durable`` hands out each changelog delivery (``deliveries``):
    resolved at once, held for the test to resolve (``hold``), or failed (``fail``)."""

    def __init__(self, fail: BaseException | None = None, hold: bool = False) -> None:
        self.rows: dict[str, PaymentRecord] = {}
        self.fail, self.hold = fail, hold
        self.deliveries: list[asyncio.Future[None]] = []

    def get(self, order_id: str) -> PaymentRecord | None:
        return self.rows.get(order_id)

    def put(self, record: PaymentRecord) -> None:
        self.rows[record.order_id] = record

    async def put_durable(self, record: PaymentRecord) -> None:
        self.put(record)
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail is not None:
            delivery.set_exception(self.fail)
        elif not self.hold:
            delivery.set_result(None)
        self.deliveries.append(delivery)
        await delivery

    def decode(self, raw: bytes) -> PaymentRecord:
        return payment_from_bytes(raw)

    def partition_rows(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        return [
            (order_id.encode(), payment_to_bytes(record))
            for order_id, record in self.rows.items()
            if order_partition(order_id, PARTITIONS) == partition
        ]


# -- outbound ----------------------------------------------------------------------------------


class FakePublisher:
    """Keeps what the services publish, in order."""

    def __init__(self) -> None:
        self.events: list[OutboundEvent] = []
        self.reconciliations: list[str] = []

    async def publish(self, event: OutboundEvent) -> None:
        self.events.append(event)

    async def request_reconciliation(self, order_id: str) -> None:
        self.reconciliations.append(order_id)

    def kinds(self) -> list[str]:
        """The event types published (``payment.completed``...), in order."""
        return [e.event_type for e in self.events]

    def created(self) -> list[OrderCreated]:
        return [e for e in self.events if isinstance(e, OrderCreated)]

    def outcomes(self) -> list[PaymentCompleted | PaymentFailed]:
        return [e for e in self.events if isinstance(e, PaymentCompleted | PaymentFailed)]


@dataclass
class SentRecord:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class FakeRecordTopic:
    """The dead-letter topic; ``refuse`` is raised by the sends, one by one, before they succeed."""

    sent: list[SentRecord] = field(default_factory=list)
    refuse: list[BaseException] = field(default_factory=list)

    async def send(
        self, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        if self.refuse:
            raise self.refuse.pop(0)
        self.sent.append(SentRecord(key, value, headers))
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    def header(self, name: str) -> list[str]:
        """Header ``name`` of each record sent."""
        return [dict(r.headers)[name].decode() for r in self.sent]


class PassingDeadLetters:
    """A dead-letter sink whose guard lets every handler run (and raise); ``sent``: reasons."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(
        self, event: InboundEvent, reason: str, error: BaseException | None = None
    ) -> None:
        self.sent.append(reason)

    async def guard(self, event: InboundEvent, handle: Handler) -> None:
        await handle(event)


# -- the gateway -------------------------------------------------------------------------------


class FakeGateway:
    """Answers ``charge`` and ``find_charge`` from scripted outcomes, or raises scripted errors."""

    def __init__(
        self,
        charge: ChargeOutcome | BaseException,
        found: GatewayCharge | BaseException | None = None,
    ) -> None:
        self.charge_answer = charge
        self.found = found
        self.requests: list[ChargeRequest] = []
        self.lookups: list[str] = []
        self.closed = False
        # Set: each charge waits for it (a slow gateway); ``in_flight`` charges wait meanwhile.
        self.gate: asyncio.Event | None = None
        self.in_flight: list[str] = []  # order ids of the charges under way
        self.most_in_flight = 0
        self.finished: list[str] = []  # order ids, in the order their charges returned
        self.refund_answer: RefundOutcome | BaseException = Refunded("re_1")
        self.found_refund: GatewayRefund | BaseException | None = None
        self.refunds: list[RefundRequest] = []
        self.refund_lookups: list[str] = []

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        self.requests.append(request)
        self.in_flight.append(request.order_id)
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.in_flight.remove(request.order_id)
        self.finished.append(request.order_id)
        if isinstance(self.charge_answer, BaseException):
            raise self.charge_answer
        return self.charge_answer

    async def find_charge(self, idempotency_key: str) -> GatewayCharge | None:
        self.lookups.append(idempotency_key)
        if isinstance(self.found, BaseException):
            raise self.found
        return self.found

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        self.refunds.append(request)
        if isinstance(self.refund_answer, BaseException):
            raise self.refund_answer
        return self.refund_answer

    async def find_refund(self, idempotency_key: str) -> GatewayRefund | None:
        self.refund_lookups.append(idempotency_key)
        if isinstance(self.found_refund, BaseException):
            raise self.found_refund
        return self.found_refund

    async def close(self) -> None:
        self.closed = True


# -- the HTTP side -----------------------------------------------------------------------------


class _Content:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def read(self, limit: int) -> bytes:
        head, self.raw = self.raw[:limit], self.raw[limit:]
        return head


class FakeRequest(dict[str, Any]):
    """The parts of an aiohttp request that ``OrderApi`` reads (a JSON body when ``body``)."""

    def __init__(
        self,
        body: Any = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        raw = orjson.dumps(body) if body is not None else b""
        self.content: BodyStream = _Content(raw)
        self.content_length: int | None = len(raw)
        self.headers = headers or {}
        if body is not None:  # what every client sends with a JSON body
            self.headers.setdefault("Content-Type", "application/json")
        self.query = query or {}
        self.method, self.path = "POST", "/orders"
        self.raw_path = self.path
        self.remote: str | None = None


LOCAL = Owner(is_local=True, url=URL("http://127.0.0.1:1"))


class FakeRouting:
    """This worker owns every order at ``home`` (LOCAL by default) until ``moved``; ``suspect``:
    the owner did not answer a moment ago. Nothing is forwarded (``forwarded`` counts asks)."""

    def __init__(self, home: Owner = LOCAL, suspect: bool = False, moved: bool = False) -> None:
        self.home = home
        self.suspect = suspect
        self.moved = moved
        self.forwarded = 0

    def owner(self, order_id: str) -> Owner:
        if self.moved:
            raise NotReady("rebalancing")
        return self.home

    def owns(self, order_id: str) -> bool:
        return not self.moved and self.home.is_local

    def is_ready(self) -> bool:
        return not self.moved

    async def wait_ready(self, timeout: float) -> bool:
        for _ in range(int(timeout / 0.005)):  # polled: the tests flip ``moved`` by hand
            if not self.moved:
                break
            await asyncio.sleep(0.005)
        return not self.moved

    def is_suspect(self, owner: Owner) -> bool:
        return self.suspect

    async def forward(
        self, owner: Owner, request: Any, how: Forwarding
    ) -> tuple[int, bytes, str, dict[str, str]]:
        self.forwarded += 1
        raise NotReady(f"the owner at {owner.url} is not there in unit tests")


class FakeCommandTopic:
    """The command topic of ``POST /orders``; ``outcome`` says what the broker does with a send,
    and, when it is ``stored``, the order service (``orders``, ``watch``) stores it a moment later.
    """

    def __init__(
        self,
        orders: FakeOrderStore | None = None,
        watch: OrderWatch | None = None,
        outcome: str = "stored",
    ) -> None:
        self.orders = orders or FakeOrderStore()
        self.watch = watch or OrderWatch()
        self.outcome = outcome
        self.sent: list[bytes] = []

    async def send(self, *, key: bytes, value: bytes) -> asyncio.Future[Any]:
        if self.outcome == "send_hangs":  # no metadata: the send itself never returns
            await asyncio.Event().wait()
        self.sent.append(value)
        loop = asyncio.get_running_loop()
        delivery: asyncio.Future[Any] = loop.create_future()
        if self.outcome == "fails":
            delivery.set_exception(KafkaTimeoutError())
        elif self.outcome == "slow_ack":  # acknowledged after 0.2 s, stored 0.05 s later
            loop.call_later(0.2, delivery.set_result, None)
            loop.call_later(0.25, self._store, value)
        elif self.outcome in ("delivered", "stored"):
            delivery.set_result(None)
            if self.outcome == "stored":
                loop.call_later(0.01, self._store, value)
        return delivery  # "hangs": never completes

    def _store(self, value: bytes) -> None:
        command = orjson.loads(value)
        order = pending_order(
            order_id=command["order_id"],
            fingerprint=command["fingerprint"],
            request_id=command["request_id"],
            created_at=command["occurred_at"],
        )
        # The first command wins, as in place_order.
        self.orders.rows.setdefault(order.order_id, order)
        self.watch.notify(order.order_id)


class ReadableCommands:
    """A command partition as Kafka holds it (``agents.orders.CommandReader``); ``reads``: the
    ranges read; ``unreadable``: raised by every read (the broker is away); ``expired``: offsets
    whose records a read no longer returns (deleted by retention since the offsets were asked)."""

    def __init__(self, records: list[CommandRecord]) -> None:
        self.records = {r.offset: r for r in records}
        self.reads: list[tuple[int, int, int]] = []
        self.unreadable: BaseException | None = None
        self.expired: set[int] = set()

    async def beginning(self, partition: int) -> int:
        return min(self.records, default=0)

    async def end(self, partition: int) -> int:
        return max(self.records, default=-1) + 1

    async def read(self, partition: int, start: int, stop: int) -> list[CommandRecord]:
        self.reads.append((partition, start, stop))
        if self.unreadable is not None:
            raise self.unreadable
        return [
            self.records[o]
            for o in range(start, stop)
            if o in self.records and o not in self.expired
        ]


def _conforms() -> None:
    """Each fake is what its port says (checked by mypy, never run)."""
    _o: OrderStore = FakeOrderStore()
    _p: PaymentStore = FakePaymentStore()
    _pub: Publisher = FakePublisher()
    _d: DeadLetterSink = PassingDeadLetters()
    _r: RecordSink = FakeRecordTopic()
    _g: PaymentGateway = FakeGateway(BaseException())
    _c: CommandSender = FakeCommandTopic()
    _w: OwnerRouting = FakeRouting()
