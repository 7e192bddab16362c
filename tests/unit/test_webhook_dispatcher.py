"""The webhook outbox and dispatcher together (``orderflow.agents.webhooks``), over an in-memory
WebhookDB, a fake receiver and a fake clock: the dispatcher's outcomes are fed straight back into
the outbox as records of ``orderflow.webhook-attempts``, as the order service reads them."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from orderflow.agents.webhooks import (
    EndpointDirectory,
    PostOutcome,
    WebhookDispatcher,
    WebhookOutbox,
)
from orderflow.domain.backoff import Backoff
from orderflow.domain.order import Order
from orderflow.domain.webhooks import (
    ENDPOINT_DELETED,
    SIGNATURE_HEADER,
    Delivery,
    DeliveryState,
    Endpoint,
    OrderWebhooks,
    RetryPolicy,
    endpoint_secret,
    verify,
)
from orderflow.topics import WEBHOOK_ATTEMPTS
from orderflow.wire.webhooks import (
    WebhookAttempt,
    encode_attempts_record,
    webhooks_from_bytes,
    webhooks_to_bytes,
)
from tests.fakes import Message
from tests.unit.builders import pending_order
from tests.unit.test_take_batches import until

KEY = b"s" * 32
T0 = 1_714_564_800.0
ENDPOINT = Endpoint("we_1", "client-a", "https://hooks.example.com/a", "2024-05-01T12:00:00.000Z")
IN_FLIGHT_FOR = 60.0
FIRST_RETRY = 10.0


class Clock:
    """The webhook clock, moved by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakeWebhookStore:
    """WebhookDB in a dict, stored as the table stores it (bytes), one partition."""

    def __init__(self) -> None:
        self.rows: dict[bytes, bytes] = {}

    def get(self, order_id: str) -> OrderWebhooks | None:
        raw = self.rows.get(order_id.encode())
        return None if raw is None else self.decode(raw)

    def put(self, value: OrderWebhooks) -> None:
        self.rows[value.order_id.encode()] = webhooks_to_bytes(value)

    def decode(self, raw: bytes) -> OrderWebhooks:
        return webhooks_from_bytes(raw)

    def partition_rows(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        return list(self.rows.items()) if partition == 0 else []


@dataclass(frozen=True)
class Post:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class FakeReceiver:
    """A receiver answering the programmed statuses in turn (then the last one again)."""

    statuses: deque[int] = field(default_factory=lambda: deque([200]))
    posts: list[Post] = field(default_factory=list)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> PostOutcome:
        self.posts.append(Post(url, body, dict(headers)))
        status = self.statuses.popleft() if len(self.statuses) > 1 else self.statuses[0]
        return PostOutcome(status, "", 7)

    async def close(self) -> None:
        return None


@dataclass
class Webhooks:
    """The outbox and the dispatcher wired as the app wires them, and what they talk to."""

    store: FakeWebhookStore
    receiver: FakeReceiver
    clock: Clock
    outbox: WebhookOutbox
    dispatcher: WebhookDispatcher
    ours: set[str]
    recorded: list[WebhookAttempt]
    # Set by a test to hold (or fail) the publication of outcomes.
    before_publish: Callable[[WebhookAttempt], object] | None = None
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    # False: outcomes are published (acknowledged) but wait here until ``apply_published``,
    # as they wait on orderflow.webhook-attempts while the order service runs behind.
    applying: bool = True
    published: list[Message] = field(default_factory=list)

    def apply_published(self) -> None:
        while self.published:
            self.outbox.handle(self.published.pop(0))

    def delivery(self, order_id: str) -> Delivery:
        record = self.store.get(order_id)
        assert record is not None
        (delivery,) = record.deliveries
        return delivery


def webhooks(*statuses: int, endpoints: tuple[Endpoint, ...] = (ENDPOINT,)) -> Webhooks:
    store, receiver, clock = FakeWebhookStore(), FakeReceiver(deque(statuses or (200,))), Clock()
    directory = EndpointDirectory(None)
    for endpoint in endpoints:
        directory.remember(endpoint)
    recorded: list[WebhookAttempt] = []
    ours: set[str] = set()
    holder: list[Webhooks] = []

    async def publish(attempt: WebhookAttempt) -> None:
        hooks = holder[0]
        if hooks.before_publish is not None:
            hooks.before_publish(attempt)
        await hooks.gate.wait()
        recorded.append(attempt)
        value = encode_attempts_record(attempt)
        offset = len(recorded)
        hooks.published.append(
            Message(WEBHOOK_ATTEMPTS, 0, offset, attempt.order_id.encode(), value)
        )
        if hooks.applying:
            hooks.apply_published()

    dispatcher = WebhookDispatcher(
        store,
        receiver,
        publish,
        KEY,
        owns=lambda order_id: order_id in ours,
        registered=directory.registered,
        in_flight_for=IN_FLIGHT_FOR,
        clock=clock,
    )
    policy = RetryPolicy(3600.0, Backoff(FIRST_RETRY, 300.0))
    outbox = WebhookOutbox(
        store,
        directory,
        policy,
        on_due=dispatcher.schedule,
        on_recorded=dispatcher.recorded,
        clock=clock,
    )
    hooks = Webhooks(store, receiver, clock, outbox, dispatcher, ours, recorded)
    hooks.gate.set()
    holder.append(hooks)
    return hooks


async def observed(hooks: Webhooks, client_id: str = "client-a") -> Order:
    order = pending_order(order_id="ord-1", client_id=client_id)
    hooks.ours.add(order.order_id)
    await hooks.outbox.observe(order)
    return order


async def test_an_order_of_a_client_with_an_endpoint_is_posted_once_signed() -> None:
    hooks = webhooks(200)
    order = await observed(hooks)
    pending = hooks.delivery(order.order_id)

    assert await hooks.dispatcher.tick() == 1
    await until(lambda: hooks.delivery(order.order_id).state is DeliveryState.DELIVERED)
    assert await hooks.dispatcher.tick() == 0
    hooks.clock.now += 3600
    assert await hooks.dispatcher.tick() == 0

    (post,) = hooks.receiver.posts
    assert post.url == ENDPOINT.url
    assert post.body == pending.body.encode()
    assert post.headers["Orderflow-Event-Id"] == pending.event_id
    assert post.headers["Orderflow-Delivery-Attempt"] == "1"
    secret = endpoint_secret(KEY, ENDPOINT.endpoint_id)
    assert verify(secret, post.headers[SIGNATURE_HEADER], post.body, now=T0)
    assert not verify(secret, post.headers[SIGNATURE_HEADER], post.body + b" ", now=T0)
    assert hooks.delivery(order.order_id).attempt_count == 1


async def test_an_order_of_a_client_without_endpoints_is_not_posted() -> None:
    hooks = webhooks(200)
    order = await observed(hooks, client_id="client-b")

    assert await hooks.dispatcher.tick() == 0
    assert hooks.store.get(order.order_id) is None
    assert hooks.receiver.posts == []


async def test_a_receiver_answering_503_then_200_is_retried_after_the_backoff() -> None:
    hooks = webhooks(503, 200)
    order = await observed(hooks)

    assert await hooks.dispatcher.tick() == 1
    await until(lambda: hooks.delivery(order.order_id).attempt_count == 1)
    failed = hooks.delivery(order.order_id)
    assert failed.state is DeliveryState.PENDING
    assert failed.next_at == T0 + FIRST_RETRY
    hooks.clock.now += FIRST_RETRY - 1
    assert await hooks.dispatcher.tick() == 0  # not due yet

    hooks.clock.now += 1
    assert await hooks.dispatcher.tick() == 1
    await until(lambda: hooks.delivery(order.order_id).state is DeliveryState.DELIVERED)

    assert [p.headers["Orderflow-Delivery-Attempt"] for p in hooks.receiver.posts] == ["1", "2"]
    assert [a.status for a in hooks.delivery(order.order_id).attempts] == [503, 200]
    assert hooks.delivery(order.order_id).attempt_count == 2


async def test_a_tick_while_an_outcome_is_not_yet_recorded_does_not_post_it_again() -> None:
    hooks = webhooks(200)
    hooks.gate.clear()  # outcomes wait to be published
    order = await observed(hooks)

    assert await hooks.dispatcher.tick() == 1
    await until(lambda: len(hooks.receiver.posts) == 1)
    for _ in range(3):
        hooks.clock.now += IN_FLIGHT_FOR / 4
        assert hooks.delivery(order.order_id).state is DeliveryState.PENDING  # due, in WebhookDB
        assert await hooks.dispatcher.tick() == 0

    hooks.gate.set()
    await until(lambda: hooks.delivery(order.order_id).state is DeliveryState.DELIVERED)
    hooks.clock.now += IN_FLIGHT_FOR
    assert await hooks.dispatcher.tick() == 0
    assert len(hooks.receiver.posts) == 1


async def test_a_delivery_whose_outcome_was_lost_is_sent_again_only_after_in_flight_for() -> None:
    hooks = webhooks(200)
    lost: list[WebhookAttempt] = []

    def lose_the_first(attempt: WebhookAttempt) -> None:
        if not lost:
            lost.append(attempt)
            raise ConnectionError("the attempts topic did not acknowledge")

    hooks.before_publish = lose_the_first
    order = await observed(hooks)

    assert await hooks.dispatcher.tick() == 1
    await until(lambda: bool(lost))
    hooks.clock.now = T0 + IN_FLIGHT_FOR - 1
    assert await hooks.dispatcher.tick() == 0
    assert len(hooks.receiver.posts) == 1
    assert hooks.delivery(order.order_id).attempt_count == 0  # nothing recorded

    hooks.clock.now = T0 + IN_FLIGHT_FOR
    assert await hooks.dispatcher.tick() == 1
    await until(lambda: hooks.delivery(order.order_id).state is DeliveryState.DELIVERED)

    assert len(hooks.receiver.posts) == 2
    assert [p.headers["Orderflow-Event-Id"] for p in hooks.receiver.posts] == [lost[0].event_id] * 2
    assert hooks.delivery(order.order_id).attempt_count == 1


async def test_an_outcome_published_but_not_yet_applied_is_not_sent_again_however_late() -> None:
    hooks = webhooks(200)
    hooks.applying = False  # the order service runs far behind orderflow.webhook-attempts
    order = await observed(hooks)

    assert await hooks.dispatcher.tick() == 1
    await until(lambda: len(hooks.recorded) == 1)
    for _ in range(5):
        hooks.clock.now += IN_FLIGHT_FOR
        assert hooks.delivery(order.order_id).state is DeliveryState.PENDING  # due, in WebhookDB
        assert await hooks.dispatcher.tick() == 0
    assert len(hooks.receiver.posts) == 1

    hooks.apply_published()
    assert hooks.delivery(order.order_id).state is DeliveryState.DELIVERED
    assert await hooks.dispatcher.tick() == 0
    assert len(hooks.receiver.posts) == 1


async def test_a_post_whose_outcome_is_applied_is_no_longer_tracked() -> None:
    hooks = webhooks(503, 200)
    hooks.applying = False
    order = await observed(hooks)
    assert await hooks.dispatcher.tick() == 1
    await until(lambda: len(hooks.recorded) == 1)
    assert hooks.dispatcher.in_flight == 1

    hooks.apply_published()  # refused: due again after the backoff, no longer in flight
    assert hooks.dispatcher.in_flight == 0
    hooks.clock.now += FIRST_RETRY * 2
    assert await hooks.dispatcher.tick() == 1
    await until(lambda: len(hooks.recorded) == 2)
    hooks.apply_published()

    assert hooks.delivery(order.order_id).state is DeliveryState.DELIVERED
    assert hooks.dispatcher.in_flight == 0  # nothing kept of a delivered delivery


async def test_a_published_outcome_holds_its_delivery_while_the_partition_moves_and_returns() -> (
    None
):
    hooks = webhooks(200)
    hooks.applying = False
    hooks.dispatcher.partitions = 1
    order = await observed(hooks)
    assert await hooks.dispatcher.tick() == 1
    await until(lambda: len(hooks.recorded) == 1)

    hooks.dispatcher.assigned(set())  # the partition moves away ...
    hooks.dispatcher.assigned({0})  # ... and back before its outcome reached WebhookDB
    hooks.clock.now += 2 * IN_FLIGHT_FOR
    assert await hooks.dispatcher.tick() == 0  # found due again by the scan, but in flight
    assert len(hooks.receiver.posts) == 1

    hooks.apply_published()  # the outcome, read from the topic by the owner
    assert hooks.delivery(order.order_id).state is DeliveryState.DELIVERED


async def test_tick_skips_orders_it_does_not_own() -> None:
    hooks = webhooks(200)
    order = await observed(hooks)
    hooks.ours.clear()  # its partition moved away (or this is a standby copy)

    assert await hooks.dispatcher.tick() == 0
    assert hooks.receiver.posts == []
    assert hooks.delivery(order.order_id).state is DeliveryState.PENDING

    hooks.ours.add(order.order_id)  # back: it was skipped, not forgotten
    assert await hooks.dispatcher.tick() == 1
    await until(lambda: len(hooks.receiver.posts) == 1)


async def test_a_newly_assigned_partition_is_scanned_for_due_deliveries() -> None:
    first = webhooks(200)
    order = await observed(first)
    # Another worker takes over the partition: it learns of the delivery from WebhookDB alone.
    second = webhooks(200)
    second.store.rows = dict(first.store.rows)
    second.ours.add(order.order_id)
    second.dispatcher.assigned({0})

    assert await second.dispatcher.tick() == 1
    await until(lambda: second.delivery(order.order_id).state is DeliveryState.DELIVERED)
    assert first.receiver.posts == []
    assert len(second.receiver.posts) == 1


async def test_a_kept_partition_another_worker_wrote_meanwhile_is_read_again() -> None:
    hooks = webhooks(200)
    hooks.dispatcher.assigned({0})
    assert await hooks.dispatcher.tick() == 0  # scanned: nothing yet
    # Another worker held the partition for a while (this one missed a generation) and made
    # an event: in WebhookDB, but this worker's dispatcher was never told.
    other = webhooks(200)
    other.store.rows = hooks.store.rows
    await observed(other)
    hooks.ours.add("ord-1")

    hooks.dispatcher.assigned({0})  # an assignment that looks kept ...
    assert await hooks.dispatcher.tick() == 0
    hooks.dispatcher.assigned({0}, rescan={0})  # ... but was not held throughout
    assert await hooks.dispatcher.tick() == 1
    await until(lambda: hooks.delivery("ord-1").state is DeliveryState.DELIVERED)
    assert len(hooks.receiver.posts) == 1


async def test_a_delivery_to_a_deleted_endpoint_ends_failed_without_a_post() -> None:
    hooks = webhooks(200)
    order = await observed(hooks)
    hooks.outbox.directory.forget(ENDPOINT.endpoint_id)

    assert await hooks.dispatcher.tick() == 1
    await until(lambda: hooks.delivery(order.order_id).state is DeliveryState.FAILED)

    assert hooks.receiver.posts == []
    assert hooks.delivery(order.order_id).attempts[-1].error == ENDPOINT_DELETED


async def test_nothing_is_sent_before_the_endpoints_are_read() -> None:
    hooks = webhooks(200)
    order = await observed(hooks)
    hooks.dispatcher.registered = lambda endpoint_id: None  # the topic not read yet

    assert await hooks.dispatcher.tick() == 0
    assert hooks.receiver.posts == []
    assert hooks.delivery(order.order_id).state is DeliveryState.PENDING


async def test_a_finished_post_makes_room_for_the_next_at_once_not_at_the_next_interval() -> None:
    # One POST at a time and an interval far longer than the test: only the wake-ups (a delivery
    # scheduled due, a POST finished) can send all three orders' events.
    hooks = webhooks(200)
    hooks.dispatcher.concurrency = 1
    running = asyncio.create_task(hooks.dispatcher.run(interval=3600))
    try:
        for n in range(3):
            order = pending_order(order_id=f"ord-{n}", client_id="client-a")
            hooks.ours.add(order.order_id)
            await hooks.outbox.observe(order)
        await until(lambda: len(hooks.receiver.posts) == 3)
        await until(
            lambda: all(
                hooks.delivery(f"ord-{n}").state is DeliveryState.DELIVERED for n in range(3)
            )
        )
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
