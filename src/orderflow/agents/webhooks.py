"""Webhooks: the registered endpoints, the outbox the order service writes, and the POSTs.

- ``EndpointDirectory`` (every worker): the clients' endpoints, read from the compacted topic
  ``orderflow.webhook-endpoints`` into memory and kept up to date.
- ``WebhookOutbox`` (the order service, single writer of WebhookDB): after each event it handles,
  an order whose public view changed gets one event and a PENDING delivery per endpoint of its
  client, in WebhookDB, in the same batch as the OrderDB write (the batch's offsets are
  committed only once both changelog records are in Kafka). A crash before that redelivers the
  event, and the version check makes the missing event then: no change goes untold. It also
  records the outcome of each POST (``orderflow.webhook-attempts``) and a person's resend.
- ``WebhookDispatcher`` (the worker that owns the order's partition): POSTs the due deliveries,
  signed, and publishes each outcome on ``orderflow.webhook-attempts``; the outbox then decides
  the retry (``domain.webhooks.record_attempt``). A crash mid-POST leaves the delivery PENDING in
  WebhookDB: the new owner sends it again (at least once; receivers de-duplicate by event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import hmac
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiokafka import AIOKafkaConsumer, TopicPartition

from orderflow.domain.errors import EventDecodeError
from orderflow.domain.order import Order
from orderflow.domain.responses import order_to_public, public_version
from orderflow.domain.webhooks import (
    ENDPOINT_DELETED,
    SIGNATURE_HEADER,
    Attempt,
    Delivery,
    DeliveryState,
    Endpoint,
    OrderWebhooks,
    RetryPolicy,
    due_deliveries,
    endpoint_secret,
    endpoint_url_problem,
    is_public_address,
    record_attempt,
    record_change,
    resend,
    sign,
)
from orderflow.ports import InboundMessage
from orderflow.tables.scan import PartitionScan, elsewhere
from orderflow.topics import WEBHOOK_ENDPOINTS
from orderflow.wire.webhooks import (
    WebhookAttempt,
    decode_attempts_record,
    endpoint_from_bytes,
)

__all__ = [
    "EndpointDirectory",
    "HttpWebhookSender",
    "WebhookDispatcher",
    "WebhookOutbox",
    "signing_key",
]

log = logging.getLogger(__name__)


def signing_key(cluster_secret: bytes) -> bytes:
    """The key every endpoint's secret is derived from: the cluster's secret, for this use only
    (the same on every worker; a new cluster secret gives every endpoint a new secret)."""
    return hmac.new(cluster_secret, b"orderflow webhook endpoints v1", hashlib.sha256).digest()


class WebhookStore(Protocol):
    """WebhookDB as the outbox and the dispatcher use it (``tables.WebhookTable``)."""

    def get(self, order_id: str) -> OrderWebhooks | None: ...
    def put(self, value: OrderWebhooks) -> None: ...
    def decode(self, raw: bytes) -> OrderWebhooks: ...
    def partition_rows(self, partition: int) -> Iterable[tuple[bytes, bytes]]: ...


class EndpointDirectory:
    """Every client's endpoints, as the compacted endpoint topic holds them (in memory)."""

    def __init__(self, servers: list[str] | None, topic: str = WEBHOOK_ENDPOINTS) -> None:
        self.servers = servers
        self.topic = topic
        self._by_client: dict[str, dict[str, Endpoint]] = {}
        self._client_of: dict[str, str] = {}
        self._loaded = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        if servers is None:  # nothing to read (tests): empty, and loaded
            self._loaded.set()

    def for_client(self, client_id: str) -> list[Endpoint]:
        return list(self._by_client.get(client_id, {}).values())

    def get(self, endpoint_id: str) -> Endpoint | None:
        client = self._client_of.get(endpoint_id)
        return None if client is None else self._by_client[client].get(endpoint_id)

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def registered(self, endpoint_id: str) -> bool | None:
        """Whether ``endpoint_id`` is registered; None until the topic has been read."""
        return self.get(endpoint_id) is not None if self.loaded else None

    async def wait_loaded(self) -> None:
        await self._loaded.wait()

    def remember(self, endpoint: Endpoint) -> None:
        """An endpoint this worker just wrote (read back from the topic later: the same)."""
        self._client_of[endpoint.endpoint_id] = endpoint.client_id
        self._by_client.setdefault(endpoint.client_id, {})[endpoint.endpoint_id] = endpoint

    def forget(self, endpoint_id: str) -> None:
        client = self._client_of.pop(endpoint_id, None)
        if client is not None:
            endpoints = self._by_client.get(client, {})
            endpoints.pop(endpoint_id, None)
            if not endpoints:
                self._by_client.pop(client, None)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the endpoint topic: an endpoint, or a deletion (a null value)."""
        if key is None:
            return
        if value is None:
            self.forget(key.decode(errors="replace"))
            return
        try:
            endpoint = endpoint_from_bytes(value)
        except EventDecodeError as exc:
            log.error("webhook endpoint record %r does not decode (%s): ignored", key, exc)
            return
        self.forget(endpoint.endpoint_id)  # (a record for another client under the same id)
        self.remember(endpoint)

    async def run(self) -> None:
        """Read the topic from its beginning, then follow it (the worker's task, until stop).

        Without a group, aiokafka assigns every partition of the subscribed topic itself, and
        picks the topic up once the worker has created it (at its first assignment).
        """
        assert self.servers is not None
        consumer = self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=5000,
            metadata_max_age_ms=1000,
        )
        await consumer.start()
        ends: dict[TopicPartition, int] | None = None
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self.apply(record.key, record.value)
                if self.loaded:
                    continue
                assigned = consumer.assignment()
                if assigned and ends is None:
                    ends = await consumer.end_offsets(list(assigned))
                if ends is not None and await _reached(consumer, ends):
                    log.info("webhook endpoints read: %d client(s)", len(self._by_client))
                    self._loaded.set()
        finally:
            self._consumer = None
            await consumer.stop()


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True


@dataclass(eq=False)
class WebhookOutbox:
    """What the order service does for webhooks, as WebhookDB's single writer."""

    table: WebhookStore
    directory: EndpointDirectory
    policy: RetryPolicy
    # Told of each order with something due (``WebhookDispatcher.schedule``).
    on_due: Callable[[str, float], None] = lambda order_id, at: None
    on_gave_up: Callable[[], None] = lambda: None  # a delivery FAILED (the metrics)
    # Told of each outcome read, applied or not (``WebhookDispatcher.recorded``).
    on_recorded: Callable[[tuple[str, str], int], None] = lambda key, number: None
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)

    async def observe(self, order: Order) -> None:
        """Make an event of ``order``'s public view if it is new and its client has endpoints."""
        if not order.client_id:
            return
        if not self.directory.loaded:
            await self.directory.wait_loaded()
        endpoints = self.directory.for_client(order.client_id)
        if not endpoints:
            return
        public = order_to_public(order)
        now = self.clock()
        updated = record_change(
            self.table.get(order.order_id),
            order.order_id,
            public,
            public_version(public),
            endpoints,
            now,
            order.updated_at,
        )
        if updated is not None:
            self.table.put(updated)
            self.on_due(order.order_id, now)

    def handle(self, message: InboundMessage) -> None:
        """One record of ``orderflow.webhook-attempts``: an outcome, or a resend."""
        record = decode_attempts_record(message.value)
        if message.key != record.order_id.encode():
            raise EventDecodeError(f"key {message.key!r} differs from order_id")
        stored = self.table.get(record.order_id)
        if stored is None:
            log.info("webhook record for order %s, which has no webhooks: ignored", record.order_id)
            return
        if isinstance(record, WebhookAttempt):
            self.on_recorded((record.event_id, record.endpoint_id), record.attempt.number)
            updated = record_attempt(
                stored,
                record.event_id,
                record.endpoint_id,
                record.attempt,
                self.policy,
                self.rng.random(),
            )
        else:
            # At the time it was asked for: the same record redelivered changes nothing again.
            updated = resend(stored, record.event_id, record.requested_at)
        if updated is None:
            return
        self.table.put(updated)
        if isinstance(record, WebhookAttempt) and _gave_up(updated, record):
            log.warning(
                "webhook %s to endpoint %s: given up after %d attempts (resend to try again)",
                record.event_id,
                record.endpoint_id,
                record.attempt.number,
            )
            self.on_gave_up()
        due = updated.next_due()
        if due is not None:
            self.on_due(record.order_id, due)


def _gave_up(record: OrderWebhooks, attempt: WebhookAttempt) -> bool:
    delivery = record.delivery(attempt.event_id, attempt.endpoint_id)
    return delivery is not None and delivery.state is DeliveryState.FAILED


@dataclass(frozen=True)
class PostOutcome:
    status: int  # 0: no HTTP answer (``error`` says why)
    error: str
    duration_ms: int


class WebhookSender(Protocol):
    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostOutcome: ...
    async def close(self) -> None: ...


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default, and refuses names that lead only to loopback, private,
    link-local or reserved addresses (a name may be pointed anywhere after its check)."""

    def __init__(self) -> None:
        self._resolver = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        public = [r for r in found if is_public_address(ipaddress.ip_address(r["host"]))]
        if not public:
            raise OSError(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._resolver.close()


class HttpWebhookSender:
    """POSTs with aiohttp: no redirects followed, a whole-request timeout, public addresses only
    unless ``allow_private``."""

    def __init__(self, timeout_s: float, allow_private: bool) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = None if self.allow_private else PublicOnlyResolver()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=resolver, limit=100),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostOutcome:
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        problem = endpoint_url_problem(url, self.allow_private)
        if problem is not None:  # (checked at registration; an IP literal skips the resolver)
            return PostOutcome(0, f"refused: {problem}", 0)
        try:
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                return PostOutcome(response.status, "", took())
        except TimeoutError:
            return PostOutcome(0, "timeout", took())
        except (aiohttp.ClientError, OSError) as exc:
            return PostOutcome(0, _short_error(exc), took())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass
class _Started:
    """A POST the dispatcher started: its attempt number, when, and when its outcome was
    published (None: not yet, or never: the publish failed)."""

    number: int
    at: float
    published_at: float | None = None


@dataclass(eq=False)
class WebhookDispatcher:
    """Sends the due deliveries of the orders this worker owns, a bounded number at a time."""

    table: WebhookStore
    sender: WebhookSender
    # Publishes one outcome on orderflow.webhook-attempts (keyed by order id); awaits the ack.
    publish: Callable[[WebhookAttempt], Awaitable[None]]
    key: bytes  # ``signing_key``
    owns: Callable[[str], bool]
    # Whether an endpoint is still registered (a deleted one's deliveries end FAILED, unsent);
    # None: the endpoints are not read yet (nothing is sent meanwhile).
    registered: Callable[[str], bool | None] = lambda endpoint_id: True
    concurrency: int = 32
    partitions: int | None = None
    # A POST whose outcome was not published within this (the POST hung, or its record was
    # lost) is sent again. One whose outcome is in Kafka waits for the outbox to apply it,
    # however far behind the order service runs (up to ``applied_within``): sending it again
    # meanwhile would only duplicate it, and under load each duplicate's outcome record puts
    # the order service further behind.
    in_flight_for: float = 60.0
    applied_within: float = 3600.0
    on_post: Callable[[int, int], None] = lambda status, duration_ms: None  # (the metrics)
    clock: Callable[[], float] = time.time
    due_at: dict[str, float] = field(default_factory=dict)  # order id -> when it is due
    _heap: list[tuple[float, str]] = field(default_factory=list)  # the same, earliest first
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    scan: PartitionScan = field(default_factory=PartitionScan)
    sent: int = 0
    # Each POST started and not yet seen recorded (by delivery key).
    _in_flight: dict[tuple[str, str], _Started] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _pruned_at: float = 0.0

    def schedule(self, order_id: str, at: float) -> None:
        """``order_id`` has a delivery due at ``at`` (the earliest wins); one due now wakes the
        dispatcher (``run``) at once."""
        known = self.due_at.get(order_id)
        if known is None or at < known:
            self._due(order_id, at)
        if at <= self.clock():
            self._wake.set()

    def _due(self, order_id: str, at: float) -> None:
        self.due_at[order_id] = at
        heapq.heappush(self._heap, (at, order_id))
        if len(self._heap) > 4 * len(self.due_at) + 1024:  # mostly stale entries: rebuild
            self._heap = [(t, o) for o, t in self.due_at.items()]
            heapq.heapify(self._heap)

    def assigned(
        self, owned: set[int], *, rescan_all: bool = False, rescan: Iterable[int] = ()
    ) -> None:
        self.scan.assigned(owned, rescan_all=rescan_all, rescan=rescan)
        for order_id in elsewhere(self.due_at, owned, self.partitions):
            self.due_at.pop(order_id, None)
        # (A POST in flight stays so: its outcome, once in Kafka, is applied by whoever owns
        # the partition, this worker again if it comes back.)

    def _track(self, record: OrderWebhooks) -> None:
        due = record.next_due()
        if due is not None:
            self.schedule(record.order_id, due)

    async def tick(self) -> int:
        """Index newly assigned partitions, then start the POSTs that are due; returns how many
        were started."""
        if self.scan.pending:
            await self.scan.run(self.table.partition_rows, self.table.decode, self._track)
        if self.registered("") is None:
            return 0  # the endpoints are not read yet: which ones were deleted is not known
        now = self.clock()
        if len(self._in_flight) > 10_000 and now - self._pruned_at >= 10.0:
            self._prune(now)  # (many outcomes not applied yet: not at every tick)
        started = 0
        skipped: list[tuple[float, str]] = []  # not ours now: asked again at the next tick
        while self._heap and self._heap[0][0] <= now and len(self._tasks) < self.concurrency:
            at, order_id = heapq.heappop(self._heap)
            if self.due_at.get(order_id) != at:
                continue  # stale: rescheduled since, or forgotten
            if not self.owns(order_id):
                skipped.append((at, order_id))  # moving, or a standby copy
                continue
            record = self.table.get(order_id)
            if record is None or not record.pending:
                del self.due_at[order_id]
                continue
            started += self._start(order_id, record, now)
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        return started

    def _start(self, order_id: str, record: OrderWebhooks, now: float) -> int:
        """Start the POSTs of the order's due deliveries, as many as the concurrency allows."""
        started = 0
        for delivery in due_deliveries(record, now):
            if len(self._tasks) >= self.concurrency:
                self._due(order_id, now)  # the rest as soon as POSTs finish
                return started
            if self._still_in_flight(delivery, now):
                continue
            self._in_flight[delivery.key] = _Started(delivery.attempt_count + 1, now)
            task = asyncio.create_task(self._deliver(order_id, delivery))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
            started += 1
        self._due(order_id, now + 1.0)  # looked at again soon (its outcomes reschedule it)
        return started

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # room for another POST

    async def run(self, interval: float = 0.25) -> None:
        """Start due POSTs whenever there is something due and room for it: at once when a
        delivery is scheduled due or a POST finishes, else every ``interval`` (the worker's
        task, until stop)."""
        while True:
            self._wake.clear()
            try:
                await self.tick()
            except Exception:  # a bug or a table not readable now: logged, tried again
                log.exception("webhook dispatcher: tick failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()

    @property
    def in_flight(self) -> int:
        """POSTs started whose outcome is not in WebhookDB yet."""
        return len(self._in_flight)

    def recorded(self, key: tuple[str, str], number: int) -> None:
        """The outcome of attempt ``number`` of delivery ``key`` is in WebhookDB (or was found
        not to matter): that POST is no longer in flight."""
        started = self._in_flight.get(key)
        if started is not None and number >= started.number:
            del self._in_flight[key]

    def _still_in_flight(self, delivery: Delivery, now: float) -> bool:
        """Whether a POST of ``delivery`` was started and its outcome is not in WebhookDB yet
        (sending it again now would only duplicate it)."""
        started = self._in_flight.get(delivery.key)
        if started is None:
            return False
        if delivery.attempt_count >= started.number or self._expired(started, now):
            del self._in_flight[delivery.key]
            return False
        return True

    def _expired(self, started: _Started, now: float) -> bool:
        if started.published_at is None:
            return now - started.at >= self.in_flight_for
        return now - started.published_at >= self.applied_within

    def _prune(self, now: float) -> None:
        self._pruned_at = now
        for key, started in list(self._in_flight.items()):
            if self._expired(started, now):
                del self._in_flight[key]

    async def _deliver(self, order_id: str, delivery: Delivery) -> None:
        number = delivery.attempt_count + 1
        if not self.registered(delivery.endpoint_id):
            attempt = Attempt(number, self.clock(), 0, ENDPOINT_DELETED, 0)
            await self._record(order_id, delivery, attempt)
            return
        body = delivery.body.encode()
        sent_at = self.clock()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "orderflow-webhooks/1",
            "Orderflow-Event-Id": delivery.event_id,
            "Orderflow-Delivery-Attempt": str(number),
            SIGNATURE_HEADER: sign(
                endpoint_secret(self.key, delivery.endpoint_id), int(sent_at), body
            ),
        }
        try:
            outcome = await self.sender.post(delivery.url, body, headers)
            self.sent += 1
            self.on_post(outcome.status, outcome.duration_ms)
        except Exception as exc:  # (the sender answers failures; this is a bug: retried later)
            log.exception("webhook %s: POST failed: %r", delivery.event_id, exc)
            return
        attempt = Attempt(number, sent_at, outcome.status, outcome.error, outcome.duration_ms)
        if not attempt.succeeded:
            log.info(
                "webhook %s to endpoint %s, attempt %d: %s",
                delivery.event_id,
                delivery.endpoint_id,
                number,
                outcome.error or f"HTTP {outcome.status}",
            )
        await self._record(order_id, delivery, attempt)

    async def _record(self, order_id: str, delivery: Delivery, attempt: Attempt) -> None:
        """Publish the attempt's outcome for the outbox to apply."""
        try:
            await self.publish(
                WebhookAttempt(
                    order_id=order_id,
                    event_id=delivery.event_id,
                    endpoint_id=delivery.endpoint_id,
                    attempt=attempt,
                )
            )
        except Exception as exc:  # the outcome's record not sent: sent again after in_flight_for
            log.warning("webhook %s: outcome not recorded (%r)", delivery.event_id, exc)
            return
        started = self._in_flight.get(delivery.key)
        if started is not None and started.number == attempt.number:
            started.published_at = self.clock()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sender.close()
