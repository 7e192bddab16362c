"""Each Faust internal orderflow relies on (orderflow.faust_glue's list) still exists and behaves as
we rely on. A faust-streaming upgrade that changes one fails here, without a broker."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.streams import current_event
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from mode import Service
from yarl import URL

from orderflow import faust_glue
from orderflow.app import Orderflow
from orderflow.consumer import RewindingConsumer
from orderflow.topics import DEAD_LETTERS, ORDER_CHANGELOG, ORDER_COMMANDS, ORDER_TABLE


def test_bind_event_makes_the_event_faust_s_current_event() -> None:
    # faust.streams._current_event: Faust's table writes read it to pick the partition.
    class Event:  # weak-referenceable, like Faust's events
        message = SimpleNamespace(partition=3)

    event = Event()

    def bound() -> Any:
        faust_glue.bind_event(event)
        return current_event()

    assert contextvars.copy_context().run(bound) is event
    assert contextvars.copy_context().run(current_event) is None  # task-local: not leaked


def test_the_app_builds_our_consumer_through_new_consumer_and_keeps_it_in_underscore_consumer(
    flow: Orderflow,
) -> None:
    # App._new_consumer (overridden by FencedApp) and App._consumer (read by live_consumer).
    app = flow.app
    assert faust_glue.live_consumer(app) is None  # asking did not create one
    consumer = app.consumer
    assert isinstance(consumer, RewindingConsumer)
    assert faust_glue.live_consumer(app) is consumer
    assert inspect.signature(faust.App._new_consumer).parameters.keys() == {"self"}


def test_the_revocation_hook_we_override_is_faust_s_own(flow: Orderflow) -> None:
    # FencedApp._on_partitions_revoked must be what Faust's consumer calls on a revocation.
    params = list(inspect.signature(faust.App._on_partitions_revoked).parameters)
    assert params == ["self", "revoked"]
    consumer = flow.app.consumer
    assert consumer._on_partitions_revoked == flow.app._on_partitions_revoked


def test_committed_offsets_read_faust_s_committed_offset_map(flow: Orderflow) -> None:
    # Consumer._committed_offset: tp -> next offset to handle, absent/None when none.
    consumer = flow.app.consumer
    tp = TP(ORDER_COMMANDS, 1)
    assert faust_glue.committed_offset(consumer, tp) is None
    consumer._committed_offset[tp] = 42
    assert faust_glue.committed_offset(consumer, tp) == 42
    assert faust_glue.committed_offsets(flow.app, ORDER_COMMANDS)(1) == 42
    consumer.reading_from[TP(ORDER_COMMANDS, 2)] = 7  # nothing committed: where reading started
    assert faust_glue.committed_offsets(flow.app, ORDER_COMMANDS)(2) == 7
    assert faust_glue.committed_offsets(flow.app, ORDER_COMMANDS)(3) is None


def test_assignment_is_refused_before_the_consumer_starts_and_lag_then_reads_nothing(
    flow: Orderflow,
) -> None:
    # Consumer.assignment(): raises until started; ConsumerLag copes (no consumer, then raising).
    lag = faust_glue.ConsumerLag(flow.app)
    assert lag() == {}
    assert isinstance(flow.app.consumer, RewindingConsumer)  # created, not started
    with pytest.raises(Exception, match="not yet started"):
        faust_glue.assigned(flow.app)
    assert lag() == {}
    assert callable(Consumer.assignment) and callable(Consumer.highwater)


def test_owner_url_asks_the_router_for_the_changelog_partition_of_the_raw_key(
    flow: Orderflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # App.router.key_store(table, key): raises before the first assignment, then answers the
    # assignor's URL for (changelog topic, key bytes as they are: the raw codec).
    app = flow.app
    with pytest.raises(Exception):  # noqa: B017 - Faust raises NotReady/KeyError, both fine
        faust_glue.owner_url(app, ORDER_TABLE, b"o-1")
    asked: list[tuple[str, bytes]] = []

    def key_store(topic: str, key: bytes) -> URL:
        asked.append((topic, key))
        return URL("http://owner:6066")

    monkeypatch.setattr(app.assignor, "key_store", key_store)
    assert faust_glue.owner_url(app, ORDER_TABLE, b"o-1") == "http://owner:6066"
    assert asked == [(ORDER_CHANGELOG, b"o-1")]


def test_assigned_actives_reads_the_assignor(flow: Orderflow) -> None:
    # PartitionAssignor.assigned_actives(): the TPs this worker holds as active.
    assert faust_glue.assigned_actives(flow.app, ORDER_CHANGELOG) == set()
    assert callable(flow.app.assignor.assigned_actives)


def test_add_dependency_once_finds_what_was_added_in_mode_s_children(flow: Orderflow) -> None:
    # Service._children: mode's list of the dependencies added so far.
    class Check(Service):
        pass

    app = flow.app
    made: list[Check] = []

    def make() -> Check:
        made.append(Check())
        return made[-1]

    faust_glue.add_dependency_once(app, Check, make)
    faust_glue.add_dependency_once(app, Check, make)
    assert len(made) == 1 and made[0] in app._children


def test_connected_handlers_receive_faust_s_signals(flow: Orderflow) -> None:
    # mode signals call receivers with (sender, *args, signal=..., **kwargs).
    app = flow.app
    called: list[str] = []

    async def revoked() -> None:
        called.append("revoked")

    faust_glue.connect(app.on_partitions_revoked, revoked)
    faust_glue.connect_sync(app.on_worker_init, lambda: called.append("init"))
    asyncio.run(app.on_partitions_revoked.send(set()))
    app.on_worker_init.send()
    assert called == ["revoked", "init"]


def test_retained_topic_declares_each_name_with_its_retention_through_faust_s_producer(
    flow: Orderflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Topic._get_producer and Producer.create_topic(topic, partitions, replication, config, ...).
    created: list[dict[str, Any]] = []

    class Producer:
        async def create_topic(self, **kwargs: Any) -> None:
            created.append(kwargs)

    topic = faust_glue.raw_topic(flow.app, flow.settings, [ORDER_COMMANDS, DEAD_LETTERS])

    async def get_producer() -> Producer:
        return Producer()

    assert inspect.iscoroutinefunction(faust.Topic._get_producer)
    monkeypatch.setattr(topic, "_get_producer", get_producer)
    asyncio.run(topic.declare())
    assert [c["topic"] for c in created] == [ORDER_COMMANDS, DEAD_LETTERS]
    assert created[0]["config"]["retention.ms"] == int(flow.settings.token_retention_s * 1000)
    assert created[1]["config"]["retention.ms"] == int(flow.settings.dead_letter_retention_s * 1000)
    wanted = {"topic", "partitions", "replication", "config", "compacting", "deleting", "retention"}
    producer_cls = type(flow.app.producer)
    assert wanted <= inspect.signature(producer_cls.create_topic).parameters.keys()


def test_the_internals_of_the_deep_modules_are_still_there(flow: Orderflow) -> None:
    # orderflow.consumer, orderflow.tables.recovery_check, orderflow.tables.scan (their own tests
    # exercise them with a broker; here only that they still exist).
    for name in ("_commit", "assignment"):
        assert callable(getattr(AIOKafkaConsumerThread, name))
    for name in ("_new_consumer_thread", "_getmany", "perform_seek", "_new_offset", "_add_gap"):
        assert callable(getattr(RewindingConsumer, name))
    consumer = flow.app.consumer
    assert isinstance(consumer._acked, dict) and isinstance(consumer._gap, dict)
    assert len(consumer._unacked_messages) == 0
    assert isinstance(flow.app.topics.acking_topics, set)
    assert flow.app.consumer_generation_id == 0  # set at each assignment (perform_seek reads it)
    assert isinstance(consumer._active_partitions, set)  # (RewindingConsumer._queued)
    assert isinstance(consumer._buffered_partitions, set)
    # What aiokafka fetched and has not handed over yet (``RewindingConsumer._queued``).
    from aiokafka.consumer.fetcher import Fetcher

    assert "self._records = collections.OrderedDict()" in inspect.getsource(Fetcher.__init__)
    assert "self._consumer = self._create_consumer" in inspect.getsource(AIOKafkaConsumerThread)
    recovery = flow.app.tables.recovery
    assert isinstance(recovery.tp_to_table, dict) and isinstance(recovery.active_offsets, dict)
    assert isinstance(recovery.signal_recovery_start, asyncio.Event)
    table = flow.orders.table
    assert callable(table.persisted_offset) and callable(table.send_changelog)
    assert isinstance(table.data._key_partition, dict)  # the memory store
    from faust.stores.rocksdb import Store as RocksStore

    assert callable(RocksStore._visible_items)
    assert "self._dbs" in inspect.getsource(RocksStore.__init__)
