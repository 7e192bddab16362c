"""`trace` on synthetic histories: the full story in time order, table entries, ledger, verdict."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from orderflow.domain.events import PlaceOrder
from orderflow.domain.order import OrderStatus, place_order
from orderflow.domain.payment import (
    DECLINE_MESSAGES,
    PaymentRecord,
    PaymentStatus,
    idempotency_key_for,
)
from orderflow.tools.replay.model import ORDER_CHANGELOG, PAYMENT_CHANGELOG
from orderflow.tools.sandbox.gateway import SandboxGateway
from orderflow.topics import ORDER_COMMANDS, ORDER_CREATED, PAYMENT_COMPLETED, PAYMENT_FAILED
from orderflow.wire import decode_event, order_to_bytes, payment_to_bytes
from tests.harness import free_port
from tests.integration.replay.support import (
    AMOUNT,
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
