"""Webhook deliveries as ``trace`` shows them: the timeline's lines for the records of
``orderflow.webhook-attempts`` and the WebhookDB changelog, and each delivery's final state.

Pure (the trace passes the time in). The deliveries' states are WebhookDB's latest value (the
outbox's decisions); the attempt records on the topic only tell when the last POST happened,
which may be newer than that value when the order service lags.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from orderflow.domain.errors import DomainError
from orderflow.domain.tokens import mask_text
from orderflow.domain.webhooks import (
    Attempt,
    Delivery,
    DeliveryState,
    OrderWebhooks,
    delivery_to_public,
)
from orderflow.tools.replay.window import ms_to_rfc3339
from orderflow.wire.webhooks import (
    WebhookAttempt,
    WebhookResend,
    decode_attempts_record,
    webhooks_from_bytes,
)

__all__ = [
    "STUCK_AFTER_S",
    "DeliveryView",
    "WebhookSummary",
    "describe_attempts_value",
    "describe_webhooks_value",
    "summarize",
]

# A PENDING delivery due (and not tried) for longer than this is stuck: the dispatcher of the
# order's owner sends a due delivery within a second or so, and at most ``in_flight_for`` (60 s)
# later again when an outcome was lost; the retry delays (up to an hour) count from the last
# attempt's ``next_at``, so a long backoff is not mistaken for a stuck delivery.
STUCK_AFTER_S = 600.0


def _iso(epoch_s: float) -> str:
    return ms_to_rfc3339(round(epoch_s * 1000))


def _outcome(attempt: Attempt) -> str:
    """``HTTP 204``, or why there was no answer."""
    if attempt.status:
        return f"HTTP {attempt.status}"
    return f"no answer ({mask_text(attempt.error)})" if attempt.error else "no answer"


def _describe_attempt(record: WebhookAttempt) -> str:
    attempt = record.attempt
    return (
        f"webhook attempt {attempt.number} {record.event_id} -> {record.endpoint_id}: "
        f"{_outcome(attempt)} in {attempt.duration_ms} ms, sent {_iso(attempt.at)}"
    )


def _describe_resend(record: WebhookResend) -> str:
    which = record.event_id or "every event"
    by = f" by {record.client_id}" if record.client_id else ""
    return f"webhook resend of {which}, asked {_iso(record.requested_at)}{by}"


def describe_attempts_value(raw: bytes) -> str:
    """One line for a record of ``orderflow.webhook-attempts``."""
    try:
        record = decode_attempts_record(raw)
    except DomainError as exc:
        return mask_text(f"undecodable webhook record ({exc})")
    if isinstance(record, WebhookAttempt):
        return _describe_attempt(record)
    return _describe_resend(record)


def describe_webhooks_value(raw: bytes) -> str:
    """One line for a WebhookDB changelog value: the events made, the deliveries' states."""
    try:
        stored = webhooks_from_bytes(raw)
    except DomainError as exc:
        return mask_text(f"undecodable WebhookDB value ({exc})")
    states = [d.state for d in stored.deliveries]
    counts = ", ".join(f"{states.count(s)} {s}" for s in DeliveryState if s in states)
    attempts = sum(d.attempt_count for d in stored.deliveries)
    return f"WebhookDB <- {stored.sequence} event(s), {len(states)} delivery(ies)" + (
        f": {counts}, {attempts} attempt(s)" if states else ""
    )


@dataclass(frozen=True)
class DeliveryView:
    """One delivery (an event for an endpoint) as WebhookDB last recorded it, judged."""

    delivery: Delivery
    event_type: str | None
    sequence: int | None
    last_attempt_at: float | None  # the latest POST known, WebhookDB's or the topic's
    problem: str | None  # FAILED or stuck; None: nothing to do

    def to_json(self) -> dict[str, Any]:
        public = _public(self.delivery)
        public.update(
            type=self.event_type,
            sequence=self.sequence,
            resent_at=None if self.delivery.resent_at is None else _iso(self.delivery.resent_at),
            problem=self.problem,
        )
        return public

    def line(self) -> str:
        """``#2 order.paid evt_… -> we_… (url): FAILED after 5 attempt(s), last HTTP 500``."""
        d = self.delivery
        text = (
            f"#{self.sequence if self.sequence is not None else '?'} {self.event_type or '?'} "
            f"{d.event_id} -> {d.endpoint_id} ({d.url}): {d.state} after {d.attempt_count} "
            "attempt(s)"
        )
        if d.attempts:
            text += f", last {_outcome(d.attempts[-1])}"
        if d.state is DeliveryState.PENDING:
            text += f", next attempt {_iso(d.next_at)}"
        if d.resent_at is not None:
            text += f", resent {_iso(d.resent_at)}"
        return text


@dataclass(frozen=True)
class WebhookSummary:
    """An order's webhook events and deliveries (from its WebhookDB entry) and their problems."""

    sequence: int
    deliveries: tuple[DeliveryView, ...]

    @property
    def problems(self) -> list[str]:
        return [v.problem for v in self.deliveries if v.problem]

    def verdict_suffix(self) -> str:
        """``; webhooks: 1 FAILED, 1 stuck`` for the verdict line ("" when all is well)."""
        judged = [v.delivery.state for v in self.deliveries if v.problem]
        failed = judged.count(DeliveryState.FAILED)
        stuck = len(judged) - failed
        parts = [f"{failed} FAILED"] * bool(failed) + [f"{stuck} stuck"] * bool(stuck)
        return f"; webhooks: {', '.join(parts)}" if parts else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "deliveries": [v.to_json() for v in self.deliveries],
            "problems": self.problems,
        }


def _public(delivery: Delivery) -> dict[str, Any]:
    """The delivery as the HTTP API shows it; a body that is not a JSON object (which WebhookDB
    should never hold) read as an empty one rather than failing the whole trace."""
    try:
        return delivery_to_public(delivery)
    except (ValueError, AttributeError):  # (json.JSONDecodeError; a body that is not an object)
        return delivery_to_public(replace(delivery, body="{}"))


def _event_of(delivery: Delivery) -> tuple[str | None, int | None]:
    """The event's type and sequence, read from the body it is sent with."""
    body = _public(delivery)
    kind, sequence = body.get("type"), body.get("sequence")
    return (
        kind if isinstance(kind, str) else None,
        sequence if isinstance(sequence, int) else None,
    )


def _problem(delivery: Delivery, last_at: float | None, now: float) -> str | None:
    if delivery.state is DeliveryState.FAILED:
        return (
            f"FAILED: {delivery.event_id} -> {delivery.endpoint_id} given up after "
            f"{delivery.attempt_count} attempt(s); POST .../webhooks/resend sends it again"
        )
    if delivery.state is not DeliveryState.PENDING:
        return None
    since = max(delivery.next_at, last_at or 0.0)
    if now - since <= STUCK_AFTER_S:
        return None
    tried = f"last attempt {_iso(last_at)}" if last_at is not None else "never attempted"
    return (
        f"STUCK: {delivery.event_id} -> {delivery.endpoint_id} PENDING, due "
        f"{_iso(delivery.next_at)}, {tried}, nothing for {int((now - since) // 60)} min "
        "(is the worker owning the order running?)"
    )


def summarize(
    stored: OrderWebhooks, attempts: Iterable[WebhookAttempt], now: float
) -> WebhookSummary:
    """Each delivery of ``stored`` with its problem at ``now`` (epoch seconds); ``attempts``
    are the order's records on ``orderflow.webhook-attempts``."""
    latest: dict[tuple[str, str], float] = {}
    for record in attempts:
        key = (record.event_id, record.endpoint_id)
        latest[key] = max(latest.get(key, record.attempt.at), record.attempt.at)
    views = []
    for delivery in stored.deliveries:
        known = [a.at for a in delivery.attempts]
        if delivery.key in latest:
            known.append(latest[delivery.key])
        last_at = max(known) if known else None
        kind, sequence = _event_of(delivery)
        views.append(
            DeliveryView(delivery, kind, sequence, last_at, _problem(delivery, last_at, now))
        )
    return WebhookSummary(stored.sequence, tuple(views))
