"""Faust glue: every use of a Faust internal outside the deep modules below, named once.

faust-streaming is pinned exactly (setup.cfg) because of what this module (and the modules listed
at the end) rely on; it is the list an upgrade reads. Each function names the internal it uses
and why; ``tests/unit/test_faust_glue.py`` checks that each one still exists and behaves as we
rely on, without a broker, so an upgrade that changes one fails there first.

Used here:

- ``faust.streams._current_event`` (private ContextVar): ``bind_event``.
- ``Stream.add_processor`` / ``_processors`` / ``_enable_passive`` / ``enable_acks`` / ``ack``
  (what Faust's own ``take_events`` uses): ``take_batches``.
- ``Consumer.assignment()`` through ``app.consumer``: ``assigned``.
- ``App._consumer`` (the ``app.consumer`` property would create a consumer): ``live_consumer``.
- ``Consumer._committed_offset`` (the next offset to handle, None when nothing is committed):
  ``committed_offset``, ``committed_offsets``, ``ConsumerLag``.
- ``App.router.key_store(table, key)`` (raises before the first assignment): ``owner_url``.
- ``App.assignor.assigned_actives()``: ``assigned_actives``.
- ``Service._children`` (mode; the dependencies added so far): ``add_dependency_once``.
- ``App._on_partitions_revoked`` / ``App._new_consumer`` (overridden): ``FencedApp``.
- ``Topic._get_producer`` and ``Producer.create_topic``'s arguments: ``RetainedTopic.declare``.
- mode's signal receiver signature ``(sender, *args, signal, **kwargs)``: ``connect``,
  ``connect_sync``.

Deep modules with Faust internals of their own (they subclass Faust classes; an upgrade reads them
too, and their tests cover them):

- ``orderflow.consumer``: ``AIOKafkaConsumerThread._commit``, ``Consumer._new_consumer_thread``,
  ``_getmany``, ``perform_seek``, ``_new_offset``, ``_add_gap``, ``_acked``, ``_gap``,
  ``_unacked_messages``, ``_committed_offset``, ``_active_partitions``, ``_buffered_partitions``,
  ``app.topics.acking_topics``, ``app.consumer_generation_id``; and aiokafka's
  ``AIOKafkaConsumerThread._consumer._fetcher._records`` (records fetched, not handed over).
- ``orderflow.delivery``: ``Table.send_changelog`` (overridden), ``Table.data``,
  ``faust.streams.current_event``.
- ``orderflow.tables.base``: ``app.tables.add`` / ``app.tables.beacon`` (a table of our class).
- ``orderflow.tables.recovery_check``: ``app.tables.recovery`` (``tp_to_table``,
  ``active_offsets``, ``signal_recovery_start``), ``Table.persisted_offset``.
- ``orderflow.tables.scan``: the stores' ``_dbs``, ``_visible_items``, ``_key_partition``.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import faust
from faust.streams import _current_event
from faust.types import TP

from orderflow.config import Settings
from orderflow.consumer import RewindingConsumer
from orderflow.topics import DEAD_LETTERS, TOKEN_TOPICS

if TYPE_CHECKING:  # orderflow.fencing imports orderflow.delivery, which imports this module
    from orderflow.fencing import Fence

__all__ = [
    "ConsumerLag",
    "FencedApp",
    "RetainedTopic",
    "add_dependency_once",
    "assigned",
    "assigned_actives",
    "bind_event",
    "committed_offset",
    "committed_offsets",
    "connect",
    "connect_sync",
    "defer_offset",
    "live_consumer",
    "owner_url",
    "raw_topic",
    "take_batches",
    "topic_retention_ms",
]


def bind_event(event: Any) -> None:
    """Make ``event`` the current event of this asyncio task.

    Faust writes a table entry to the changelog partition (and RocksDB partition) of the *current*
    event, a task-local context variable set while a stream iterates. Events of a
    ``take_events`` batch are buffered by another task, so the agent's task has no current event
    (a table write would raise), and a batch mixes partitions anyway. Each task of the batch's
    ``asyncio.gather`` binds the event it handles, so its writes land on that event's partition.
    Faust has no public setter: its streams set ``_current_event`` themselves.
    """
    _current_event.set(weakref.ref(event))


async def take_batches(
    stream: Any, max_events: int, linger: float = 0.0
) -> AsyncIterator[list[Any]]:
    """The stream's events in batches of up to ``max_events``: Faust's ``take_events`` without
    its clock.

    ``take_events(n, within=t)`` wakes every ``t`` seconds whether or not an event came (at the
    2 ms we used, 500 wake-ups a second: a tenth of a core for an idle worker) and holds an event
    until the tick. Here the first event of a batch is waited for without a timeout, the batch
    lingers ``linger`` seconds for more (0: none), and events that arrive while a batch is
    handled gather for the next one, so batches grow with the load by themselves.

    A batch's events are acked once the loop asks for the next batch, never when its handling
    raised or was cancelled (Faust's acks them then too): an event not handled is not committed,
    and is read again (``RewindingConsumer``).
    """
    if max_events < 1:
        raise ValueError(f"max_events must be at least 1, not {max_events}")
    pending: list[Any] = []
    arrived = asyncio.Event()  # pending went from empty to not
    full = asyncio.Event()  # pending holds max_events
    room = asyncio.Event()  # pending is below max_events
    room.set()

    async def gather(value: Any) -> Any:  # a stream processor: runs in the stream's drainer task
        try:
            while len(pending) >= max_events and not stream.should_stop:
                await stream.wait(room)  # bounded: the drainer waits, Kafka's flow control follows
            event = stream.current_event
            if event is None:
                raise RuntimeError("a stream processor ran without a current event")
            pending.append(event)
            arrived.set()
            if len(pending) >= max_events:
                room.clear()
                full.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # as Faust's take_events: a broken buffer stops the agent
            stream.log.exception("Error adding to the batch: %r", exc)
            await stream.crash(exc)
        return value

    acks_enabled = stream.enable_acks
    stream.enable_acks = False  # acked here, after the batch was handled
    stream.add_processor(gather)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            if not pending:
                arrived.clear()
                if await stream.wait_for_stopped(arrived):
                    break
            if linger > 0 and not full.is_set():
                # (mode answers "stopped" after a timeout too: should_stop tells them apart)
                await stream.wait_for_stopped(full, timeout=linger)
                if stream.should_stop:
                    break
            batch = pending[:]
            pending.clear()
            full.clear()
            room.set()
            yield batch
            for event in batch:
                await stream.ack(event)
    finally:
        stream.enable_acks = acks_enabled
        stream._processors.remove(gather)


def assigned(app: Any) -> set[Any]:
    """The partitions (``TP``) the worker's consumer holds right now.

    Read once per batch: events buffered before a rebalance took their partition away belong
    to the new owner.
    """
    return set(app.consumer.assignment())


def live_consumer(app: Any) -> Any:
    """The app's consumer if one exists, else None (``app.consumer`` would create one)."""
    return getattr(app, "_consumer", None)


def defer_offset(app: Any, message: Any) -> Callable[[], None]:
    """Commit nothing past ``message`` until the returned release is called (its handler runs
    again later: ``RewindingConsumer.defer``)."""
    consumer = live_consumer(app)
    if not isinstance(consumer, RewindingConsumer):  # (no consumer: nothing is committed)
        return lambda: None
    return consumer.defer(TP(message.topic, message.partition), message.offset)


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The next offset to handle as Faust's consumer last read or committed it (None: nothing
    committed yet; Faust also turns 0 into None). No broker round trip, unlike ``committed``."""
    offset: int | None = consumer._committed_offset.get(tp)
    return offset


def committed_offsets(app: Any, topic: str) -> Callable[[int], int | None]:
    """The committed-offset reader of ``CommandProgress``, from the worker's Faust consumer."""

    def committed(partition: int) -> int | None:
        consumer = app.consumer
        tp = TP(topic, partition)
        offset = committed_offset(consumer, tp)
        started = getattr(consumer, "reading_from", {}).get(tp)  # nothing existed before it
        if offset is None and started is None:
            return None
        return max(offset or 0, started or 0)

    return committed


class ConsumerLag:
    """Records not handled yet per assigned partition, from what Faust's consumer already
    knows: the highwater of its last fetch and its committed offset (no broker round trip)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self) -> dict[tuple[str, int], int]:
        consumer = live_consumer(self.app)
        if consumer is None:
            return {}
        lags: dict[tuple[str, int], int] = {}
        try:
            held = consumer.assignment()
        except Exception:  # not subscribed yet, or stopping
            return lags
        for tp in held:
            committed = committed_offset(consumer, tp)
            if committed is None:  # nothing committed yet: where reading started (consumer.py)
                committed = getattr(consumer, "reading_from", {}).get(tp)
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # the partition just moved away
                continue
            # Changelogs (tables) have neither: table recovery is not consumer lag.
            if committed is not None and highwater is not None:
                lags[(tp.topic, tp.partition)] = max(0, highwater - committed)
        return lags


def owner_url(app: Any, table_name: str, key: bytes) -> str:
    """The canonical URL of the worker that owns ``key``'s partition of ``table_name``.

    Faust's router answers from the assignor's view of the group; it raises (KeyError and
    friends) before the first assignment. ``table_route`` would forward only a GET's headers.
    """
    return str(app.router.key_store(table_name, key))


def assigned_actives(app: Any, topic: str) -> set[int]:
    """The partitions of ``topic`` (a table's changelog) actively assigned to this worker."""
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}


def add_dependency_once(app: Any, kind: type, make: Callable[[], Any]) -> None:
    """Add ``make()`` as a dependency of the app unless one of type ``kind`` is there already.

    ``on_worker_init`` is sent for every CLI command (twice): a service must be added once.
    mode keeps the dependencies in ``_children`` and has no public lookup.
    """
    if not any(isinstance(child, kind) for child in app._children):
        app.add_dependency(make())


def connect(signal: Any, handler: Callable[[], Awaitable[None]]) -> None:
    """Connect a coroutine taking no arguments to an app signal (``app.on_partitions_...``).

    mode calls receivers with ``(sender, *args, signal=..., **kwargs)``; ours read nothing of it.
    mode keeps a receiver strongly (``weak=False`` is its default): a local function may do.
    """

    async def receive(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await handler()

    signal.connect(receive)


def connect_sync(signal: Any, handler: Callable[[], None]) -> None:
    """``connect`` for a synchronous signal (``app.on_worker_init``)."""

    def receive(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        handler()

    signal.connect(receive)


class FencedApp(faust.App):
    """Faust's app, whose fence learns of a revocation before Faust acts on it, and whose
    consumer is ``RewindingConsumer``."""

    fence: Fence | None = None
    token_retention_s: float = Settings.token_retention_s  # see RetainedTopic
    dead_letter_retention_s: float = Settings.dead_letter_retention_s

    def __init__(
        self,
        id: str,
        *,
        fence: Fence | None = None,
        token_retention_s: float = Settings.token_retention_s,
        dead_letter_retention_s: float = Settings.dead_letter_retention_s,
        **options: Any,
    ) -> None:
        self.fence = fence
        self.token_retention_s = token_retention_s
        self.dead_letter_retention_s = dead_letter_retention_s
        super().__init__(id, **options)

    async def _on_partitions_revoked(self, revoked: set[Any]) -> None:
        # Faust revokes the tables and flushes the producer before it sends the
        # on_partitions_revoked signal: in-flight work must stop writing before all of that.
        if self.fence is not None and not self.should_stop:
            self.fence.revoked()
        await super()._on_partitions_revoked(revoked)

    def _new_consumer(self) -> Any:
        # Faust's own consumer (``Transport.create_consumer``) with the rewind of partitions
        # that have no committed offset after a rebalance (see ``orderflow.consumer``).
        return RewindingConsumer(
            self.transport,
            callback=self.topics.on_message,
            loop=self.transport.loop,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
        )


class RetainedTopic(faust.Topic):
    """A topic whose names that carry payment tokens are created with ``retention.ms`` set.

    One Faust topic may stand for several names (an agent's sources) with one config; the
    retention is per name, so ``declare`` adds it per name. Only at creation: a topic that
    exists already (pre-created by a cluster's operators) keeps its own settings.
    """

    async def declare(self) -> None:
        conf = self.app.conf
        if not conf.topic_allow_declare:
            return
        producer = await self._get_producer()
        for topic in self.topics:
            config = dict(self.config or {})
            retention_ms = topic_retention_ms(self.app, topic)
            if retention_ms is not None:
                config["retention.ms"] = retention_ms
            await producer.create_topic(
                topic=topic,
                partitions=self.partitions or conf.topic_partitions,
                replication=self.replicas or conf.topic_replication_factor or 1,
                config=config,
                compacting=self.compacting,
                deleting=self.deleting,
                retention=self.retention,
            )


def topic_retention_ms(app: Any, topic: str) -> int | None:
    """The ``retention.ms`` a topic that carries payment tokens is created with, else None."""
    if topic not in TOKEN_TOPICS:
        return None
    # From the app: a clone of a topic (Faust derives some) keeps its app, not attributes.
    if topic == DEAD_LETTERS:
        seconds = getattr(app, "dead_letter_retention_s", Settings.dead_letter_retention_s)
    else:
        seconds = getattr(app, "token_retention_s", Settings.token_retention_s)
    return int(seconds * 1000)


def raw_topic(
    app: Any, settings: Settings, names: Iterable[str], *, compacting: bool = False
) -> RetainedTopic:
    """One Faust topic over ``names``: bytes keys and values, decoded by the handlers
    (``compacting``: created with ``cleanup.policy=compact``)."""
    # internal=True: Faust creates the topic at start-up with our partition count, so topics are
    # never left to the broker's auto-create (disabled on our local broker).
    return RetainedTopic(
        app,
        topics=list(names),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        replicas=settings.replication_factor,
        internal=True,
        compacting=compacting or None,
    )
