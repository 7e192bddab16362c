"""`trace` shows an order's webhook deliveries: each attempt and resend in the timeline, each
delivery's final state from WebhookDB, and FAILED or stuck deliveries as problems.

Records are built in memory (``build_trace`` does no I/O); WebhookDB's values are made by the
domain's own functions, as the order service makes them.
"""

from __future__ import annotations

import dataclasses

import orjson

from orderflow.domain.backoff import Backoff
from orderflow.domain.order import OrderStatus
from orderflow.domain.webhooks import (
    Attempt,
    Endpoint,
    OrderWebhooks,
    RetryPolicy,
    record_attempt,
    record_change,
    resend,
)
from orderflow.tools.replay.dryrun import dry_run
from orderflow.tools.replay.model import ORDER_CHANGELOG, TopicRecord, describe
from orderflow.tools.replay.trace import OrderTrace, build_trace, trace_lines
from orderflow.tools.replay.webhooks import STUCK_AFTER_S
from orderflow.topics import WEBHOOK_ATTEMPTS, WEBHOOK_CHANGELOG
from orderflow.wire import order_to_bytes
from orderflow.wire.webhooks import (
    WebhookAttempt,
    WebhookResend,
    encode_attempts_record,
    webhooks_to_bytes,
)
from tests.unit.builders import pending_order
from tests.unit.replay.test_dryrun import history

ORDER_ID = "ord-1"
T = 1_764_547_200.0  # 2025-12-01T00:00:00Z: when the order changed (epoch seconds)
ENDPOINT = Endpoint("we_1", "client-a", "https://hooks.example.com/x", "2025-12-01T00:00:00.000Z")
# 10 s, 20 s, 40 s between attempts, none later than 100 s after the change (or a resend).
POLICY = RetryPolicy(period=100.0, backoff=Backoff(base=10.0, cap=40.0))
PAID = dataclasses.replace(pending_order(), status=OrderStatus.PAID, charge_id="ch_1")


class Story:
    """One order's records, in the order they happen: the OrderDB and WebhookDB changelogs, and
    the records of ``orderflow.webhook-attempts``, each at its own time."""

    def __init__(self) -> None:
        self.records: list[TopicRecord] = []
        self.webhooks: OrderWebhooks | None = None

    def add(self, topic: str, value: bytes, at: float) -> None:
        ms = round(at * 1000)
        offset = sum(1 for r in self.records if r.topic == topic)
        self.records.append(TopicRecord(topic, 0, offset, ms, ORDER_ID.encode(), value))

    def store(self, record: OrderWebhooks, at: float) -> None:
        self.webhooks = record
        self.add(WEBHOOK_CHANGELOG, webhooks_to_bytes(record), at)

    def paid(self, at: float = T) -> Story:
        """The order is PAID: OrderDB and, in the same batch, its event for the endpoint."""
        self.add(ORDER_CHANGELOG, order_to_bytes(PAID), at)
        public = {"order_id": ORDER_ID, "status": "PAID"}
        made = record_change(self.webhooks, ORDER_ID, public, "v1", [ENDPOINT], at, "t")
        assert made is not None
        self.store(made, at)
        return self

    def attempt(self, at: float, status: int, error: str = "", duration_ms: int = 12) -> Story:
        """The next POST of the (only) delivery: its record, then WebhookDB counting it."""
        assert self.webhooks is not None
        (delivery,) = self.webhooks.deliveries
        attempt = Attempt(delivery.attempt_count + 1, at, status, error, duration_ms)
        record = WebhookAttempt(
            order_id=ORDER_ID,
            event_id=delivery.event_id,
            endpoint_id=delivery.endpoint_id,
            attempt=attempt,
        )
        done = at + duration_ms / 1000
        self.add(WEBHOOK_ATTEMPTS, encode_attempts_record(record), done)
        counted = record_attempt(
            self.webhooks, delivery.event_id, delivery.endpoint_id, attempt, POLICY
        )
        assert counted is not None
        self.store(counted, done + 0.01)
        return self

    def resend(self, at: float) -> Story:
        assert self.webhooks is not None
        asked = WebhookResend(order_id=ORDER_ID, requested_at=at, client_id="client-a")
        self.add(WEBHOOK_ATTEMPTS, encode_attempts_record(asked), at)
        again = resend(self.webhooks, None, at)
        assert again is not None
        self.store(again, at + 0.01)
        return self

    def trace(self, now: float) -> OrderTrace:
        return build_trace(ORDER_ID, list(reversed(self.records)), None, None, [], now=now)


def _timeline(trace: OrderTrace) -> list[str]:
    """The WHAT column of the webhook attempts' rows, in the timeline's order."""
    return [describe(r) for r in trace.events if r.topic == WEBHOOK_ATTEMPTS]


def _problems(story: Story, now: float) -> list[str]:
    webhooks = story.trace(now).webhooks
    assert webhooks is not None
    return webhooks.problems


def _summary(trace: OrderTrace) -> list[str]:
    lines = trace_lines(trace)
    return lines[next(i for i, x in enumerate(lines) if x.startswith("Webhooks:")) :]


def test_a_delivery_that_succeeded_after_retries_shows_each_attempt_and_no_problem() -> None:
    story = Story().paid().attempt(T + 0.1, 503).attempt(T + 10.2, 0, "TimeoutError: ")
    trace = story.attempt(T + 30.3, 204, duration_ms=7).trace(now=T + 3600)

    assert story.webhooks is not None
    event_id = story.webhooks.deliveries[0].event_id
    assert _timeline(trace) == [
        f"webhook attempt 1 {event_id} -> we_1: HTTP 503 in 12 ms, sent 2025-12-01T00:00:00.100Z",
        f"webhook attempt 2 {event_id} -> we_1: no answer (TimeoutError: ) in 12 ms, "
        "sent 2025-12-01T00:00:10.200Z",
        f"webhook attempt 3 {event_id} -> we_1: HTTP 204 in 7 ms, sent 2025-12-01T00:00:30.300Z",
    ]
    times = [r.timestamp for r in trace.events]
    assert times == sorted(times)
    changelog = [describe(r) for r in trace.events if r.topic == WEBHOOK_CHANGELOG]
    assert (changelog[0], changelog[-1]) == (
        "WebhookDB <- 1 event(s), 1 delivery(ies): 1 PENDING, 0 attempt(s)",
        "WebhookDB <- 1 event(s), 1 delivery(ies): 1 DELIVERED, 3 attempt(s)",
    )
    assert _summary(trace)[:2] == [
        "Webhooks:  1 event(s), 1 delivery(ies)",
        f"           #1 order.paid {event_id} -> we_1 (https://hooks.example.com/x): "
        "DELIVERED after 3 attempt(s), last HTTP 204",
    ]
    assert trace.webhooks is not None and trace.webhooks.problems == []
    assert trace.verdict.text == "PAID, charge ch_1 (ledger not checked)"
    assert trace_lines(trace)[-1] == "Verdict:   PAID, charge ch_1 (ledger not checked)"


def test_a_delivery_given_up_is_a_problem_named_in_the_verdict() -> None:
    story = Story().paid()
    for at in (T, T + 10, T + 30, T + 70):
        story.attempt(at, 500)
    trace = story.trace(now=T + 200)

    summary = _summary(trace)
    assert "FAILED after 4 attempt(s), last HTTP 500" in summary[1]
    [problem] = [line for line in summary if line.startswith("problem:")]
    assert problem.startswith("problem:   FAILED: evt_")
    assert "given up after 4 attempt(s); POST .../webhooks/resend" in problem
    assert trace.verdict.text == "PAID, charge ch_1 (ledger not checked); webhooks: 1 FAILED"
    assert trace.verdict.status == "unchecked"  # the order's own status is unchanged


def test_a_pending_delivery_nobody_tried_since_it_was_due_is_stuck() -> None:
    story = Story().paid().attempt(T, 503)  # the next attempt is due 10 s later
    due = T + 10.0

    assert _problems(story, due + 30) == []
    assert _problems(story, due + STUCK_AFTER_S) == []
    trace = story.trace(now=due + 3600)

    assert (
        "PENDING after 1 attempt(s), last HTTP 503, next attempt 2025-12-01T00:00:10.000Z"
        in (_summary(trace)[1])
    )
    assert trace.webhooks is not None
    [problem] = trace.webhooks.problems
    assert problem.startswith("STUCK: evt_")
    assert "PENDING, due 2025-12-01T00:00:10.000Z, last attempt 2025-12-01T00:00:00.000Z" in problem
    assert "nothing for 60 min" in problem
    assert trace.verdict.text.endswith("; webhooks: 1 stuck")


def test_a_long_backoff_is_not_stuck_and_an_attempt_not_yet_counted_is_activity() -> None:
    story = Story().paid().attempt(T, 503)
    pending = story.webhooks
    assert pending is not None
    later = dataclasses.replace(pending.deliveries[0], next_at=T + 3000)  # backoff: an hour
    story.store(dataclasses.replace(pending, deliveries=(later,)), T + 1)
    assert _problems(story, T + 3000 + 60) == []

    # Attempt 2's record is on the topic but the order service has not counted it yet (it
    # lags): recent activity, not a stuck delivery.
    story.attempt(T + 3001, 503)
    story.records.pop()
    assert _problems(story, T + 3001 + 60) == []
    assert _problems(story, T + 3001 + STUCK_AFTER_S + 1)


def test_a_resend_is_in_the_timeline_and_makes_the_failed_delivery_pending_again() -> None:
    story = Story().paid()
    for at in (T, T + 10, T + 30, T + 70):
        story.attempt(at, 500)
    trace = story.resend(T + 500).attempt(T + 500.5, 200).trace(now=T + 600)

    timeline = _timeline(trace)
    assert timeline[4] == (
        "webhook resend of every event, asked 2025-12-01T00:08:20.000Z by client-a"
    )
    assert timeline[5].startswith("webhook attempt 5 ")
    assert (
        "DELIVERED after 5 attempt(s), last HTTP 200, resent 2025-12-01T00:08:20.000Z"
        in (_summary(trace)[1])
    )
    assert trace.webhooks is not None and trace.webhooks.problems == []

    before = Story().paid()
    for at in (T, T + 10, T + 30, T + 70):
        before.attempt(at, 500)
    waiting = before.resend(T + 500).trace(now=T + 501)
    assert (
        "PENDING after 4 attempt(s), last HTTP 500, next attempt 2025-12-01T00:08:20.000Z"
        in (_summary(waiting)[1])
    )


def test_an_undecodable_attempts_record_is_a_note_not_a_crash() -> None:
    story = Story().paid().attempt(T, 204)
    story.add(WEBHOOK_ATTEMPTS, b'{"type":"webhook.attempt","order_id":"ord-1"}', T + 1)
    story.add(WEBHOOK_ATTEMPTS, b"\xff not json", T + 2)
    trace = story.trace(now=T + 60)

    assert _timeline(trace)[1:] == [
        "undecodable webhook record (event_id: missing)",
        "undecodable webhook record (value: not JSON (JSON is malformed: invalid character "
        "(byte 0)))",
    ]
    bad = [n for n in trace.notes if n.startswith("webhook attempts: the entry at")]
    assert [n.split(" ")[5] for n in bad] == [
        f"{WEBHOOK_ATTEMPTS}:0:1",
        f"{WEBHOOK_ATTEMPTS}:0:2",
    ]
    assert "DELIVERED after 1 attempt(s)" in _summary(trace)[1]
    assert trace.webhooks is not None and trace.webhooks.problems == []


def test_an_undecodable_webhookdb_value_is_a_note_and_no_summary() -> None:
    story = Story().paid()
    story.add(WEBHOOK_CHANGELOG, b'{"schema_version":"9.0","value":{}}', T + 1)
    trace = story.trace(now=T + 60)

    assert trace.webhooks is None
    assert any(
        n.startswith(f"WebhookDB: the entry at {WEBHOOK_CHANGELOG}:0:1") for n in trace.notes
    )
    assert not any(line.startswith("Webhooks:") for line in trace_lines(trace))
    assert describe(trace.events[-1]) == "undecodable WebhookDB value (value.order_id: missing)"


def test_an_order_without_webhooks_shows_no_webhook_block() -> None:
    trace = build_trace(ORDER_ID, [], None, None, [], now=T)

    assert trace.webhooks is None
    assert trace.to_json()["webhooks"] is None
    assert not any(line.startswith("Webhooks:") for line in trace_lines(trace))


def test_the_json_trace_lists_each_delivery_with_its_attempts_and_problem() -> None:
    story = Story().paid()
    for at in (T, T + 10, T + 30, T + 70):
        story.attempt(at, 500)
    data = orjson.loads(orjson.dumps(story.trace(now=T + 200).to_json()))

    webhooks = data["webhooks"]
    assert webhooks["sequence"] == 1
    [delivery] = webhooks["deliveries"]
    assert {k: delivery[k] for k in ("type", "sequence", "endpoint_id", "state")} == {
        "type": "order.paid",
        "sequence": 1,
        "endpoint_id": "we_1",
        "state": "FAILED",
    }
    assert (delivery["attempt_count"], delivery["next_attempt_at"]) == (4, None)
    assert [a["status"] for a in delivery["attempts"]] == [500, 500, 500, 500]
    assert delivery["problem"] == webhooks["problems"][0]
    assert delivery["problem"].startswith("FAILED: ")
    attempts = [e for e in data["events"] if e["topic"] == WEBHOOK_ATTEMPTS]
    assert attempts[0]["value"]["attempt"]["status"] == 500


def test_dry_run_ignores_the_webhook_topics() -> None:
    webhooks = Story().paid().attempt(T, 503).resend(T + 5)
    webhooks.add(WEBHOOK_ATTEMPTS, b"\xff not json", T + 6)
    webhook_records = [r for r in webhooks.records if r.topic != ORDER_CHANGELOG]

    report = dry_run([*history(), *webhook_records])
    assert (report.orders, report.compared, report.findings) == (1, 1, [])
    assert dry_run(webhook_records).orders == 0
