"""Settings, read once from ``ORDERFLOW_*`` environment variables: the only environment reader.

Faust reads its own unprefixed variables (``WEB_PORT``, ``BROKER_URL``, ...) and lets them override
``faust.App`` arguments; ``orderflow.app`` hands Faust an empty environment (``env={}``) so that
only these settings decide.
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# What ORDERFLOW_TRACING needs (the `tracing` extra); looked up without being imported.
_TRACING_MODULES = (
    "opentelemetry.trace",
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)

__all__ = [
    "AccessSettings",
    "ConfigError",
    "GatewaySettings",
    "KafkaSettings",
    "LogSettings",
    "MembershipSettings",
    "RequestSettings",
    "Settings",
    "StateSettings",
    "WebSettings",
    "WebhookSettings",
    "cluster_problems",
]


class ConfigError(ValueError):
    """An ``ORDERFLOW_*`` variable has a value we cannot use; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = _number(name, raw)
    if not math.isfinite(value):  # float() takes nan and inf: a nan timeout never fires
        raise ConfigError(f"{name}={raw!r} must be a finite number")
    if value <= 0:
        raise ConfigError(f"{name}={value} must be > 0")
    return value


# The shortest retention of a topic whose records are work not done yet: the commands and
# order.created must outlive an outage of the workers (deleted unread, an order answered 202 is
# lost and the stalled-order nudge finds no token), the dead letters an alert and a redrive.
_MIN_RETENTION_S = 86400.0


def _retention(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = _number(name, raw)
    if not math.isfinite(value) or value < _MIN_RETENTION_S:
        raise ConfigError(
            f"{name}={raw}: expected a number of seconds >= 86400 (1 day): records deleted "
            "sooner may never be read (an accepted order lost, a dead letter gone before its "
            "redrive)"
        )
    return value


# Kafka's own rule for group.instance.id (the Java client refuses anything else: 1 to 249 of
# these characters), less the 9 characters of the URL fingerprint (``group_instance_id``).
_INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,240}")


def _instance_id(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if value == "":
        return ""  # dynamic membership
    if not _INSTANCE_ID.fullmatch(value) or value in (".", ".."):
        raise ConfigError(
            f"{name}={value!r}: expected 1 to 240 characters among A-Z a-z 0-9 . _ - "
            "(unique per worker, the same across its restarts)"
        )
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def _is_wildcard(host: str) -> bool:
    """An address that accepts connections from anywhere: another worker cannot reach it.

    Every spelling of it ("0", "0.0", "::0", "0:0:0:0:0:0:0:0", "[::]"); a name is not one.
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        pass
    try:  # the shorthand forms the resolver (inet_aton) takes: "0", "0.0", "0x0", "000.0.0.0"
        return socket.inet_aton(host) == bytes(4)
    except OSError:
        return False


def _installed(module: str) -> bool:
    try:  # finding a submodule imports its parent packages (namespace packages here)
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _tracing(env: Mapping[str, str]) -> str:
    mode = _choice(env, "ORDERFLOW_TRACING", "off", ("off", "console", "otlp"))
    # Asked for and not installed: refused at start, never silently untraced.
    if mode != "off" and not all(_installed(m) for m in _TRACING_MODULES):
        raise ConfigError(
            f"ORDERFLOW_TRACING={mode} needs the OpenTelemetry packages: "
            "pip install 'orderflow[tracing]'"
        )
    return mode


def _gateway_url(env: Mapping[str, str]) -> str:
    """``ORDERFLOW_GATEWAY_URL``, checked; an error names the parts, never echoes a secret."""
    raw = env.get("ORDERFLOW_GATEWAY_URL", "")
    if not raw:
        raise ConfigError("ORDERFLOW_GATEWAY=http needs ORDERFLOW_GATEWAY_URL (https://host:port)")
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise ConfigError("ORDERFLOW_GATEWAY_URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("ORDERFLOW_GATEWAY_URL must be http(s)://host[:port]")
    # The API key and the card tokens travel in every request: in clear only on this machine.
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            "ORDERFLOW_GATEWAY_URL must use https:// (http:// only for a loopback host: "
            "127.0.0.0/8, ::1, localhost): the API key and card tokens would travel in clear"
        )
    # Credentials belong in ORDERFLOW_GATEWAY_API_KEY: a URL is logged, traced and shown.
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "ORDERFLOW_GATEWAY_URL must not carry credentials (user:password@): "
            "put the key in ORDERFLOW_GATEWAY_API_KEY"
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            "ORDERFLOW_GATEWAY_URL must not carry a query string or fragment: "
            "put any key in ORDERFLOW_GATEWAY_API_KEY"
        )
    return raw


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve anywhere
        return False


def _public_url(url: str) -> str:
    """``scheme://host:port`` of a URL: what may be shown of it (logs, ``/ready``)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(env: Mapping[str, str], name: str, default: float) -> float:
    """Seconds, or a number with a unit: ``30s``, ``15m``, ``24h``, ``7d``."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    match = _DURATION.fullmatch(raw)
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(f"{name}={raw!r}: expected a positive duration (e.g. 86400, 24h, 30m)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _names(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(sorted({part.strip() for part in raw.split(",") if part.strip()}))


# The settings by concern, each a frozen dataclass of its own; ``Settings`` joins them, so that
# every setting is still ``settings.<name>`` (and a keyword of ``Settings(...)``).


@dataclass(frozen=True)
class KafkaSettings:
    """The cluster and the topics the worker creates."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    partitions: int = 8
    replication_factor: int = 1
    # Faust standby copies of other workers' table partitions: a worker taking over a partition it
    # kept a standby of recovers only the changelog's tail (scripts/standby_handover.py, 100,000
    # orders: 0 records read, recovery 0.9 s, orders readable 1.8 s after the owner's SIGTERM;
    # without: 50,000 records, 9.0 s, 10.1 s). They once served orders as unknown after a
    # promotion: Faust dropped standby records fetched while recovery paused the actives (fixed
    # by orderflow.consumer.LivePartitions). Each copy costs its worker a read of the changelog.
    standby_replicas: int = 1
    # retention.ms of the topics that carry payment tokens (the command topic, order.created),
    # set when the worker creates them: a token lives there this long. At least 1 day.
    token_retention_s: float = 7 * 24 * 3600.0
    # retention.ms of the dead letters (they carry tokens too, byte for byte): the material of
    # alerts and redrives, kept longer. At least 1 day.
    dead_letter_retention_s: float = 30 * 24 * 3600.0


@dataclass(frozen=True)
class MembershipSettings:
    """The worker in its consumer group, and its producer."""

    # How soon a crashed worker's partitions move to the others (Kafka's session timeout).
    session_timeout_s: float = 10.0
    # Kafka static group membership (group.instance.id); empty: dynamic. Unique per worker and
    # the same across its restarts (with the same canonical URL): a worker back within the
    # session timeout gets its partitions again with no rebalance of the others: set
    # ORDERFLOW_SESSION_TIMEOUT above a worker's stop + start time (5-9 s measured), or the
    # restart costs the wait and the rebalances too. A stopped static worker does not leave the
    # group: its partitions wait for the session timeout (or `orderflow leave-group`).
    instance_id: str = ""
    # How long the producer keeps trying to deliver a record before it reports it failed (Faust's
    # producer_request_timeout; 20 minutes by default there). The agents send failed records
    # again and never commit past them, so a shorter bound only makes a failure surface sooner.
    producer_timeout_s: float = 30.0


@dataclass(frozen=True)
class WebSettings:
    """Where the worker listens, and the URL the other workers reach it at."""

    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # The URL other workers use to reach this one (GET/POST routing to the partition owner).
    canonical_url: str = ""


@dataclass(frozen=True)
class StateSettings:
    """Where the tables live, when /health calls the worker stuck, and the worker's event loop."""

    data_dir: Path = Path(".run/worker-data")
    store: str = "rocksdb"  # or "memory": replays the whole changelog at every start
    # uvloop's event loop (libuv, in C) or asyncio's own: uvloop measured ~13 % less worker CPU
    # per order under load (docs/benchmarks.md).
    event_loop: str = "uvloop"
    # /health answers 503 when an agent has been on one event (batch) longer than this; above the
    # gateway deadline, which one batch of charges may take.
    stuck_after_s: float = 60.0
    # /health answers 503 once the worker has been rebalancing or recovering its tables this long
    # (a supervisor's liveness probe then restarts it); generous: a large table recovers slowly.
    recovery_deadline_s: float = 300.0


@dataclass(frozen=True)
class GatewaySettings:
    """The payment gateway, how long a call to it may take, and the payments' pace."""

    # "sandbox": the worker embeds the sandbox gateway on gateway_sandbox_port (0 = any free
    # port), which approves test tokens without taking money; "http": the gateway at gateway_url.
    # Asked for explicitly (ORDERFLOW_GATEWAY): a worker missing it must not take orders for free.
    gateway: str = "sandbox"
    gateway_url: str = ""
    # Sent as "Authorization: Bearer ..."; kept out of repr (settings may be logged).
    gateway_api_key: str = field(default="", repr=False)
    gateway_timeout_s: float = 5.0
    gateway_deadline_s: float = 15.0
    gateway_sandbox_port: int = 0
    gateway_sandbox_db: Path = Path(".run/sandbox-gateway.db")
    # Payments charged concurrently per batch; the events of one order stay in order.
    payment_batch_size: int = 64
    reconcile_interval_s: float = 2.0
    # A PENDING order that has not moved for this long gets its order.created published again.
    stall_after_s: float = 30.0
    # A cancelled order whose charge request was sent: how long after that request the gateway
    # is still asked whether it charged (a request held by the gateway may land late), before
    # the payment is VOIDED for good.
    cancel_watch_s: float = 600.0


@dataclass(frozen=True)
class RequestSettings:
    """How long a request waits before it answers, and what one client may hold of a worker."""

    post_wait_s: float = 10.0
    # Once Kafka has acknowledged a PlaceOrder, how long the POST waits for the order service to
    # store it (201) before answering 202 (accepted durably): a busy or failing-over cluster
    # must not hold the client, the order is safe either way.
    store_wait_s: float = 1.0
    # How long a request waits for a moving partition (a rebalance, a recovery, an owner that
    # stopped answering) before it answers 503; a long-poll's own wait counts when longer.
    move_wait_s: float = 5.0
    # A POST's whole body must arrive within this, or it is answered 408 (a slow client must
    # not hold a handler for ever).
    body_read_timeout_s: float = 10.0
    # Long-polls (GET ?wait=S) this worker holds at once, and per client (TCP peer address).
    # Forwarded long-polls count only at the worker the client reached.
    max_long_polls: int = 256
    max_long_polls_per_client: int = 32


@dataclass(frozen=True)
class AccessSettings:
    """Who may call, and how long an Idempotency-Key names its order."""

    # "keys": every /orders request needs a configured API key (web/auth.py); "none": no
    # authentication at all (development only, logged loudly at start).
    api_auth: str = "keys"
    api_keys_file: Path | None = None
    # Signs forwarded requests and keys order ids (the same on every worker, >= 32 bytes).
    cluster_secret: str = field(default="", repr=False)
    # Endpoints served without an API key.
    open_endpoints: tuple[str, ...] = ("health", "metrics", "openapi", "ready")
    # How long an Idempotency-Key names its order; after it, the key may place a new one.
    idempotency_retention_s: float = 86400.0


@dataclass(frozen=True)
class WebhookSettings:
    """How order events reach the clients' webhook endpoints (orderflow.agents.webhooks)."""

    # A delivery is retried until a 2xx answer or this long after its change (then FAILED, and
    # sent again only when asked: POST /orders/{id}/webhooks/resend).
    webhook_retry_period_s: float = 24 * 3600.0
    # The waits between attempts double from the first up to the cap (with jitter).
    webhook_retry_first_s: float = 10.0
    webhook_retry_cap_s: float = 3600.0
    # One POST's whole time (connect, send, answer).
    webhook_timeout_s: float = 10.0
    # POSTs in flight at once per worker.
    webhook_concurrency: int = 32
    # Endpoints whose host is (or resolves to) a loopback, private, link-local or reserved
    # address are refused unless this is set: a client must not make the workers call into
    # their own network (SSRF). Development and tests only.
    webhook_allow_private: bool = False


@dataclass(frozen=True)
class LogSettings:
    """What the logs say and how; whether spans are traced."""

    log_level: str = "info"
    log_format: str = "text"  # or "json": one JSON object per line
    # OpenTelemetry (orderflow.tracing): "off", "console" (spans on stdout) or "otlp" (the
    # standard OTEL_EXPORTER_OTLP_* variables). Needs the `tracing` extra unless off.
    tracing: str = "off"


@dataclass(frozen=True)
class Settings(
    KafkaSettings,
    MembershipSettings,
    WebSettings,
    StateSettings,
    GatewaySettings,
    RequestSettings,
    AccessSettings,
    WebhookSettings,
    LogSettings,
):
    """Everything a worker can be told from outside (the classes above, by concern)."""

    @property
    def group_instance_id(self) -> str | None:
        """The ``group.instance.id`` sent to Kafka: ``instance_id`` and a fingerprint of the URL.

        The broker gives a static member back its previous incarnation's assignment, and Faust's
        assignment names the worker's URL (other workers route requests by it): handed an
        assignment made for another URL, Faust's assignor fails an assertion and the worker's
        group coordinator dies (alive, never ready, consuming nothing). With the URL in the id,
        a worker moved to another URL, or a second worker given the same id by mistake, is
        another member: the old one's partitions move when its session times out.
        """
        if not self.instance_id:
            return None
        digest = hashlib.sha256(self.canonical_url.encode()).hexdigest()[:8]
        return f"{self.instance_id}.{digest}"

    @property
    def gateway_description(self) -> dict[str, str]:
        """Which gateway is in use, safe to show: ``sandbox``, or ``http`` and scheme://host:port."""
        if self.gateway == "sandbox":
            return {"gateway": "sandbox"}
        return {"gateway": "http", "gateway_url": _public_url(self.gateway_url)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, worker: bool = True) -> Settings:
        """Read the ``ORDERFLOW_*`` variables (``os.environ`` by default).

        ``worker=False`` (debugging commands that only read Kafka) skips the rules that only a
        worker needs: the gateway choice and the web address.
        """
        env = os.environ if env is None else env
        # In the order the worker's rules were always checked: its address, then its gateway.
        web = _web_settings(env, worker)
        gateway = _gateway_settings(env, worker)
        return cls(
            **web,
            **gateway,
            **_kafka_settings(env),
            **_state_settings(env),
            **_api_settings(env),
            **_webhook_settings(env),
            **_log_settings(env),
        )


# Each returns the ``Settings`` arguments of one concern, read from ``ORDERFLOW_*`` variables.


def _web_settings(env: Mapping[str, str], worker: bool) -> dict[str, Any]:
    """Where the worker listens, and the URL the other workers reach it at."""
    web_host = env.get("ORDERFLOW_WEB_HOST") or Settings.web_host
    web_port = _int(env, "ORDERFLOW_WEB_PORT", Settings.web_port)
    canonical_url = env.get("ORDERFLOW_CANONICAL_URL", "")
    if not canonical_url:
        if worker and _is_wildcard(web_host):
            # Other workers would be told 127.0.0.1: each believes it owns every order.
            raise ConfigError(
                f"ORDERFLOW_WEB_HOST={web_host} needs ORDERFLOW_CANONICAL_URL "
                "(the URL other workers reach this one at)"
            )
        canonical_url = f"http://{'127.0.0.1' if _is_wildcard(web_host) else web_host}:{web_port}"
    return {"web_host": web_host, "web_port": web_port, "canonical_url": canonical_url}


def _gateway_settings(env: Mapping[str, str], worker: bool) -> dict[str, Any]:
    """The gateway (a worker's choice is checked; debugging commands skip it) and the payments."""
    gateway, gateway_url, api_key = Settings.gateway, "", ""
    if worker:
        gateway, gateway_url, api_key = _gateway_choice(env)
    return {
        "gateway": gateway,
        "gateway_url": gateway_url or env.get("ORDERFLOW_GATEWAY_URL", ""),
        "gateway_api_key": api_key,
        "gateway_sandbox_port": _int(env, "ORDERFLOW_SANDBOX_PORT", 0, minimum=0),
        "gateway_sandbox_db": Path(env.get("ORDERFLOW_SANDBOX_DB") or Settings.gateway_sandbox_db),
        "gateway_timeout_s": _float(env, "ORDERFLOW_GATEWAY_TIMEOUT", Settings.gateway_timeout_s),
        "gateway_deadline_s": _float(
            env, "ORDERFLOW_GATEWAY_DEADLINE", Settings.gateway_deadline_s
        ),
        "payment_batch_size": _int(env, "ORDERFLOW_PAYMENT_BATCH", Settings.payment_batch_size),
        "reconcile_interval_s": _float(
            env, "ORDERFLOW_RECONCILE_INTERVAL", Settings.reconcile_interval_s
        ),
        "stall_after_s": _float(env, "ORDERFLOW_STALL_AFTER", Settings.stall_after_s),
        "cancel_watch_s": _float(env, "ORDERFLOW_CANCEL_WATCH", Settings.cancel_watch_s),
    }


def _kafka_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The cluster, the topics and the consumer group."""
    return {
        "kafka_bootstrap": env.get("ORDERFLOW_KAFKA_BOOTSTRAP") or Settings.kafka_bootstrap,
        "partitions": _int(env, "ORDERFLOW_PARTITIONS", Settings.partitions),
        "replication_factor": _int(
            env, "ORDERFLOW_REPLICATION_FACTOR", Settings.replication_factor
        ),
        "standby_replicas": _int(
            env, "ORDERFLOW_STANDBY_REPLICAS", Settings.standby_replicas, minimum=0
        ),
        "producer_timeout_s": _float(
            env, "ORDERFLOW_PRODUCER_TIMEOUT", Settings.producer_timeout_s
        ),
        "session_timeout_s": _float(env, "ORDERFLOW_SESSION_TIMEOUT", Settings.session_timeout_s),
        "instance_id": _instance_id(env, "ORDERFLOW_INSTANCE_ID"),
        "token_retention_s": _retention(
            env, "ORDERFLOW_TOKEN_TOPIC_RETENTION", Settings.token_retention_s
        ),
        "dead_letter_retention_s": _retention(
            env, "ORDERFLOW_DEAD_LETTER_RETENTION", Settings.dead_letter_retention_s
        ),
    }


def _state_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Where the tables live, when /health calls the worker stuck, and the worker's event loop."""
    return {
        "data_dir": Path(env.get("ORDERFLOW_DATA_DIR") or Settings.data_dir),
        "store": _choice(env, "ORDERFLOW_STORE", Settings.store, ("rocksdb", "memory")),
        "event_loop": _choice(
            env, "ORDERFLOW_EVENT_LOOP", Settings.event_loop, ("uvloop", "asyncio")
        ),
        "stuck_after_s": _float(env, "ORDERFLOW_STUCK_AFTER", Settings.stuck_after_s),
        "recovery_deadline_s": _float(
            env, "ORDERFLOW_RECOVERY_DEADLINE", Settings.recovery_deadline_s
        ),
    }


def _api_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """How long requests wait, how many long-polls are held, who may call."""
    keys_file = env.get("ORDERFLOW_API_KEYS_FILE")
    return {
        "post_wait_s": _float(env, "ORDERFLOW_POST_WAIT", Settings.post_wait_s),
        "move_wait_s": _float(env, "ORDERFLOW_MOVE_WAIT", Settings.move_wait_s),
        "store_wait_s": _float(env, "ORDERFLOW_STORE_WAIT", Settings.store_wait_s),
        "max_long_polls": _int(env, "ORDERFLOW_MAX_LONG_POLLS", Settings.max_long_polls),
        "body_read_timeout_s": _float(
            env, "ORDERFLOW_BODY_READ_TIMEOUT", Settings.body_read_timeout_s
        ),
        "max_long_polls_per_client": _int(
            env, "ORDERFLOW_MAX_LONG_POLLS_PER_CLIENT", Settings.max_long_polls_per_client
        ),
        "api_auth": _choice(env, "ORDERFLOW_API_AUTH", Settings.api_auth, ("keys", "none")),
        "api_keys_file": Path(keys_file) if keys_file else None,
        "cluster_secret": env.get("ORDERFLOW_CLUSTER_SECRET", ""),
        "open_endpoints": _names(env, "ORDERFLOW_OPEN_ENDPOINTS", Settings.open_endpoints),
        "idempotency_retention_s": _duration(
            env, "ORDERFLOW_IDEMPOTENCY_RETENTION", Settings.idempotency_retention_s
        ),
    }


def _webhook_settings(env: Mapping[str, str]) -> dict[str, Any]:
    allow = (env.get("ORDERFLOW_WEBHOOK_ALLOW_PRIVATE") or "false").strip().lower()
    if allow not in ("true", "false"):
        raise ConfigError(f"ORDERFLOW_WEBHOOK_ALLOW_PRIVATE={allow!r}: expected true or false")
    first = _duration(env, "ORDERFLOW_WEBHOOK_RETRY_FIRST", Settings.webhook_retry_first_s)
    cap = _duration(env, "ORDERFLOW_WEBHOOK_RETRY_CAP", Settings.webhook_retry_cap_s)
    if cap < first:
        raise ConfigError(
            f"ORDERFLOW_WEBHOOK_RETRY_CAP ({cap:g} s) must not be below "
            f"ORDERFLOW_WEBHOOK_RETRY_FIRST ({first:g} s)"
        )
    return {
        "webhook_retry_period_s": _duration(
            env, "ORDERFLOW_WEBHOOK_RETRY_PERIOD", Settings.webhook_retry_period_s
        ),
        "webhook_retry_first_s": first,
        "webhook_retry_cap_s": cap,
        "webhook_timeout_s": _duration(
            env, "ORDERFLOW_WEBHOOK_TIMEOUT", Settings.webhook_timeout_s
        ),
        "webhook_concurrency": _int(
            env, "ORDERFLOW_WEBHOOK_CONCURRENCY", Settings.webhook_concurrency
        ),
        "webhook_allow_private": allow == "true",
    }


def _log_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """What the logs say and how; whether spans are traced."""
    return {
        "log_level": _choice(
            env, "ORDERFLOW_LOG_LEVEL", Settings.log_level, ("debug", "info", "warning", "error")
        ),
        "log_format": _choice(env, "ORDERFLOW_LOG_FORMAT", Settings.log_format, ("text", "json")),
        "tracing": _tracing(env),
    }


def _gateway_choice(env: Mapping[str, str]) -> tuple[str, str, str]:
    """(gateway, URL, API key) for a worker: the sandbox only when asked for by name."""
    gateway = env.get("ORDERFLOW_GATEWAY", "")
    if gateway not in ("sandbox", "http"):
        shown = "unset" if gateway == "" else f"{gateway!r}"
        raise ConfigError(
            f"ORDERFLOW_GATEWAY is {shown}: set it to 'http' (with ORDERFLOW_GATEWAY_URL and "
            "ORDERFLOW_GATEWAY_API_KEY) for a real payment gateway, or to 'sandbox' for the "
            "embedded test gateway, which approves test tokens without taking money"
        )
    if gateway == "sandbox":
        if env.get("ORDERFLOW_GATEWAY_URL"):
            # Someone meant a real gateway, or forgot to switch: either way, not the sandbox.
            raise ConfigError(
                "ORDERFLOW_GATEWAY=sandbox with ORDERFLOW_GATEWAY_URL set: unset the URL, or "
                "set ORDERFLOW_GATEWAY=http to use it"
            )
        return "sandbox", "", ""
    url = _gateway_url(env)
    api_key = env.get("ORDERFLOW_GATEWAY_API_KEY", "")
    if not api_key.strip():
        raise ConfigError("ORDERFLOW_GATEWAY=http needs ORDERFLOW_GATEWAY_API_KEY")
    if any(c in api_key for c in "\r\n"):
        raise ConfigError("ORDERFLOW_GATEWAY_API_KEY must be one line")
    return "http", url, api_key.strip()


def cluster_problems(
    replication_factor: int,
    broker_ids: list[int],
    min_insync: Mapping[int, int],
    topic_replicas: Mapping[str, int | None] | None = None,
) -> list[str]:
    """What makes the cluster unable to take our writes; each names the variable or setting.

    ``min_insync`` maps a broker id to its ``min.insync.replicas``. With ``acks=all`` a topic
    whose ISR minimum exceeds its replica count refuses every write (NotEnoughReplicas).
    ``topic_replicas`` maps each of our topics to its replica count, None when it does not exist
    (empty: none exists yet). ``broker_ids`` are the live brokers only (Kafka's metadata): with
    the topics there, a broker down is no reason to refuse a restart (a rolling restart during a
    broker outage would stop the service); only creating a topic needs that many brokers.
    """
    problems = []
    topic_replicas = topic_replicas or {}
    missing = not topic_replicas or None in topic_replicas.values()
    if replication_factor > len(broker_ids) and missing:
        problems.append(
            f"ORDERFLOW_REPLICATION_FACTOR={replication_factor} is above the number of live "
            f"brokers ({len(broker_ids)}): the topics not created yet cannot be created"
        )
    for topic, replicas in sorted(topic_replicas.items()):
        if replicas is not None and replicas < replication_factor:
            problems.append(
                f"topic {topic} has fewer replicas ({replicas}) than "
                f"ORDERFLOW_REPLICATION_FACTOR={replication_factor}: set the variable to the "
                "topics' replication, or reassign their partitions"
            )
    too_high = {b: n for b, n in sorted(min_insync.items()) if n > replication_factor}
    if too_high:
        shown = ", ".join(f"broker {b}: {n}" for b, n in too_high.items())
        problems.append(
            f"the brokers' min.insync.replicas ({shown}) is above "
            f"ORDERFLOW_REPLICATION_FACTOR={replication_factor}: every write would be refused"
        )
    return problems
