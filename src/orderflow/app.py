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

``build`` assembles a worker from: ``topics.py`` (every topic, who writes and who reads it),
``agents/order_agent.py`` and ``agents/payment_agent.py`` (each agent's subscription and timer,
beside the service it drives), ``lifecycle.py`` (rebalance signals, start-up tasks, stop),
``checks.py`` (start-up checks) and ``faust_glue.py`` (every Faust internal we use). The app is
built on first use of this module's ``app`` (what ``faust -A orderflow.app`` asks for), not at
import.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orderflow import faust_glue, tracing
from orderflow.agents.batches import FencedBatches
from orderflow.agents.dead_letters import DeadLetters
from orderflow.agents.in_flight import InFlight
from orderflow.agents.order_agent import register_order_agent
from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.payment_agent import register_payment_agent
from orderflow.agents.payments import PaymentService, UnknownPayments
from orderflow.agents.progress import CommandLog, CommandProgress, DownstreamOffsets
from orderflow.agents.webhooks import (
    EndpointDirectory,
    HttpWebhookSender,
    WebhookDispatcher,
    WebhookOutbox,
    signing_key,
)
from orderflow.checks import StartupChecks, bootstrap_servers
from orderflow.config import ConfigError, Settings
from orderflow.delivery import UNDELIVERABLE, DeliveringTopic
from orderflow.domain.backoff import Backoff
from orderflow.domain.payment import ChargeOutcome, GatewayCharge
from orderflow.domain.refund import GatewayRefund, RefundOutcome
from orderflow.domain.tokens import fingerprint_key
from orderflow.domain.webhooks import RetryPolicy
from orderflow.faust_glue import ConsumerLag, FencedApp, committed_offsets, raw_topic
from orderflow.fencing import Fence
from orderflow.gateway.base import ChargeRequest, PaymentGateway, RefundRequest
from orderflow.health import Liveness
from orderflow.keychains import KeyChains
from orderflow.lifecycle import Lifecycle
from orderflow.logs import logging_config
from orderflow.metrics import MeteredGateway, Metrics
from orderflow.publisher import TopicPublisher
from orderflow.tables import OrderTable, PaymentTable, WebhookTable
from orderflow.tables.recovery_check import RecoveryCheck
from orderflow.topics import (
    APP_ID,
    COMPACTED_TOPICS,
    DEAD_LETTERS,
    DOWNSTREAM_OF_COMMANDS,
    ORDER_CHANGELOG,
    ORDER_COMMANDS,
    ORDER_TABLE,
    PAYMENT_CHANGELOG,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_CHANGELOG,
    WEBHOOK_ENDPOINTS,
    WORKER_TOPICS,
)
from orderflow.tracing import TracedTopic
from orderflow.watch import OrderWatch
from orderflow.web.auth import Authenticator
from orderflow.web.changes import OrderChanges
from orderflow.web.events import OrderStream
from orderflow.web.openapi import openapi_document
from orderflow.web.orders import LongPolls, OrderApi
from orderflow.web.routing import OwnerLookup
from orderflow.web.views import register_views
from orderflow.web.webhooks import WebhookApi
from orderflow.wire.webhooks import WebhookAttempt, encode_attempts_record

__all__ = ["GatewayHolder", "Orderflow", "app", "build", "orderflow"]

log = logging.getLogger(__name__)


class GatewayHolder:
    """The ``PaymentGateway`` of the worker: creates the client once, in the worker's loop, at
    its first use; embeds the sandbox if asked to."""

    def __init__(
        self, settings: Settings, before_request: Callable[[], None] | None = None
    ) -> None:
        self.settings = settings
        self._gateway: PaymentGateway | None = None
        self._sandbox: Any = None
        self._lock = asyncio.Lock()
        self._closed = False
        # Asked before every gateway request (the worker's fence: ``Fence.check``).
        self.before_request = before_request

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

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        return await (await self.get()).refund(request)

    async def find_refund(self, idempotency_key: str) -> GatewayRefund | None:
        return await (await self.get()).find_refund(idempotency_key)

    async def close(self) -> None:
        self._closed = True
        if self._gateway is not None:
            await self._gateway.close()
        if self._sandbox is not None:
            await self._sandbox.stop()


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


@dataclass
class Parts:
    """What the services, agents, views and signals of one worker share (built by ``build``)."""

    app: Any
    settings: Settings
    fence: Fence
    topics: dict[str, Any]  # name -> Faust topic, for each of WORKER_TOPICS
    outputs: dict[str, DeliveringTopic]  # the same, sends awaited per batch (delivery.run_batch)
    metrics: Metrics
    auth: Authenticator
    watch: OrderWatch
    dead_letters: DeadLetters
    routing: OwnerLookup
    progress: CommandProgress
    chains: KeyChains
    command_logs: tuple[CommandLog, CommandLog]  # progress's, and the stall nudge's own
    unknown: UnknownPayments
    stalled: StalledOrders
    in_flight: InFlight
    recovery_check: RecoveryCheck

    @classmethod
    def create(cls, app: Any, settings: Settings, fence: Fence) -> Parts:
        topics = {
            name: raw_topic(app, settings, [name], compacting=name in COMPACTED_TOPICS)
            for name in WORKER_TOPICS
        }
        # Traced: each record carries its trace context (traceparent header) to its consumer.
        outputs = {name: DeliveringTopic(_traced(topic)) for name, topic in topics.items()}
        metrics = Metrics()
        # A dead letter is a decision too ("unknown order" while a table is still recovering):
        # refused like a write while the batch's assignment is not settled, and redone after.
        dead_letters = DeadLetters(
            topics[DEAD_LETTERS], before_send=fence.check, on_sent=metrics.dead_letter
        )
        auth = Authenticator.from_settings(settings)
        # The stall nudge has its own consumer (and lock): its reads never hold up
        # missing_before's.
        logs = tuple(CommandLog(bootstrap_servers(settings), ORDER_COMMANDS) for _ in range(2))
        progress = CommandProgress(
            settings.partitions, committed_offsets(app, ORDER_COMMANDS), logs[0]
        )
        return cls(
            app,
            settings,
            fence,
            topics,
            outputs,
            metrics,
            auth,
            OrderWatch(),
            dead_letters,
            OwnerLookup(app, ORDER_TABLE, settings.max_long_polls),
            progress,
            KeyChains(auth.secret, settings.partitions, settings.idempotency_retention_s),
            (logs[0], logs[1]),
            UnknownPayments(partitions=settings.partitions),
            StalledOrders(settings.stall_after_s, partitions=settings.partitions),
            InFlight(),
            RecoveryCheck(
                app,
                {ORDER_CHANGELOG, PAYMENT_CHANGELOG, WEBHOOK_CHANGELOG},
                persistent=settings.store == "rocksdb",
            ),
        )


def _traced(topic: Any) -> Any:
    return TracedTopic(topic) if tracing.enabled() else topic


class WorkerCounters:
    """The counts /health shows, read from their owners at each request."""

    def __init__(
        self,
        app: Any,
        parts: Parts,
        payment_service: PaymentService,
    ) -> None:
        self.app = app
        self.parts = parts
        self.payment_service = payment_service

    def __call__(self) -> dict[str, int]:
        dead_letters, consumer = self.parts.dead_letters, self.app.consumer
        return {
            "dead_letters": dead_letters.count,
            "undeliverable_dead_letters": dead_letters.undeliverable,
            "undeliverable_records": UNDELIVERABLE.count,
            "inconsistent_payments": self.payment_service.inconsistent,
            "table_recoveries_restarted": self.parts.recovery_check.restarts,
            "input_holes_read_again": getattr(consumer, "redelivered", 0),
            "undelivered_partitions_read_again": getattr(consumer, "undelivered_read_again", 0),
            "commands_read_ahead_of_a_hole": self.parts.progress.holes_read,
        }


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


def _kafka_options(settings: Settings) -> dict[str, Any]:
    """``faust.App`` settings for Kafka, tables and processing."""
    return dict(
        env={},  # Faust's own unprefixed variables (WEB_PORT, BROKER_URL...) must not win
        broker=[f"kafka://{hp}" for hp in bootstrap_servers(settings)],
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
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
    )


def _web_options(settings: Settings) -> dict[str, Any]:
    """``faust.App`` settings for its web server and worker."""
    return dict(
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


def _new_app(settings: Settings, fence: Fence) -> FencedApp:
    return FencedApp(
        APP_ID,
        fence=fence,
        token_retention_s=settings.token_retention_s,
        dead_letter_retention_s=settings.dead_letter_retention_s,
        **_kafka_options(settings),
        **_web_options(settings),
    )


def _new_fence(settings: Settings) -> Fence:
    # Frozen longer than the broker allows between heartbeats: the partitions are gone.
    heartbeat_s = max(0.5, settings.session_timeout_s / 10)
    return Fence(freeze_after=max(1.0, settings.session_timeout_s - heartbeat_s))


def _order_service(parts: Parts, orders: OrderTable, webhooks: WebhookOutbox) -> OrderService:
    return OrderService(
        orders,
        TopicPublisher(parts.outputs, before_send=parts.fence.check),
        parts.dead_letters,
        parts.watch,
        parts.stalled,
        progress=parts.progress,
        chains=parts.chains,
        commands=parts.command_logs[1],
        downstream=DownstreamOffsets(
            parts.command_logs[1],
            DOWNSTREAM_OF_COMMANDS,
            {
                topic: committed_offsets(parts.app, topic)
                for stage in DOWNSTREAM_OF_COMMANDS
                for topic in stage
            },
        ),
        on_created=parts.metrics.order_created,
        on_terminal=parts.metrics.order_terminal,
        webhooks=webhooks,
    )


@dataclass
class Webhooks:
    """The worker's webhook parts (orderflow.agents.webhooks) and their tasks."""

    table: WebhookTable
    directory: EndpointDirectory
    outbox: WebhookOutbox
    dispatcher: WebhookDispatcher
    key: bytes

    def connect(self, app: Any) -> None:
        dispatcher = self.dispatcher
        app.task(self.directory.run)
        faust_glue.connect(app.on_before_shutdown, dispatcher.stop)

        async def send_due_webhooks() -> None:
            await dispatcher.run(WEBHOOK_TICK_S)

        app.task(send_due_webhooks)


WEBHOOK_TICK_S = 0.25  # how often due webhook deliveries are looked for, at least


def _webhooks(parts: Parts, table: WebhookTable) -> Webhooks:
    settings = parts.settings
    key = signing_key(parts.auth.secret)
    attempts = _traced(parts.topics[WEBHOOK_ATTEMPTS])

    async def publish(attempt: WebhookAttempt) -> None:
        parts.fence.check()  # (a revoked partition's outcome is the new owner's to record)
        sent = await attempts.send(
            key=attempt.order_id.encode(), value=encode_attempts_record(attempt)
        )
        await asyncio.shield(sent)

    directory = EndpointDirectory(bootstrap_servers(parts.settings))
    dispatcher = WebhookDispatcher(
        table,
        HttpWebhookSender(settings.webhook_timeout_s, settings.webhook_allow_private),
        publish,
        key,
        parts.routing.owns,
        concurrency=settings.webhook_concurrency,
        partitions=settings.partitions,
        in_flight_for=settings.webhook_timeout_s + 30.0,
        on_post=parts.metrics.webhook_post,
        registered=directory.registered,
    )
    policy = RetryPolicy(
        settings.webhook_retry_period_s,
        Backoff(settings.webhook_retry_first_s, settings.webhook_retry_cap_s, jitter=0.2),
    )
    outbox = WebhookOutbox(
        table,
        directory,
        policy,
        on_due=dispatcher.schedule,
        on_gave_up=parts.metrics.webhook_failed,
        on_recorded=dispatcher.recorded,
    )
    return Webhooks(table, directory, outbox, dispatcher, key)


def _payment_service(
    parts: Parts,
    payments: PaymentTable,
    gateway: GatewayHolder,
    batches: FencedBatches,
) -> PaymentService:
    publisher = TopicPublisher(parts.outputs, before_send=parts.fence.check)
    return PaymentService(
        payments,
        MeteredGateway(gateway, parts.metrics),
        publisher,
        parts.dead_letters,
        parts.unknown,
        run_event=batches.run_event,  # a revocation fences the batch's writes
        # A charge request of a worker that died may reach the gateway until its deadline has
        # passed (its last attempt: one request timeout more): a cancelled payment waits that long.
        settle_window=parts.settings.gateway_deadline_s + parts.settings.gateway_timeout_s,
        cancel_watch=parts.settings.cancel_watch_s,
    )


def _connect_lifecycle(parts: Parts, gateway: GatewayHolder, webhooks: WebhookDispatcher) -> None:
    """The worker's start-up checks, rebalance signals, start-up tasks and stop."""
    app, settings, unknown, stalled = parts.app, parts.settings, parts.unknown, parts.stalled
    parts.metrics.watch(lambda: len(unknown.due_at), lambda: len(stalled.due_at), ConsumerLag(app))
    Lifecycle(
        app,
        settings,
        parts.fence,
        gateway,
        parts.routing,
        parts.metrics,
        parts.watch,
        parts.recovery_check,
        unknown,
        stalled,
        parts.topics.values(),
        parts.command_logs,
        webhooks.assigned,
    ).connect()
    checks = StartupChecks(app, settings, parts.auth.check)
    faust_glue.connect_sync(app.on_worker_init, checks.worker_init)


def _order_api(parts: Parts, orders: OrderTable) -> OrderApi:
    settings = parts.settings
    return OrderApi(
        orders,
        _traced(parts.topics[ORDER_COMMANDS]),
        parts.watch,
        parts.routing,
        settings.post_wait_s,
        LongPolls(settings.max_long_polls, settings.max_long_polls_per_client),
        caught_up=parts.progress.caught_up,
        move_wait_s=settings.move_wait_s,
        store_wait_s=settings.store_wait_s,
        token_hash_key=fingerprint_key(parts.auth.secret),
        body_read_timeout_s=settings.body_read_timeout_s,
        auth=parts.auth,
        chains=parts.chains,
    )


def _register_views(
    parts: Parts,
    api: OrderApi,
    health: WorkerCounters,
    changes: OrderChanges,
    hooks: WebhookApi,
) -> None:
    stream = OrderStream(api)
    settings = parts.settings
    liveness = Liveness(
        parts.in_flight,
        parts.routing.unready_for,
        health,
        settings.stuck_after_s,
        settings.recovery_deadline_s,
    )
    register_views(
        parts.app,
        api,
        parts.routing,
        liveness.check,
        parts.metrics,
        openapi_document(open_paths=_open_paths(settings)),
        settings.gateway_description,
        parts.auth,
        changes,
        stream,
        hooks,
    )


def build(settings: Settings) -> Orderflow:
    """Create the Faust app with its topics, tables, agents, timers and views."""
    tracing.setup(settings.tracing)  # "off": imports nothing, every hook below is a no-op
    fence = _new_fence(settings)
    app = _new_app(settings, fence)
    parts = Parts.create(app, settings, fence)
    orders = OrderTable(app, settings.partitions, before_write=fence.check)
    payments = PaymentTable(app, settings.partitions, before_write=fence.check)
    # A stale batch sends no gateway request either (a retry, a lookup): only the attempt in
    # flight at a freeze or revocation can still land, and the new owner looks it up first.
    gateway = GatewayHolder(settings, before_request=fence.check)
    batches = FencedBatches(app, fence, parts.in_flight)
    webhooks = _webhooks(parts, WebhookTable(app, settings.partitions, before_write=fence.check))
    order_service = _order_service(parts, orders, webhooks.outbox)
    payment_service = _payment_service(parts, payments, gateway, batches)
    register_order_agent(app, settings, order_service, batches, parts.routing.owns, parts.metrics)
    webhooks.connect(app)
    register_payment_agent(app, settings, payment_service, batches, parts.metrics)
    _connect_lifecycle(parts, gateway, webhooks.dispatcher)
    api = _order_api(parts, orders)
    changes = OrderChanges(api, order_service.decisions)
    hooks = WebhookApi(
        api,
        webhooks.directory,
        webhooks.table,
        _traced(parts.topics[WEBHOOK_ENDPOINTS]),
        _traced(parts.topics[WEBHOOK_ATTEMPTS]),
        webhooks.key,
        settings.webhook_allow_private,
    )
    _register_views(parts, api, WorkerCounters(app, parts, payment_service), changes, hooks)
    return Orderflow(
        settings,
        app,
        orders,
        payments,
        order_service,
        payment_service,
        gateway,
        parts.topics,
        parts.metrics,
        api,
    )


if TYPE_CHECKING:
    orderflow: Orderflow
    app: FencedApp


def use_event_loop(name: str) -> None:
    """Make ``name`` the event loop of this process's loops to come: Faust's, and its consumer
    thread's (Faust's own ``-L uvloop`` does the same, at its import).

    Called before the worker's loop exists; a loop already running is left as it is.
    """
    if name != "uvloop":
        return
    try:
        asyncio.get_running_loop()
        return
    except RuntimeError:
        pass
    try:
        import uvloop
    except ImportError:
        raise SystemExit(
            "orderflow: configuration refused: ORDERFLOW_EVENT_LOOP=uvloop, and uvloop is not "
            "installed (pip install uvloop, or ORDERFLOW_EVENT_LOOP=asyncio)"
        ) from None
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def __getattr__(name: str) -> Any:
    """Build the worker's app on first use of ``app`` or ``orderflow`` (PEP 562), not at import.

    ``faust -A orderflow.app`` imports this module, then asks for its ``app`` attribute: that
    builds it, from the environment, once.
    """
    if name not in ("app", "orderflow"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        # `faust -A orderflow.app ...` prints this without a traceback and exits 1.
        raise SystemExit(f"orderflow: configuration refused: {exc}") from None
    use_event_loop(settings.event_loop)
    built = build(settings)
    globals().update(orderflow=built, app=built.app)
    return globals()[name]
