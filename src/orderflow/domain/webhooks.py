"""Webhooks, decided: which order changes a client is told of, how each delivery is retried, and
how a body is signed (pure: no clock, no I/O; the agents pass the time in).

A client registers endpoints (``Endpoint``). Each change of one of its orders' public view is an
**event** (``event_id`` = order id + the view's digest, so a redelivery of the same change has the
same id), delivered to each endpoint as one ``Delivery``: POSTed at least once, retried with a
doubling delay until a 2xx answer or until ``RetryPolicy.period`` after the change, then FAILED
(a person may send it again). An order's deliveries live in one ``OrderWebhooks`` value, written
by the order's single writer, so nothing here needs a lock.

The signature scheme (Stripe's, so receivers know it): header
``Orderflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``; a receiver
recomputes it over the raw body and refuses a timestamp older than its tolerance (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from orderflow.domain.backoff import Backoff

__all__ = [
    "ENDPOINT_DELETED",
    "MAX_ATTEMPTS_KEPT",
    "MAX_ENDPOINTS_PER_CLIENT",
    "SIGNATURE_HEADER",
    "Attempt",
    "Delivery",
    "DeliveryState",
    "Endpoint",
    "OrderWebhooks",
    "RetryPolicy",
    "delivery_to_public",
    "due_deliveries",
    "endpoint_secret",
    "endpoint_to_public",
    "endpoint_url_problem",
    "event_body",
    "event_id_for",
    "is_public_address",
    "record_attempt",
    "record_change",
    "resend",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "Orderflow-Signature"
# The error of the attempt that ends a delivery whose endpoint was deleted (no POST was sent).
ENDPOINT_DELETED = "endpoint deleted"
MAX_ENDPOINTS_PER_CLIENT = 5
# An order's record keeps the last attempts of each delivery (the count is kept in full): a
# receiver down for days must not grow it without bound.
MAX_ATTEMPTS_KEPT = 10
# And at most this many deliveries per order (oldest DELIVERED ones dropped first): an order has
# at most ~55 public changes (50 refunds), times the endpoints of its client.
MAX_DELIVERIES_KEPT = 300


@dataclass(frozen=True)
class Endpoint:
    """One registered receiver of a client's order events (its secret is derived, never stored:
    ``endpoint_secret``)."""

    endpoint_id: str
    client_id: str
    url: str
    created_at: str


class DeliveryState(StrEnum):
    PENDING = "PENDING"  # to be (re)sent at ``next_at``
    DELIVERED = "DELIVERED"  # a 2xx answer
    FAILED = "FAILED"  # no 2xx within the retry period: sent again only when asked


@dataclass(frozen=True)
class Attempt:
    """One POST of a delivery and how it ended: ``status`` the HTTP status (0: none, the
    ``error`` says why: a timeout, a refused connection)."""

    number: int
    at: float
    status: int
    error: str
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class Delivery:
    """One event for one endpoint: the body as it will be signed and sent, and its attempts."""

    event_id: str
    endpoint_id: str
    url: str
    body: str
    created_at: float
    state: DeliveryState = DeliveryState.PENDING
    next_at: float = 0.0
    attempt_count: int = 0
    attempts: tuple[Attempt, ...] = ()
    # When a person asked to send it again (the retry period restarts from there), and how many
    # attempts it had then (the backoff restarts from its first delay too).
    resent_at: float | None = None
    attempts_before_resend: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.event_id, self.endpoint_id)


@dataclass(frozen=True)
class OrderWebhooks:
    """An order's webhook events and their deliveries (``WebhookDB``, keyed by order id)."""

    order_id: str
    last_version: str = ""  # the public view's digest last turned into an event
    last_status: str = ""
    sequence: int = 0  # events made so far (each event's ``sequence``)
    deliveries: tuple[Delivery, ...] = ()

    def delivery(self, event_id: str, endpoint_id: str) -> Delivery | None:
        for delivery in self.deliveries:
            if delivery.key == (event_id, endpoint_id):
                return delivery
        return None

    @property
    def pending(self) -> bool:
        return any(d.state is DeliveryState.PENDING for d in self.deliveries)

    def next_due(self) -> float | None:
        """When the earliest PENDING delivery is due (None: nothing pending)."""
        due = [d.next_at for d in self.deliveries if d.state is DeliveryState.PENDING]
        return min(due) if due else None


@dataclass(frozen=True)
class RetryPolicy:
    """Retries after a failed attempt: ``backoff`` between them, none after ``period`` seconds
    from the change (or from a person's resend)."""

    period: float
    backoff: Backoff

    def next_at(self, delivery: Delivery, failed_at: float, draw: float = 1.0) -> float | None:
        """When to try again after the ``delivery.attempt_count``-th attempt failed at
        ``failed_at``; None: the period is over."""
        start = delivery.resent_at if delivery.resent_at is not None else delivery.created_at
        failed = delivery.attempt_count - delivery.attempts_before_resend
        at = failed_at + self.backoff.delay(failed - 1, draw)
        return at if at <= start + self.period else None


def event_id_for(order_id: str, version: str) -> str:
    """The id of the event an order's public view ``version`` makes: the same for every
    redelivery of it (receivers de-duplicate by it)."""
    digest = hashlib.sha256(order_id.encode() + b"\0" + version.encode()).hexdigest()
    return f"evt_{digest[:24]}"


def event_type(status: str, previous_status: str) -> str:
    """``order.<status>`` when the status changed (``order.paid``), else ``order.updated`` (a
    refund that failed, a charge that raced a cancel)."""
    return f"order.{status.lower()}" if status != previous_status else "order.updated"


def event_body(
    event_id: str, kind: str, sequence: int, occurred_at: str, order: Mapping[str, Any]
) -> str:
    """The JSON body POSTed for one event: what happened and the order as the API shows it."""
    return json.dumps(
        {
            "id": event_id,
            "type": kind,
            "sequence": sequence,
            "created_at": occurred_at,
            "data": {"order": order},
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def record_change(
    record: OrderWebhooks | None,
    order_id: str,
    public: Mapping[str, Any],
    version: str,
    endpoints: Iterable[Endpoint],
    now: float,
    occurred_at: str,
) -> OrderWebhooks | None:
    """The order's record with one more event for its view ``version`` (one PENDING delivery per
    endpoint, due now); None when that version was already made an event (a redelivery)."""
    current = record or OrderWebhooks(order_id)
    if current.last_version == version:
        return None
    status = str(public.get("status", ""))
    event_id = event_id_for(order_id, version)
    sequence = current.sequence + 1
    body = event_body(
        event_id, event_type(status, current.last_status), sequence, occurred_at, public
    )
    added = tuple(
        Delivery(event_id, e.endpoint_id, e.url, body, created_at=now, next_at=now)
        for e in endpoints
    )
    return replace(
        current,
        last_version=version,
        last_status=status,
        sequence=sequence,
        deliveries=_bounded(current.deliveries + added),
    )


def _bounded(deliveries: tuple[Delivery, ...]) -> tuple[Delivery, ...]:
    """At most ``MAX_DELIVERIES_KEPT``: the oldest DELIVERED ones go first, then the oldest."""
    excess = len(deliveries) - MAX_DELIVERIES_KEPT
    if excess <= 0:
        return deliveries
    delivered = [d.key for d in deliveries if d.state is DeliveryState.DELIVERED]
    dropped = set(delivered[:excess])
    kept = tuple(d for d in deliveries if d.key not in dropped)
    return kept[-MAX_DELIVERIES_KEPT:]


def record_attempt(
    record: OrderWebhooks,
    event_id: str,
    endpoint_id: str,
    attempt: Attempt,
    policy: RetryPolicy,
    draw: float = 1.0,
) -> OrderWebhooks | None:
    """The record with ``attempt`` counted; None when it changes nothing (an attempt recorded
    already, a delivery that is no longer PENDING, or one the record no longer has)."""
    delivery = record.delivery(event_id, endpoint_id)
    if (
        delivery is None
        or delivery.state is not DeliveryState.PENDING
        or attempt.number <= delivery.attempt_count
    ):
        return None
    counted = replace(
        delivery,
        attempt_count=attempt.number,
        attempts=(*delivery.attempts, attempt)[-MAX_ATTEMPTS_KEPT:],
    )
    if attempt.succeeded:
        counted = replace(counted, state=DeliveryState.DELIVERED)
    elif attempt.error == ENDPOINT_DELETED:
        counted = replace(counted, state=DeliveryState.FAILED)
    else:
        next_at = policy.next_at(counted, attempt.at, draw)
        counted = (
            replace(counted, state=DeliveryState.FAILED)
            if next_at is None
            else replace(counted, next_at=next_at)
        )
    return _replaced(record, counted)


def resend(record: OrderWebhooks, event_id: str | None, now: float) -> OrderWebhooks | None:
    """The record with its deliveries (all, or those of ``event_id``) due again from ``now``
    (the time the resend was asked for), whatever their state; None when there is none to
    resend, or the same request was applied already (a redelivered record)."""
    chosen = [
        d
        for d in record.deliveries
        if (event_id is None or d.event_id == event_id)
        and (d.resent_at is None or d.resent_at < now)
    ]
    if not chosen:
        return None
    again = record
    for delivery in chosen:
        again = _replaced(
            again,
            replace(
                delivery,
                state=DeliveryState.PENDING,
                next_at=now,
                resent_at=now,
                attempts_before_resend=delivery.attempt_count,
            ),
        )
    return again


def _replaced(record: OrderWebhooks, delivery: Delivery) -> OrderWebhooks:
    return replace(
        record,
        deliveries=tuple(delivery if d.key == delivery.key else d for d in record.deliveries),
    )


def due_deliveries(record: OrderWebhooks, now: float) -> list[Delivery]:
    """The PENDING deliveries due at ``now``."""
    return [d for d in record.deliveries if d.state is DeliveryState.PENDING and d.next_at <= now]


def endpoint_secret(signing_key: bytes, endpoint_id: str) -> str:
    """An endpoint's signing secret, derived from the service's key: shown to the client once,
    at registration, and stored nowhere (Kafka holds only the endpoint id)."""
    digest = hmac.new(signing_key, f"webhook-endpoint\0{endpoint_id}".encode(), hashlib.sha256)
    return "whsec_" + digest.hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Orderflow-Signature`` header value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300.0) -> bool:
    """What a receiver checks: a ``v1`` signature of ``body`` under ``secret``, made within
    ``tolerance`` seconds of ``now`` (an old one is a replay)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    stamps = parts.get("t", [])
    # isascii: str.isdigit() also takes "²" and "①", which int() refuses.
    if len(stamps) != 1 or not (stamps[0].isascii() and stamps[0].isdigit()) or len(stamps[0]) > 12:
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2].encode()
    # Bytes: compare_digest refuses str with non-ASCII characters (a forged header's).
    return any(hmac.compare_digest(expected, given.encode()) for given in parts.get("v1", []))


MAX_URL_LENGTH = 2048
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a webhook may be POSTed to ``address``: not loopback, private, link-local
    (cloud metadata services), multicast, reserved or unspecified; IPv4 inside IPv6 judged as
    IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or _nat64(address)
        if embedded is not None:
            return is_public_address(embedded)
    return address.is_global and not address.is_multicast


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _nat64(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside a NAT64 (RFC 6052 well-known prefix) address, or None."""
    if address not in _NAT64:
        return None
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def _numeric_label(host: str) -> bool:
    last = host.rstrip(".").rpartition(".")[2].lower()
    return last.isdigit() or (last.startswith("0x") and len(last) > 2)


def endpoint_url_problem(url: str, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a webhook endpoint, or None: http(s), a host, no credentials, no
    fragment; unless ``allow_private``, no host that is a non-public address or a local name."""
    if len(url) > MAX_URL_LENGTH:
        return f"longer than {MAX_URL_LENGTH} characters"
    if not url.isascii() or any(c.isspace() or ord(c) < 32 for c in url):
        return "must be ASCII without spaces or control characters (punycode for other names)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@)"
    if parts.fragment:
        return "must not carry a fragment (#...)"
    host = parts.hostname or ""
    if not host:
        return "has no host"
    if port == 0:
        return "port 0 is not a port"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None and (not _HOST_NAME.fullmatch(host) or _numeric_label(host)):
        # (a numeric last label is an address in a form resolvers read: 127.1, 0x7f000001)
        return "has an invalid host name"
    if allow_private:
        return None
    if address is not None and not is_public_address(address):
        return "points to a loopback, private, link-local or reserved address"
    lowered = host.lower().rstrip(".")
    if address is None and (
        lowered == "localhost" or lowered.endswith((".localhost", ".local", ".internal"))
    ):
        return "names a local host"
    return None


def endpoint_to_public(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint as the HTTP API shows it (never its secret)."""
    return {
        "endpoint_id": endpoint.endpoint_id,
        "url": endpoint.url,
        "created_at": endpoint.created_at,
    }


def delivery_to_public(delivery: Delivery) -> dict[str, Any]:
    """One delivery as the HTTP API shows it: the event, where it goes, how it went."""
    event = json.loads(delivery.body)
    return {
        "event_id": delivery.event_id,
        "type": event.get("type"),
        "sequence": event.get("sequence"),
        "endpoint_id": delivery.endpoint_id,
        "url": delivery.url,
        "state": str(delivery.state),
        "attempt_count": delivery.attempt_count,
        "next_attempt_at": (
            _iso(delivery.next_at) if delivery.state is DeliveryState.PENDING else None
        ),
        "attempts": [
            {
                "number": a.number,
                "at": _iso(a.at),
                "status": a.status or None,
                "error": a.error or None,
                "duration_ms": a.duration_ms,
            }
            for a in delivery.attempts
        ],
    }


def _iso(epoch_s: float) -> str:
    return (
        datetime.fromtimestamp(epoch_s, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
