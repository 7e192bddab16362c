"""The Faust app and its wiring: ``faust -A orderflow.app worker`` (or ``orderflow worker``).

Processing guarantee: **at_least_once**, with idempotent consumers. Every handler decides from its
table (OrderDB / PaymentDB) whether an event is new, a replay to answer again, or a duplicate, and
the gateway is called with an idempotency key derived from the order id; Faust flushes the
producer (changelogs and outputs) before it commits offsets. So a crash, rebalance or duplicate
re-runs a handler and changes nothing. Where at-least-once can still drop progress (a batch acked
at shutdown, a publish lost with its broker), the order service publishes ``order.created`` again
for any order PENDING too long (``StalledOrders``), and UNKNOWN payments are reconciled. ``exactly_once`` is not used: its transactions cannot cover
the gateway call anyway, sends from web views fail on partitions the worker does not own, and it
has open duplicate/ProducerFenced bugs on rebalance (faust-streaming #177, #517, #323).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust
from mode import Service

from orderflow import tracing
from orderflow.agents.dead_letters import DeadLetters
from orderflow.agents.in_flight import InFlight
from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.payments import PaymentService, UnknownPayments
from orderflow.agents.progress import CommandLog, CommandProgress, committed_offsets
from orderflow.config import ConfigError, Settings, cluster_problems
from orderflow.consumer import RewindingConsumer
from orderflow.delivery import CHANGELOG, UNDELIVERABLE, DeliveringTopic, run_batch, sequentially
from orderflow.domain.payment import ChargeOutcome, GatewayCharge
from orderflow.domain.tokens import fingerprint_key
from orderflow.fencing import Fence
from orderflow.gateway.base import ChargeRequest, PaymentGateway
from orderflow.health import Liveness
from orderflow.keychains import KeyChains
from orderflow.logs import logging_config, order_context
from orderflow.metrics import MeteredGateway, Metrics
from orderflow.publisher import TopicPublisher
from orderflow.tables import OrderTable, PaymentTable
from orderflow.tables.local_state import LocalState, LocalStateGuard
from orderflow.tables.recovery_check import RecoveryCheck
from orderflow.topics import (
    APP_ID,
    DEAD_LETTERS,
    ORDER_COMMANDS,
    ORDER_CREATED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_RECONCILE,
    TOKEN_TOPICS,
    changelog_topic,
)
from orderflow.tracing import TracedTopic
from orderflow.watch import OrderWatch
from orderflow.web.auth import Authenticator
from orderflow.web.openapi import openapi_document
from orderflow.web.orders import LongPolls, OrderApi
from orderflow.web.routing import OwnerLookup
from orderflow.web.views import register_views

__all__ = ["Orderflow", "app", "build", "orderflow"]

log = logging.getLogger(__name__)


class GatewayHolder:
    """The ``PaymentGateway`` of the worker: creates the client once, in the worker's loop, at
    its first use; embeds the sandbox if asked to."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._gateway: PaymentGateway | None = None
        self._sandbox: Any = None
        self._lock = asyncio.Lock()
        self._closed = False
        # Asked before every gateway request (the worker's fence: ``Fence.check``).
        self.before_request: Callable[[], None] | None = None

    async def get(self) -> PaymentGateway:
        if self._gateway is not None:
            return self._gateway
        if self._closed:
            raise RuntimeError("the worker is stopping")
        async with self._lock:
            if self._gateway is None:
                from orderflow.gateway.http import HttpPaymentGateway

                url, api_key = self.settings.gateway_url, self.settings.gateway_api_key
                if self.settings.gateway == "sandbox":
                    # The one import of orderflow.tools in the service (the ignore_imports of
                    # the service-not-tools contract, setup.cfg): lazy, sandbox workers only.
                    from orderflow.tools.sandbox.gateway import SandboxGateway

                    # A key of its own, so the embedded sandbox is called like a real gateway.
                    api_key = secrets.token_urlsafe(24)
                    self._sandbox = SandboxGateway(
                        self.settings.gateway_sandbox_db, api_key=api_key
                    )
                    await self._sandbox.start("127.0.0.1", self.settings.gateway_sandbox_port)
                    url = self._sandbox.url
                    log.info("embedded sandbox gateway at %s", url)
                self._gateway = HttpPaymentGateway(
                    url,
                    api_key=api_key,
                    request_timeout=self.settings.gateway_timeout_s,
                    deadline=self.settings.gateway_deadline_s,
                    before_request=self.before_request,
                )
            return self._gateway

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        return await (await self.get()).charge(request)

    async def find_charge(self, idempotency_key: str) -> GatewayCharge | None:
        return await (await self.get()).find_charge(idempotency_key)

    async def close(self) -> None:
        self._closed = True
        if self._gateway is not None:
            await self._gateway.close()
        if self._sandbox is not None:
            await self._sandbox.stop()


# The topics the worker creates with ORDERFLOW_REPLICATION_FACTOR (the cluster check's view).
_CHECKED_TOPICS = (
    ORDER_COMMANDS,
    ORDER_CREATED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_RECONCILE,
    DEAD_LETTERS,
    changelog_topic(OrderTable.NAME),
    changelog_topic(PaymentTable.NAME),
)


class ClusterCheck(Service):
    """Refuses to run on a cluster that cannot take our writes (issue 9: fail closed).

    Added as the app's first dependency: it starts before Faust's own services, so before any
    agent runs or topic is created; its error stops the worker with the reason (exit code 1).
    """

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.settings = settings
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        from aiokafka.errors import KafkaError

        while True:
            try:
                broker_ids, min_insync, topic_replicas = await self._describe()
                break
            except KafkaError as exc:  # no cluster yet: wait for it, as the worker always did
                log.warning("cluster check: brokers not answering (%r); asking again", exc)
                await self.sleep(2.0)
                if self.should_stop:
                    return
        rf = self.settings.replication_factor
        problems = cluster_problems(rf, broker_ids, min_insync, topic_replicas)
        if problems:
            message = "; ".join(problems)
            log.error("configuration refused: %s", message)
            raise ConfigError(message)
        if rf > len(broker_ids):  # the topics exist (else refused above): a broker is down
            log.warning(
                "cluster check: %d live broker(s), below ORDERFLOW_REPLICATION_FACTOR=%d: "
                "a broker is missing; the topics exist, starting",
                len(broker_ids),
                rf,
            )
        log.info(
            "cluster check: %d broker(s), replication factor %d, min.insync.replicas %s",
            len(broker_ids),
            self.settings.replication_factor,
            sorted(set(min_insync.values())),
        )

    async def _describe(self) -> tuple[list[int], dict[int, int], dict[str, int | None]]:
        """The live brokers' ids, each one's ``min.insync.replicas``, and our topics' replica
        counts (None: the topic does not exist)."""
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin = AIOKafkaAdminClient(bootstrap_servers=_bootstrap_servers(self.settings))
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            broker_ids = [int(b["node_id"]) for b in cluster["brokers"]]
            wanted = {"min.insync.replicas": None}
            resources = [
                ConfigResource(ConfigResourceType.BROKER, str(b), wanted) for b in broker_ids
            ]
            responses = await admin.describe_configs(resources)
            # Every topic: naming ours would let a broker that auto-creates topics create them.
            described = await admin.describe_topics()
        finally:
            await admin.close()
        min_insync: dict[int, int] = {}
        for response in responses:
            for _error, _message, _type, name, config in response.resources:
                for entry in config:
                    if entry[0] == "min.insync.replicas" and entry[1] is not None:
                        min_insync[int(name)] = int(entry[1])
        topic_replicas: dict[str, int | None] = dict.fromkeys(_CHECKED_TOPICS)
        for topic in described:
            partitions = topic.get("partitions") or []
            if topic["topic"] in topic_replicas and topic.get("error_code") == 0 and partitions:
                topic_replicas[topic["topic"]] = min(len(p["replicas"]) for p in partitions)
        return broker_ids, min_insync, topic_replicas


class FencedApp(faust.App):
    """Faust's app, whose fence learns of a revocation before Faust acts on it."""

    fence: Fence | None = None
    token_retention_s: float = Settings.token_retention_s  # see RetainedTopic
    dead_letter_retention_s: float = Settings.dead_letter_retention_s

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


@dataclass
class Orderflow:
    """Everything a worker runs, built once; tests and CLI commands reach the parts here."""

    settings: Settings
    app: Any
    orders: OrderTable
    payments: PaymentTable
    order_service: OrderService
    payment_service: PaymentService
    gateway: GatewayHolder
    topics: dict[str, Any]
    metrics: Metrics | None = None
    api: OrderApi | None = None


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


def _topic(app: Any, settings: Settings, *names: str) -> Any:
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
    )


def _bootstrap_servers(settings: Settings) -> list[str]:
    return [hp.strip() for hp in settings.kafka_bootstrap.split(",") if hp.strip()]


def consumer_lag(app: Any) -> Callable[[], dict[tuple[str, int], int]]:
    """Records not handled yet per assigned partition, from what Faust's consumer already
    knows: the highwater of its last fetch and its committed offset (no broker round trip)."""

    def lag() -> dict[tuple[str, int], int]:
        consumer = getattr(app, "_consumer", None)  # `app.consumer` would create one
        if consumer is None:
            return {}
        lags: dict[tuple[str, int], int] = {}
        try:
            assigned = consumer.assignment()
        except Exception:  # not subscribed yet, or stopping
            return lags
        for tp in assigned:
            committed = consumer._committed_offset.get(tp)  # Faust: the next offset to handle
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

    return lag


_ENDPOINT_PATHS = {
    "health": "/health",
    "ready": "/ready",
    "metrics": "/metrics",
    "openapi": "/openapi.json",
}


def _open_paths(settings: Settings) -> frozenset[str]:
    """The paths served without an API key, as the OpenAPI document must say."""
    if settings.api_auth == "none":
        return frozenset(_ENDPOINT_PATHS.values())
    return frozenset(_ENDPOINT_PATHS[e] for e in settings.open_endpoints if e in _ENDPOINT_PATHS)


class ConfigCheck(Service):
    """Runs a configuration check when the worker starts (before any store or consumer)."""

    def __init__(self, check: Callable[[], None], **kwargs: Any) -> None:
        self.check = check
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self.check()


def build(settings: Settings) -> Orderflow:
    """Create the Faust app with its topics, tables, agents, timers and views."""
    store = "rocksdb://" if settings.store == "rocksdb" else "memory://"
    tracing.setup(settings.tracing)  # "off": imports nothing, every hook below is a no-op
    app = FencedApp(
        APP_ID,
        env={},  # Faust's own unprefixed variables (WEB_PORT, BROKER_URL...) must not win
        broker=[f"kafka://{hp}" for hp in _bootstrap_servers(settings)],
        store=store,
        datadir=str(settings.data_dir),
        autodiscover=False,
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.002,
        producer_request_timeout=settings.producer_timeout_s,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_s,
        # Static membership (KIP-345) when set: aiokafka sends it in JoinGroup (v5) and then
        # sends no LeaveGroup at stop, so a worker back within the session timeout gets its
        # partitions again and the others see no rebalance (tests/e2e/test_static_membership.py).
        consumer_group_instance_id=settings.group_instance_id,
        # How soon the clients learn a partition's new leader after a broker is lost: aiokafka
        # retries a dead leader ("NodeNotReadyError") without asking for new metadata, until the
        # next periodic refresh (5 minutes by default): every POST waited for it. Also, a topic
        # created at start-up can miss the group leader's metadata snapshot ("Ignoring missing
        # topic: payment.failed"): nobody consumes it until the leader's next refresh. Two small
        # requests per second per client.
        consumer_metadata_max_age_ms=500,
        producer_metadata_max_age_ms=500,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 10),
        stream_wait_empty=False,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        canonical_url=settings.canonical_url,
        web_tables_enabled=False,  # it would serve raw table data to anyone
        web_application_options={"middlewares": tracing.server_middlewares()},
        web_graph_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        worker_redirect_stdouts=False,
        # Used by the worker instead of its `-l` level: ORDERFLOW_LOG_LEVEL / _FORMAT (logs.py).
        logging_config=logging_config(settings.log_level, settings.log_format),
    )
    app.token_retention_s = settings.token_retention_s
    app.dead_letter_retention_s = settings.dead_letter_retention_s
    topics = {
        name: _topic(app, settings, name)
        for name in (
            ORDER_COMMANDS,
            ORDER_CREATED,
            PAYMENT_COMPLETED,
            PAYMENT_FAILED,
            PAYMENT_RECONCILE,
            DEAD_LETTERS,
        )
    }
    orders = OrderTable(app, settings.partitions)
    payments = PaymentTable(app, settings.partitions)
    watch = OrderWatch()
    recovery_check = RecoveryCheck(
        app,
        {changelog_topic(OrderTable.NAME), changelog_topic(PaymentTable.NAME)},
        persistent=settings.store == "rocksdb",
    )
    gateway = GatewayHolder(settings)
    metrics = Metrics()
    unknown = UnknownPayments(partitions=settings.partitions)
    in_flight = InFlight()
    # Frozen longer than the broker allows between heartbeats: the partitions are gone.
    heartbeat_s = max(0.5, settings.session_timeout_s / 10)
    fence = Fence(freeze_after=max(1.0, settings.session_timeout_s - heartbeat_s))
    app.fence = fence
    # A dead letter is a decision too ("unknown order" while a table is still recovering):
    # refused like a write while the batch's assignment is not settled, and redone after.
    dead_letters = DeadLetters(topics[DEAD_LETTERS], before_send=fence.check)
    dead_letters.on_sent = metrics.dead_letter
    orders.before_write = payments.before_write = fence.check
    # A stale batch sends no gateway request either (a retry, a lookup): only the attempt in
    # flight at a freeze or revocation can still land, and the new owner looks it up first.
    gateway.before_request = fence.check

    # What the agents send is awaited per batch (run_batch) before its offsets can be committed.
    # Traced: each record carries its trace context (traceparent header) to its consumer.
    traced = TracedTopic if tracing.enabled() else (lambda topic: topic)
    outputs = {name: DeliveringTopic(traced(topic)) for name, topic in topics.items()}

    publisher = TopicPublisher(outputs, before_send=fence.check)

    routing = OwnerLookup(app, OrderTable.NAME, settings.max_long_polls)
    stalled = StalledOrders(settings.stall_after_s, partitions=settings.partitions)
    command_log = CommandLog(_bootstrap_servers(settings), ORDER_COMMANDS)
    progress = CommandProgress(
        settings.partitions, committed_offsets(app, ORDER_COMMANDS), command_log
    )
    auth = Authenticator.from_settings(settings)
    chains = KeyChains(auth.secret, settings.partitions, settings.idempotency_retention_s)
    # The stall nudge's own consumer (and lock): its reads never hold up missing_before's.
    nudge_log = CommandLog(_bootstrap_servers(settings), ORDER_COMMANDS)
    order_service = OrderService(
        orders,
        publisher,
        dead_letters,
        watch,
        stalled,
        progress=progress,
        chains=chains,
        commands=nudge_log,
    )
    order_service.on_created = metrics.order_created
    order_service.on_terminal = metrics.order_terminal

    payment_service = PaymentService(
        payments, MeteredGateway(gateway, metrics), publisher, dead_letters, unknown
    )
    metrics.watch(lambda: len(unknown.due_at), lambda: len(stalled.due_at), consumer_lag(app))

    async def run_payment_event(
        partition: int, handle: Callable[[], Awaitable[None]], key: bytes | None = None
    ) -> bool:
        with order_context(key):  # the key is the order id: its log lines name it
            return await fence.run(partition, handle, key)

    payment_service.run_event = run_payment_event  # a revocation fences the batch's writes

    async def fenced_order_handle(event: Any) -> None:
        # Redone like a payment when refused: the batch is acked at its end, so an event dropped
        # after a freeze that no revocation followed would be lost.
        message = event.message
        with order_context(message.key):
            await fence.run(message.partition, partial(order_service.handle, event), message.key)

    def start_batch(events: Any) -> tuple[list[Any], Callable[[Any], bool]]:
        """Bind the batch to the fence; its live events and its delivery ``keep`` predicate."""
        fence.bind()
        # Events buffered before a rebalance took their partition away belong to the new owner
        # now: handling them here too would make two writers of one order. Read once per batch.
        assigned = app.consumer.assignment()

        def still_assigned(event: Any) -> bool:
            # A failed record is sent again only if the fence agrees (a resumed zombie's
            # consumer still lists partitions that another worker has written since).
            return event.message.tp in assigned and fence.keeps(event.message.partition)

        return [e for e in events if e.message.tp in assigned], still_assigned

    @app.agent(
        _topic(app, settings, ORDER_COMMANDS, PAYMENT_COMPLETED, PAYMENT_FAILED),
        name="order-service",
    )
    async def order_agent(stream: Any) -> None:
        # Batches, handled one event after the other: one delivery wait per batch, not per event.
        async for events in stream.take_events(settings.payment_batch_size, within=0.002):
            await fence.wait_ready()
            live, still_assigned = start_batch(events)
            with in_flight.handling("order-service", live):
                await run_batch(live, sequentially(fenced_order_handle), still_assigned)

    @app.agent(_topic(app, settings, ORDER_CREATED, PAYMENT_RECONCILE), name="payment-service")
    async def payment_agent(stream: Any) -> None:
        # Batches let one partition's gateway calls overlap; acks follow the whole batch.
        async for events in stream.take_events(settings.payment_batch_size, within=0.005):
            await fence.wait_ready()
            live, still_assigned = start_batch(events)
            with in_flight.handling("payment-service", live):
                await run_batch(live, payment_service.handle_batch, still_assigned)

    @app.timer(interval=settings.reconcile_interval_s)
    async def reconcile_unknown_payments() -> None:
        metrics.reconciliations.inc(await payment_service.request_due_reconciliations())

    @app.timer(interval=2.0)
    async def read_undelivered_partitions() -> None:
        consumer = app.consumer
        if not isinstance(consumer, RewindingConsumer):
            return
        if routing.is_ready():  # never during a recovery: Faust holds partitions back then
            await consumer.read_undelivered_again()
        else:
            consumer.forget_undelivered()

    @app.timer(interval=max(0.5, settings.stall_after_s / 5))
    async def nudge_stalled_orders() -> None:
        metrics.stall_nudges.inc(await order_service.nudge_stalled(routing.owns))

    @app.task
    async def start_gateway() -> None:
        described = settings.gateway_description
        log.info("payment gateway: %s", " ".join(described.values()))
        log.info("tracing: %s (ORDERFLOW_TRACING)", settings.tracing)
        await gateway.get()  # fail fast (in the log) and warm the connection pool

    @app.task
    async def start_fence() -> None:
        fence.start()

    declared: list[bool] = []
    freezes_seen = [0]

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode: too narrow a stub
    async def on_partitions_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        routing.mark_moving()  # until this assignment's tables are recovered
        metrics.rebalances.inc()
        # Faust declares the topics it consumes; the dead-letter topic is only written to, and
        # must exist before the first poison message (the broker's auto-create is off).
        if not declared:
            for topic in topics.values():
                await topic.maybe_declare()
            declared.append(True)

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def rescan_after_rebalance(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Sent once the new assignment's tables are recovered, just before streams resume.
        if not await recovery_check.verify():
            return  # recovering again (or rebalanced meanwhile): settle at the next completion
        # The safety nets read only the partitions they did not hold (all of them after a freeze:
        # another worker wrote even the ones we get back), at their next tick, in chunks.
        owned = {
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == changelog_topic(OrderTable.NAME)
        }
        rescan_all = fence.freezes != freezes_seen[0]
        freezes_seen[0] = fence.freezes
        unknown.assigned(owned, rescan_all=rescan_all)
        stalled.assigned(owned, rescan_all=rescan_all)
        fence.settled(owned)
        # How long this worker could not serve its partitions itself (POSTs were accepted
        # durably meanwhile): the rebalance and its table recovery (make chaos reports these).
        unready_s = routing.unready_for()
        metrics.unready_seconds.observe(unready_s)
        log.info("partitions settled: %d of OrderDB, after %.1fs unready", len(owned), unready_s)
        routing.mark_settled()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def stop_serving_moved_keys(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # (the fence learnt of the revocation first: FencedApp)
        routing.mark_moving()
        watch.notify_all()  # waiting GETs re-check that they still own their order

    @app.on_worker_init.connect  # type: ignore[arg-type]
    def refuse_open_api(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Fail closed: a worker with no API keys (and no explicit ORDERFLOW_API_AUTH=none) or no
        # cluster secret does not start. Checked when the app service starts (`worker`), not at
        # import: CLI commands that import the app (trace, replay) need no keys.
        if not any(isinstance(c, ConfigCheck) for c in app._children):
            app.add_dependency(ConfigCheck(auth.check))

    @app.on_worker_init.connect  # type: ignore[arg-type]
    def guard_local_state(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Sent for every CLI command (twice), but the guard acts only when the app service
        # starts, i.e. in `worker`: RocksDB is trusted after a clean stop only (local_state).
        if not any(isinstance(c, ClusterCheck) for c in app._children):
            # First: a worker refused on its cluster leaves its data dir untouched.
            app.add_dependency(ClusterCheck(settings))
        if settings.store == "rocksdb" and not any(
            isinstance(c, LocalStateGuard) for c in app._children
        ):
            state = LocalState(settings.data_dir, app.conf.tabledir)
            app.add_dependency(LocalStateGuard(state, CHANGELOG.unsettled))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_gateway(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Sent before the app's children (LocalStateGuard) stop: no redo may write after its check.
        await fence.shutdown()
        await gateway.close()
        await routing.close()
        await command_log.close()
        await nudge_log.close()

    long_polls = LongPolls(settings.max_long_polls, settings.max_long_polls_per_client)
    api = OrderApi(
        orders,
        traced(topics[ORDER_COMMANDS]),
        watch,
        routing,
        settings.post_wait_s,
        long_polls,
        caught_up=progress.caught_up,
        move_wait_s=settings.move_wait_s,
        store_wait_s=settings.store_wait_s,
        token_hash_key=fingerprint_key(auth.secret),
        body_read_timeout_s=settings.body_read_timeout_s,
        auth=auth,
        chains=chains,
    )

    liveness = Liveness(
        in_flight,
        routing.unready_for,
        lambda: {
            "dead_letters": dead_letters.count,
            "undeliverable_dead_letters": dead_letters.undeliverable,
            "undeliverable_records": UNDELIVERABLE.count,
            "inconsistent_payments": payment_service.inconsistent,
            "table_recoveries_restarted": recovery_check.restarts,
            "input_holes_read_again": getattr(app.consumer, "redelivered", 0),
            "undelivered_partitions_read_again": getattr(app.consumer, "undelivered_read_again", 0),
            "commands_read_ahead_of_a_hole": progress.holes_read,
        },
        settings.stuck_after_s,
        settings.recovery_deadline_s,
    )

    register_views(
        app,
        api,
        routing,
        liveness.check,
        metrics,
        openapi_document(open_paths=_open_paths(settings)),
        settings.gateway_description,
        auth,
    )
    return Orderflow(
        settings,
        app,
        orders,
        payments,
        order_service,
        payment_service,
        gateway,
        topics,
        metrics,
        api,
    )


try:
    _settings = Settings.from_env()
except ConfigError as exc:
    # `faust -A orderflow.app ...` prints this without a traceback and exits 1.
    raise SystemExit(f"orderflow: configuration refused: {exc}") from None
orderflow = build(_settings)
app = orderflow.app
