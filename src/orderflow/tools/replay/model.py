"""What the commands read and how they select it: ``TopicRecord``, ``Selection`` and helpers.

A ``TopicRecord`` is one Kafka record exactly as stored (key, value and header bytes untouched),
whether it came from the broker or from a capture file, so every command works on either source.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from orderflow.domain.tokens import mask_secrets, mask_text, mask_token
from orderflow.tools.replay.errors import SelectionError
from orderflow.tools.replay.webhooks import describe_attempts_value, describe_webhooks_value
from orderflow.tools.replay.window import TimeWindow, ms_to_rfc3339
from orderflow.topics import (
    DEAD_LETTERS,
    ORDER_CANCELLED,
    ORDER_CHANGELOG,
    ORDER_COMMANDS,
    ORDER_CREATED,
    PAYMENT_CHANGELOG,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_RECONCILE,
    PAYMENT_REFUNDED,
    REFUND_FAILED,
    REFUND_REQUESTED,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_CHANGELOG,
)
from orderflow.wire.dead_letters import (
    DLQ_HEADER_OFFSET,
    DLQ_HEADER_PARTITION,
    DLQ_HEADER_REASON,
    DLQ_HEADER_TOPIC,
)

__all__ = [
    "ORDER_CHANGELOG",
    "ORIGIN_HEADER_OFFSET",
    "ORIGIN_HEADER_PARTITION",
    "ORIGIN_HEADER_TOPIC",
    "PAYMENT_CHANGELOG",
    "REDRIVEN_FROM_HEADER",
    "Selection",
    "TopicRecord",
    "describe",
    "event_type_of",
    "json_value",
    "key_partition",
    "key_text",
    "record_to_json",
    "time_order",
]

# `replay --to-topic` stamps every copy with where it was read from.
ORIGIN_HEADER_TOPIC = "orderflow-origin-topic"
ORIGIN_HEADER_PARTITION = "orderflow-origin-partition"
ORIGIN_HEADER_OFFSET = "orderflow-origin-offset"
# `dlq redrive` stamps every copy with "dead-letters:<partition>:<offset>", which is also how a
# second redrive recognises a dead letter that was redriven already.
REDRIVEN_FROM_HEADER = "orderflow-redriven-from"

_NOT_JSON = object()

# Within one millisecond, the order in which the pipeline writes these topics.
_RANK = {
    ORDER_COMMANDS: 0,
    ORDER_CHANGELOG: 1,
    ORDER_CREATED: 2,
    PAYMENT_CHANGELOG: 3,
    PAYMENT_RECONCILE: 4,
    PAYMENT_COMPLETED: 5,
    PAYMENT_FAILED: 5,
    ORDER_CANCELLED: 2,
    REFUND_REQUESTED: 2,
    PAYMENT_REFUNDED: 5,
    REFUND_FAILED: 5,
    DEAD_LETTERS: 6,
    # WebhookDB is written in the same batch as OrderDB; an attempt's outcome after the POST.
    WEBHOOK_CHANGELOG: 1,
    WEBHOOK_ATTEMPTS: 7,
}


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """One Kafka record as stored: the bytes are never re-encoded."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # milliseconds since the epoch, as the broker returned it
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()  # aiokafka: None for a null value

    @property
    def at(self) -> str:
        """``topic:partition:offset``, the record's address."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (Kafka allows repeats), or None."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    def header_text(self, name: str) -> str | None:
        raw = self.header(name)
        return None if raw is None else raw.decode("utf-8", "replace")


def time_order(record: TopicRecord) -> tuple[int, int, str, int]:
    """Sort key putting one order's records from several topics in the order they happened.

    Offsets order a partition; across topics only timestamps do (clocks of one worker), with
    the pipeline's own order breaking ties inside a millisecond.
    """
    return (record.timestamp, _RANK.get(record.topic, 9), record.topic, record.offset)


def json_value(record: TopicRecord) -> Any:
    """The value parsed as JSON, or ``None`` when it is empty or not JSON."""
    if not record.value:
        return None
    try:
        return orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None


def key_text(record: TopicRecord) -> str | None:
    if record.key is None:
        return None
    return record.key.decode("utf-8", "replace")


def event_type_of(record: TopicRecord, value: Any = _NOT_JSON) -> str | None:
    """The value's ``event_type`` field (events only; changelogs and dead letters have none)."""
    data = json_value(record) if value is _NOT_JSON else value
    if isinstance(data, dict) and isinstance(data.get("event_type"), str):
        return str(data["event_type"])
    return None


def key_partition(key: bytes, partitions: int) -> int:
    """The partition the Java/aiokafka default partitioner (murmur2) gives ``key``.

    Every orderflow producer keys by order id with that partitioner, and Faust writes table
    changelogs to the partition of the event being processed, so one order lives on one
    partition number of every topic: a trace reads 1/N of the data.
    """
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def _belongs_to(record: TopicRecord, order_ids: frozenset[str], needles: tuple[bytes, ...]) -> bool:
    if record.key is not None and record.key.decode("utf-8", "replace") in order_ids:
        return True
    # A malformed event may carry another key than its order id (that is why it was
    # dead-lettered): look inside the value, but parse only values that mention the id.
    if record.value and any(n in record.value for n in needles):
        data = json_value(record)
        return isinstance(data, dict) and data.get("order_id") in order_ids
    return False


@dataclass(frozen=True)
class Selection:
    """Which records to read. Empty fields select everything.

    ``topics`` empty means each source's default (the input topics on the broker, everything in a
    capture file). Offsets are inclusive on both ends and need ``partitions``; the time window is
    ``[since, until)``.
    """

    topics: tuple[str, ...] = ()
    partitions: tuple[int, ...] = ()
    from_offset: int | None = None
    to_offset: int | None = None
    window: TimeWindow = field(default_factory=TimeWindow)
    order_ids: frozenset[str] = frozenset()
    event_types: frozenset[str] = frozenset()
    # Only the partitions these keys hash to (per topic): how trace avoids reading everything.
    key_partitions_of: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if (self.from_offset is not None or self.to_offset is not None) and not self.partitions:
            raise SelectionError("--from-offset/--to-offset need --partition")
        if min(self.from_offset or 0, self.to_offset or 0) < 0:
            raise SelectionError("offsets must be >= 0")
        if (
            self.from_offset is not None
            and self.to_offset is not None
            and self.from_offset > self.to_offset
        ):
            raise SelectionError("--from-offset must not be greater than --to-offset")

    @property
    def needles(self) -> tuple[bytes, ...]:
        return tuple(f'"{order_id}"'.encode() for order_id in sorted(self.order_ids))

    def matches(self, record: TopicRecord) -> bool:
        """Every filter, applied to one record (the reader also applies the cheap ones early)."""
        if self.topics and record.topic not in self.topics:
            return False
        if self.partitions and record.partition not in self.partitions:
            return False
        if self.from_offset is not None and record.offset < self.from_offset:
            return False
        if self.to_offset is not None and record.offset > self.to_offset:
            return False
        if not self.window.contains(record.timestamp):
            return False
        if self.order_ids and not _belongs_to(record, self.order_ids, self.needles):
            return False
        return not self.event_types or event_type_of(record) in self.event_types


def _text_or_b64(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def record_to_json(record: TopicRecord) -> dict[str, Any]:
    """The record for JSON output: JSON values inline, other bytes as text or base64."""
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "time": ms_to_rfc3339(record.timestamp),
        "key": None if record.key is None else _text_or_b64(record.key),
    }
    value = json_value(record)
    out["event_type"] = event_type_of(record, value)
    # Shown to people: every payment token masked (the bytes on the topic stay as they are).
    # aiokafka gives None for a header sent with a null value.
    out["headers"] = {
        k: None if v is None else mask_text(_text_or_b64(v)) for k, v in record.headers
    }
    if value is None and record.value:
        out["value"] = None
        out["value_raw"] = mask_text(_text_or_b64(record.value))  # not JSON: shown, not parsed
    else:
        out["value"] = mask_secrets(value)
    return out


def _describe_order(data: dict[str, Any]) -> str:
    status = data.get("status", "?")
    if status == "PAID":
        return f"OrderDB <- PAID charge={data.get('charge_id')}"
    if status == "PAYMENT_FAILED":
        decline = data.get("decline") or {}
        return f"OrderDB <- PAYMENT_FAILED ({decline.get('code')})"
    refunds = data.get("refunds") or []
    money = f"captured {data.get('captured', 0)} refunded {data.get('refunded', 0)}"
    if status == "CANCELLED":
        reason = (data.get("cancellation") or {}).get("reason") or "no reason"
        taken = f", {money}" if data.get("captured") else ""
        return f"OrderDB <- CANCELLED ({mask_text(str(reason))}){taken}"
    if status in ("PARTIALLY_REFUNDED", "REFUNDED") or refunds:
        open_ = sum(1 for r in refunds if r.get("state") == "REQUESTED")
        return f"OrderDB <- {status} {money}, {len(refunds)} refund(s), {open_} in progress"
    return f"OrderDB <- {status} {data.get('amount')} {data.get('currency')}"


def _describe_payment(data: dict[str, Any]) -> str:
    text = f"PaymentDB <- {data.get('status')} attempt {data.get('attempts')}"
    if data.get("charge_id"):
        text += f" charge={data['charge_id']}"
    if data.get("decline"):
        text += f" ({data['decline'].get('code')})"
    if data.get("cancelled"):
        text += " cancelled"
    refunds = data.get("refunds") or []
    if refunds:
        states = ", ".join(f"{r.get('amount')} {r.get('status')}" for r in refunds)
        text += f"; refunds: {states}"
    return text


def _describe_event(event_type: str, data: dict[str, Any]) -> str:
    money = f"{data.get('amount')} {data.get('currency')}"
    token = (data.get("payment") or {}).get("token")
    token = mask_token(token) if isinstance(token, str) else token
    if event_type == "order.place":
        return f"order.place {len(data.get('items') or [])} item(s) token={token}"
    if event_type == "order.created":
        return f"order.created {money} token={token}"
    if event_type == "payment.completed":
        return f"payment.completed {money} charge={data.get('charge_id')}"
    if event_type == "payment.failed":
        return f"payment.failed ({(data.get('reason') or {}).get('code')}) {money}"
    refund = f"{data.get('refund_id')} {money}"
    reason = mask_text(str(data.get("reason") or ""))
    described = {
        "order.cancel": f"order.cancel ({reason or 'no reason'})",
        "order.cancelled": f"order.cancelled {money} ({reason or 'no reason'})",
        "order.refund": f"order.refund {refund}",
        "refund.requested": f"refund.requested {refund}",
        "payment.refunded": f"payment.refunded {refund} refund={data.get('gateway_refund_id')}"
        + (" (compensation)" if data.get("compensation") else ""),
        "refund.failed": f"refund.failed {refund} ({(data.get('reason') or {}).get('code')})"
        if isinstance(data.get("reason"), dict)
        else f"refund.failed {refund}",
    }
    return described.get(event_type, event_type)


def describe(record: TopicRecord) -> str:
    """One line saying what the record is, for tables."""
    if record.topic == DEAD_LETTERS:
        source = ":".join(
            record.header_text(h) or "?"
            for h in (DLQ_HEADER_TOPIC, DLQ_HEADER_PARTITION, DLQ_HEADER_OFFSET)
        )
        reason = mask_text(str(record.header_text(DLQ_HEADER_REASON)))
        return f"dead letter of {source}: {reason}"
    if record.value is None:
        return "(tombstone)"
    # Webhook values are read with their own schema (an attempt's outcome, a delivery's state).
    if record.topic == WEBHOOK_ATTEMPTS:
        return describe_attempts_value(record.value)
    if record.topic == WEBHOOK_CHANGELOG:
        return describe_webhooks_value(record.value)
    data = json_value(record)
    if not isinstance(data, dict):
        return mask_text(f"undecodable value {record.value[:40]!r}")
    if record.topic == ORDER_CHANGELOG:
        return _describe_order(data)
    if record.topic == PAYMENT_CHANGELOG:
        return _describe_payment(data)
    event_type = event_type_of(record, data)
    if event_type is not None:
        return _describe_event(event_type, data)
    if set(data) == {"order_id"}:
        return "reconcile request"
    return f"{len(record.value)} bytes of JSON"
