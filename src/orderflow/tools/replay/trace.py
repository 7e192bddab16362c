"""``trace ORDER_ID``: one order's whole story, from the topics alone, with a verdict.

Every record of the order on every orderflow topic (the input topics, the webhook attempts, the
dead letters and the table changelogs) in time order; the current OrderDB and PaymentDB entries,
read as the latest changelog value for the key (so no worker needs to run); each webhook
delivery's state from the latest WebhookDB value (``orderflow.tools.replay.webhooks``: FAILED and
stuck ones are problems); the gateway ledger's rows when a gateway URL is known; and a one-line
verdict (``orderflow.tools.replay.verdict``), followed by the webhook problems if any.

Only the partition the order id hashes to is read on each topic (see ``key_partition``);
``--all-partitions`` reads everything, to find records produced with a wrong key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from orderflow.domain.errors import DomainError
from orderflow.domain.order import Order
from orderflow.domain.payment import Decline, PaymentRecord
from orderflow.domain.responses import order_to_public
from orderflow.domain.tokens import mask_secrets, mask_text
from orderflow.tools.replay.dlq import DeadLetter
from orderflow.tools.replay.model import (
    ORDER_CHANGELOG,
    PAYMENT_CHANGELOG,
    Selection,
    TopicRecord,
    describe,
    record_to_json,
    time_order,
)
from orderflow.tools.replay.output import Progress
from orderflow.tools.replay.reader import read_records
from orderflow.tools.replay.verdict import Charge, LedgerRefund, Verdict, judge
from orderflow.tools.replay.webhooks import WebhookSummary, summarize
from orderflow.tools.replay.window import ms_to_rfc3339
from orderflow.topics import DEAD_LETTERS, WEBHOOK_ATTEMPTS, WEBHOOK_CHANGELOG, all_topic_names
from orderflow.wire import order_from_bytes, payment_from_bytes, payment_to_bytes
from orderflow.wire.webhooks import WebhookAttempt, decode_attempts_record, webhooks_from_bytes

__all__ = ["OrderTrace", "build_trace", "fetch_ledger", "trace_lines", "trace_order"]

LEDGER_TIMEOUT_S = 5.0


@dataclass
class OrderTrace:
    """Everything known about one order, and the verdict."""

    order_id: str
    events: list[TopicRecord]
    order: Order | None
    payment: PaymentRecord | None
    ledger: list[dict[str, Any]] | None  # None: the gateway was not asked
    verdict: Verdict
    notes: list[str] = field(default_factory=list)
    webhooks: WebhookSummary | None = None  # None: no WebhookDB entry

    def to_json(self) -> dict[str, Any]:
        payment = self.payment
        return {
            "order_id": self.order_id,
            "verdict": self.verdict.text,
            "verdict_status": self.verdict.status,
            "events": [record_to_json(r) for r in self.events],
            "order": None if self.order is None else order_to_public(self.order),
            "payment": None
            if payment is None
            else mask_secrets(orjson.loads(payment_to_bytes(payment))),
            "ledger": mask_secrets(self.ledger),  # a gateway's rows may name the token
            "notes": [mask_text(note) for note in self.notes],
            "webhooks": None if self.webhooks is None else self.webhooks.to_json(),
        }


def _latest(records: list[TopicRecord], topic: str, key: bytes) -> TopicRecord | None:
    found = None
    for record in records:
        same = record.topic == topic and record.key == key
        if same and (found is None or record.offset > found.offset):
            found = record
    return found


async def fetch_ledger(
    gateway_url: str | None,
    order_id: str,
    timeout: float = LEDGER_TIMEOUT_S,
    table: str = "ledger",
) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The gateway ledger's rows for the order (``table``: "ledger", the charges; "refunds"),
    or (None, why not)."""
    if not gateway_url:
        return None, "ledger: not checked (no --gateway-url and ORDERFLOW_GATEWAY_URL is unset)"
    url = f"{gateway_url.rstrip('/')}/_admin/{table}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, params={"order_id": order_id}) as response,
        ):
            if response.status != 200:
                return None, f"ledger: not checked ({url} answered HTTP {response.status})"
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return None, f"ledger: not checked ({gateway_url} unreachable: {exc!r})"
    rows = body.get("data") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        return None, f"ledger: not checked ({url} answered no 'data' list)"
    return rows, None


def _decode(record: TopicRecord | None, what: str, notes: list[str], decoder: Any) -> Any:
    if record is None or record.value is None:
        return None
    try:
        return decoder(record.value)
    except (ValueError, KeyError, TypeError, DomainError) as exc:
        notes.append(f"{what}: the entry at {record.at} does not decode ({exc!r})")
        return None


async def trace_order(
    bootstrap: str,
    order_id: str,
    *,
    gateway_url: str | None,
    all_partitions: bool = False,
    progress: Progress | None = None,
) -> OrderTrace:
    """Read the order's records and the ledger (concurrently) and judge."""
    key = order_id.encode()
    selection = Selection(
        order_ids=frozenset({order_id}), key_partitions_of=() if all_partitions else (key,)
    )
    skipped: list[str] = []

    async def read() -> list[TopicRecord]:
        records = read_records(
            bootstrap,
            selection,
            all_topic_names(),
            progress=progress,
            missing_ok=True,
            skipped=skipped,
        )
        async with contextlib.aclosing(records):
            return [r async for r in records]

    events, (ledger, ledger_note), (refund_rows, _) = await asyncio.gather(
        read(),
        fetch_ledger(gateway_url, order_id),
        fetch_ledger(gateway_url, order_id, table="refunds"),
    )
    notes = [f"topic not on the broker: {t}" for t in skipped]
    if ledger_note:
        notes.append(ledger_note)
    return build_trace(order_id, events, ledger, refund_rows, notes, now=time.time())


def build_trace(
    order_id: str,
    events: list[TopicRecord],
    ledger: list[dict[str, Any]] | None,
    refund_rows: list[dict[str, Any]] | None,
    notes: list[str],
    *,
    now: float,
) -> OrderTrace:
    """The trace of what was read (no I/O): table entries, webhook deliveries and the verdict
    as of ``now`` (epoch seconds; a PENDING delivery is stuck some time after it was due)."""
    key = order_id.encode()
    events = sorted(events, key=time_order)
    notes = list(notes)
    order = _decode(_latest(events, ORDER_CHANGELOG, key), "OrderDB", notes, order_from_bytes)
    payment = _decode(
        _latest(events, PAYMENT_CHANGELOG, key), "PaymentDB", notes, payment_from_bytes
    )
    charges = refunds = None
    if ledger is not None:
        try:
            charges = [Charge.from_json(row) for row in ledger]
            if refund_rows is not None:  # (a gateway without refunds: not judged on them)
                refunds = [LedgerRefund.from_json(row) for row in refund_rows]
        except (KeyError, TypeError, ValueError) as exc:
            notes.append(f"ledger: rows not understood ({exc!r})")
    dead = [DeadLetter(r) for r in events if r.topic == DEAD_LETTERS]
    for letter in dead:
        notes.append(f"dead letter {letter.address} (from {letter.source}): {letter.reason}")
    verdict = judge(
        order, payment, charges, events=len(events), dead_letters=len(dead), refunds=refunds
    )
    stored = _decode(
        _latest(events, WEBHOOK_CHANGELOG, key), "WebhookDB", notes, webhooks_from_bytes
    )
    webhooks = None
    if stored is not None:
        webhooks = summarize(stored, _attempts(events, notes), now)
        verdict = Verdict(verdict.status, verdict.text + webhooks.verdict_suffix())
    return OrderTrace(order_id, events, order, payment, ledger, verdict, notes, webhooks)


def _attempts(events: list[TopicRecord], notes: list[str]) -> list[WebhookAttempt]:
    """The POST outcomes among the order's records (resend requests left out); a record that
    does not decode is noted, not fatal."""
    found = []
    for record in events:
        if record.topic != WEBHOOK_ATTEMPTS:
            continue
        decoded = _decode(record, "webhook attempts", notes, decode_attempts_record)
        if isinstance(decoded, WebhookAttempt):
            found.append(decoded)
    return found


def _charge_text(charge_id: str | None, decline: Decline | None) -> str:
    text = f" charge {charge_id}" if charge_id else ""
    return text + (f" decline {decline.code}" if decline else "")


def trace_lines(trace: OrderTrace) -> list[str]:
    """The trace as a readable report (``--format table``)."""
    lines = [f"order {trace.order_id}", ""]
    header = f"{'TIME':<24}  {'TOPIC':<29}  {'P':>2}  {'OFFSET':>6}  WHAT"
    lines.append(header)
    for r in trace.events:
        time_text = ms_to_rfc3339(r.timestamp)
        lines.append(
            f"{time_text:<24}  {r.topic:<29}  {r.partition:>2}  {r.offset:>6}  {describe(r)}"
        )
    if not trace.events:
        lines.append("(no records)")
    lines.append("")
    order = trace.order
    if order is None:
        lines.append("OrderDB:   (no entry)")
    else:
        extra = _charge_text(order.charge_id, order.decline)
        lines.append(
            f"OrderDB:   {order.status} {order.amount} {order.currency}{extra}, "
            f"updated {order.updated_at}"
        )
    payment = trace.payment
    if payment is None:
        lines.append("PaymentDB: (no entry)")
    else:
        extra = _charge_text(payment.charge_id, payment.decline)
        lines.append(f"PaymentDB: {payment.status} after {payment.attempts} attempt(s){extra}")
    if trace.ledger is None:
        lines.append("Ledger:    (not checked)")
    else:
        lines.append(f"Ledger:    {len(trace.ledger)} row(s)")
        for row in trace.ledger:
            code = f" ({row.get('failure_code')})" if row.get("failure_code") else ""
            lines.append(
                f"           {row.get('id')} {row.get('status')}{code} "
                f"{row.get('amount')} {row.get('currency')}"
            )
    lines.extend(_webhook_lines(trace.webhooks))
    for text in trace.notes:
        lines.append(f"note:      {mask_text(text)}")
    lines.append(f"Verdict:   {trace.verdict.text}")
    return lines


def _webhook_lines(webhooks: WebhookSummary | None) -> list[str]:
    if webhooks is None:  # the order's client has no endpoints (or its entry is a note)
        return []
    lines = [f"Webhooks:  {webhooks.sequence} event(s), {len(webhooks.deliveries)} delivery(ies)"]
    lines.extend(f"           {mask_text(view.line())}" for view in webhooks.deliveries)
    lines.extend(f"problem:   {mask_text(text)}" for text in webhooks.problems)
    return lines
