"""`trace` on synthetic histories: the full story in time order, table entries, webhook
deliveries, ledger, verdict."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from orderflow.domain.backoff import Backoff
from orderflow.domain.events import PlaceOrder
from orderflow.domain.order import OrderStatus, place_order
from orderflow.domain.payment import (
    DECLINE_MESSAGES,
    PaymentRecord,
    PaymentStatus,
    idempotency_key_for,
)
from orderflow.domain.webhooks import (
    Attempt,
    Endpoint,
    RetryPolicy,
    record_attempt,
    record_change,
    resend,
)
from orderflow.tools.replay.model import ORDER_CHANGELOG, PAYMENT_CHANGELOG
from orderflow.tools.sandbox.gateway import SandboxGateway
from orderflow.topics import (
    ORDER_COMMANDS,
    ORDER_CREATED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_CHANGELOG,
)
from orderflow.wire import decode_event, order_to_bytes, payment_to_bytes
from orderflow.wire.webhooks import (
    WebhookAttempt,
    WebhookResend,
    encode_attempts_record,
    webhooks_to_bytes,
)
from tests.harness import TEST_CLIENT, free_port
from tests.integration.replay.support import (
    AMOUNT,
    T_NOW,
    Out,
    cli,
    completed,
    created,
    dead_letter,
    failed,
    new_order_id,
    place,
    produce,
)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxGateway]:
    gateway = SandboxGateway(tmp_path / "ledger.db")
    await gateway.start("127.0.0.1", 0)
    try:
        yield gateway
    finally:
        await gateway.stop()


async def _charge(gateway: SandboxGateway, order_id: str, token: str, key: str) -> None:
    body = {
        "amount": AMOUNT,
        "currency": "EUR",
        "source": token,
        "metadata": {"order_id": order_id},
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway.url}/v1/charges", json=body, headers={"Idempotency-Key": key}
        ) as response,
    ):
        assert response.status in (200, 402), await response.text()


def _declined_history(order_id: str) -> list[Out]:
    """One declined order's records, 1 ms apart: time order, not topic order or tie-breaks."""
    base = int(time.time() * 1000)
    return [
        dataclasses.replace(out, timestamp_ms=base + i)
        for i, out in enumerate(_declined_records(order_id))
    ]


def _declined_records(order_id: str) -> list[Out]:
    key = order_id.encode()
    command = decode_event(place(order_id, "tok_chargeDeclined"))
    assert isinstance(command, PlaceOrder)
    pending = place_order(None, command).order
    decline = DECLINE_MESSAGES["card_declined"]
    attempt = PaymentRecord(
        order_id,
        idempotency_key_for(order_id),
        AMOUNT,
        "EUR",
        PaymentStatus.ATTEMPTING,
        attempts=1,
        payment_token="tok_chargeDeclined",
    )
    settled = dataclasses.replace(
        attempt, status=PaymentStatus.FAILED, decline=decline, charge_id=f"ch_{order_id}"
    )
    final = dataclasses.replace(
        pending, status=OrderStatus.PAYMENT_FAILED, decline=decline, charge_id=f"ch_{order_id}"
    )
    return [
        Out(ORDER_COMMANDS, key, place(order_id, "tok_chargeDeclined")),
        Out(ORDER_CHANGELOG, key, order_to_bytes(pending)),
        Out(ORDER_CREATED, key, created(order_id, "tok_chargeDeclined")),
        Out(PAYMENT_CHANGELOG, key, payment_to_bytes(attempt)),
        Out(PAYMENT_CHANGELOG, key, payment_to_bytes(settled)),
        Out(PAYMENT_FAILED, key, failed(order_id)),
        Out(ORDER_CHANGELOG, key, order_to_bytes(final)),
        # The same outcome again, and a contradicting one that the order service refused.
        Out(PAYMENT_FAILED, key, failed(order_id)),
        dead_letter(
            order_id,
            completed(order_id),
            PAYMENT_COMPLETED,
            "refused: order already PAYMENT_FAILED",
        ),
    ]


async def test_trace_shows_every_record_in_time_order_and_the_current_table_entries(
    replay_bootstrap: str, sandbox: SandboxGateway
) -> None:
    order_id, neighbour = new_order_id(), new_order_id()
    produced = await produce(
        replay_bootstrap,
        [*_declined_history(order_id), Out(ORDER_CREATED, neighbour.encode(), created(neighbour))],
    )
    mine = produced[:-1]
    closed = f"http://127.0.0.1:{free_port()}"

    unchecked = await cli(replay_bootstrap, "trace", order_id, "--gateway-url", closed)
    assert unchecked.code == 0, unchecked.err
    [trace] = unchecked.lines
    assert [(e["topic"], e["partition"], e["offset"]) for e in trace["events"]] == [
        (p.topic, p.partition, p.offset) for p in mine
    ]
    times = [e["timestamp"] for e in trace["events"]]
    assert times == sorted(times)
    assert trace["order"]["status"] == "PAYMENT_FAILED"
    assert trace["order"]["payment"]["decline_code"] == "card_declined"
    assert (trace["payment"]["status"], trace["payment"]["attempts"]) == ("FAILED", 1)
    assert trace["ledger"] is None
    assert trace["verdict"] == "PAYMENT_FAILED (card_declined) (ledger not checked)"
    assert any("unreachable" in n for n in trace["notes"])
    assert any("refused: order already PAYMENT_FAILED" in n for n in trace["notes"])

    await _charge(sandbox, order_id, "tok_chargeDeclined", idempotency_key_for(order_id))
    checked = await cli(
        replay_bootstrap, "trace", order_id, "--gateway-url", sandbox.url, "--format", "table"
    )
    assert checked.code == 0, checked.err
    lines = checked.out.splitlines()
    assert lines[-1] == "Verdict:   PAYMENT_FAILED (card_declined), not charged"
    assert "OrderDB:   PAYMENT_FAILED 2500 EUR" in checked.out
    rows = lines[lines.index(next(x for x in lines if x.startswith("TIME"))) + 1 :]
    assert len(rows[: rows.index("")]) == len(mine)
    assert not any(neighbour in line for line in lines)


async def test_trace_verdict_names_a_double_charge(
    replay_bootstrap: str, sandbox: SandboxGateway
) -> None:
    order_id = new_order_id()
    key = order_id.encode()
    command = decode_event(place(order_id))
    assert isinstance(command, PlaceOrder)
    pending = place_order(None, command).order
    paid = dataclasses.replace(pending, status=OrderStatus.PAID, charge_id="ch_x")
    await produce(replay_bootstrap, [Out(ORDER_CHANGELOG, key, order_to_bytes(paid))])
    # Two charges under two idempotency keys: what the per-order key exists to prevent.
    await _charge(sandbox, order_id, "tok_visa", "key-1")
    await _charge(sandbox, order_id, "tok_visa", "key-2")

    result = await cli(replay_bootstrap, "trace", order_id, "--gateway-url", sandbox.url)
    [trace] = result.lines
    assert trace["verdict"] == "INCONSISTENT: PAID and charged 2 times"
    assert trace["verdict_status"] == "inconsistent"
    assert len(trace["ledger"]) == 2


def _webhook_history(order_id: str, base_s: float) -> list[Out]:
    """A PAID order with two endpoints: we_a answers the second POST; we_b never does and is
    given up; a person resends the event; we_a answers again, we_b is never tried again (stuck
    once 10 minutes have passed); then a record nobody can read."""
    key = order_id.encode()
    command = decode_event(place(order_id))
    assert isinstance(command, PlaceOrder)
    paid = dataclasses.replace(
        place_order(None, command).order, status=OrderStatus.PAID, charge_id="ch_x"
    )
    policy = RetryPolicy(period=100.0, backoff=Backoff(base=10.0, cap=40.0))
    endpoints = [
        Endpoint(e, TEST_CLIENT, f"https://{e}.example.com/h", T_NOW) for e in ("we_a", "we_b")
    ]
    public = {"order_id": order_id, "status": "PAID"}
    made = record_change(None, order_id, public, "v1", endpoints, base_s, T_NOW)
    assert made is not None
    state, event_id = made, made.deliveries[0].event_id
    out = [Out(ORDER_CHANGELOG, key, order_to_bytes(paid), timestamp_ms=round(base_s * 1000))]

    def stored(at_s: float, outcome: bytes | None = None) -> None:
        at_ms = round(at_s * 1000)
        if outcome is not None:
            out.append(Out(WEBHOOK_ATTEMPTS, key, outcome, timestamp_ms=at_ms))
        out.append(Out(WEBHOOK_CHANGELOG, key, webhooks_to_bytes(state), timestamp_ms=at_ms + 1))

    def post(endpoint_id: str, number: int, after: float, status: int) -> None:
        nonlocal state
        attempt = Attempt(number, base_s + after, status, "", 15)
        counted = record_attempt(state, event_id, endpoint_id, attempt, policy)
        assert counted is not None
        state = counted
        record = WebhookAttempt(
            order_id=order_id, event_id=event_id, endpoint_id=endpoint_id, attempt=attempt
        )
        stored(base_s + after + 0.015, encode_attempts_record(record))

    stored(base_s)
    for endpoint_id, number, after, status in [
        ("we_a", 1, 0.1, 503),
        ("we_b", 1, 0.2, 500),
        ("we_a", 2, 10.1, 204),
        ("we_b", 2, 10.2, 500),
        ("we_b", 3, 30.2, 500),
        ("we_b", 4, 70.2, 500),
    ]:
        post(endpoint_id, number, after, status)
    asked = base_s + 600
    again = resend(state, event_id, asked)
    assert again is not None
    state = again
    request = WebhookResend(order_id=order_id, event_id=event_id, requested_at=asked)
    stored(asked, encode_attempts_record(request))
    post("we_a", 3, 600.5, 200)
    unreadable = b'{"type":"webhook.attempt"}'
    out.append(Out(WEBHOOK_ATTEMPTS, key, unreadable, timestamp_ms=round(asked * 1000) + 900))
    return out


async def test_trace_shows_webhook_attempts_and_judges_each_delivery(
    replay_bootstrap: str,
) -> None:
    order_id = new_order_id()
    history = _webhook_history(order_id, time.time() - 3600)
    produced = await produce(replay_bootstrap, history)

    result = await cli(replay_bootstrap, "trace", order_id)
    assert result.code == 0, result.err
    [trace] = result.lines
    assert [(e["topic"], e["offset"]) for e in trace["events"]] == [
        (p.topic, p.offset) for p in produced
    ]
    webhooks = trace["webhooks"]
    assert [(d["endpoint_id"], d["state"], d["attempt_count"]) for d in webhooks["deliveries"]] == [
        ("we_a", "DELIVERED", 3),
        ("we_b", "PENDING", 4),
    ]
    [stuck] = webhooks["problems"]
    assert stuck.startswith("STUCK: ") and "-> we_b PENDING" in stuck
    assert trace["verdict"] == "PAID, charge ch_x (ledger not checked); webhooks: 1 stuck"
    assert any(
        n.startswith(f"webhook attempts: the entry at {WEBHOOK_ATTEMPTS}:") for n in trace["notes"]
    )

    table = await cli(replay_bootstrap, "trace", order_id, "--format", "table")
    assert table.code == 0, table.err
    text = table.out
    assert "webhook attempt 2 evt_" in text and "-> we_a: HTTP 204 in 15 ms" in text
    assert "webhook resend of evt_" in text
    assert "undecodable webhook record (" in text
    assert "Webhooks:  1 event(s), 2 delivery(ies)" in text
    assert "problem:   STUCK: " in text


async def test_dry_run_skips_the_webhook_attempts(replay_bootstrap: str) -> None:
    order_id = new_order_id()
    await produce(replay_bootstrap, _webhook_history(order_id, time.time() - 3600))

    named = ["--since", "2h", "--order-id", order_id]
    default = await cli(replay_bootstrap, "replay", "--dry-run", *named)
    assert default.code == 0, default.err
    assert default.lines == []
    assert "1 order(s), 0 with a recorded outcome" in default.err  # (its OrderDB entry)
    asked = await cli(replay_bootstrap, "replay", "--dry-run", "--topic", WEBHOOK_ATTEMPTS, *named)
    assert asked.code == 0, asked.err
    assert "0 order(s)" in asked.err
