"""Refunds: the real sandbox gateway (temp SQLite ledger) driven by the real HTTP client.

No Kafka. What reached the server is counted from its request log and ledger, not only from
what the client said.
"""

from __future__ import annotations

import asyncio

import pytest

from orderflow.domain.payment import DECLINE_MESSAGES, Approved
from orderflow.domain.refund import (
    GatewayRefund,
    RefundDeclined,
    Refunded,
    refund_id_for,
    refund_idempotency_key,
)
from orderflow.gateway.base import RefundRequest, TransientGatewayError
from orderflow.tools.sandbox.gateway import SandboxGateway
from tests.integration.gateway.sandbox_helpers import Admin, MakeClient, charge_request


def refund_request(order_id: str, charge_id: str, amount: int, key: str = "k1") -> RefundRequest:
    refund_id = refund_id_for(order_id, key)
    return RefundRequest(refund_idempotency_key(refund_id), refund_id, order_id, charge_id, amount)


async def charged(make_client: MakeClient, order_id: str, amount: int = 1999) -> str:
    outcome = await make_client().charge(charge_request(order_id, amount=amount))
    assert isinstance(outcome, Approved)
    return outcome.charge_id


async def test_partial_refunds_up_to_the_charge_then_refused(
    make_client: MakeClient, admin: Admin
) -> None:
    charge_id = await charged(make_client, "o-partial")
    client = make_client()

    first = await client.refund(refund_request("o-partial", charge_id, 1000, "k1"))
    second = await client.refund(refund_request("o-partial", charge_id, 999, "k2"))
    third = await client.refund(refund_request("o-partial", charge_id, 1, "k3"))

    assert isinstance(first, Refunded) and isinstance(second, Refunded)
    assert first.gateway_refund_id.startswith("re_") and first != second
    assert third == RefundDeclined(DECLINE_MESSAGES["charge_already_refunded"])
    rows = await admin.refunds("o-partial")
    assert [(r["amount"], r["status"], r["failure_code"]) for r in rows] == [
        (1000, "succeeded", None),
        (999, "succeeded", None),
        (1, "failed", "charge_already_refunded"),
    ]
    assert {r["currency"] for r in rows} == {"usd"}  # the charge's own currency
    stats = await admin.stats()
    assert stats["refunded_per_order"] == {"o-partial": 1999}


async def test_a_refund_beyond_what_is_left_is_refused_and_gives_nothing_back(
    make_client: MakeClient, admin: Admin
) -> None:
    charge_id = await charged(make_client, "o-over")
    client = make_client()
    await client.refund(refund_request("o-over", charge_id, 1500, "k1"))

    outcome = await client.refund(refund_request("o-over", charge_id, 500, "k2"))

    assert outcome == RefundDeclined(DECLINE_MESSAGES["amount_too_large"])
    assert (await admin.stats())["refunded_per_order"] == {"o-over": 1500}


async def test_a_refund_of_an_unknown_or_declined_charge_is_refused(
    make_client: MakeClient,
) -> None:
    declined = await make_client().charge(charge_request("o-declined", "tok_chargeDeclined"))
    client = make_client()

    unknown = await client.refund(refund_request("o-x", "ch_nope", 10))
    of_declined = await client.refund(refund_request("o-declined", declined.charge_id or "", 10))

    assert unknown == of_declined == RefundDeclined(DECLINE_MESSAGES["charge_not_found"])


async def test_the_same_key_replays_the_first_answer_and_refunds_once(
    make_client: MakeClient, admin: Admin, sandbox: SandboxGateway
) -> None:
    charge_id = await charged(make_client, "o-replay")
    client = make_client()
    request = refund_request("o-replay", charge_id, 700)

    answers = await asyncio.gather(*(client.refund(request) for _ in range(5)))

    assert len(set(answers)) == 1
    assert [r["amount"] for r in await admin.refunds("o-replay")] == [700]


async def test_the_same_key_with_another_amount_is_refused_and_nothing_stored(
    make_client: MakeClient, admin: Admin
) -> None:
    charge_id = await charged(make_client, "o-reuse")
    client = make_client()
    await client.refund(refund_request("o-reuse", charge_id, 700))

    with pytest.raises(Exception, match="HTTP 400"):
        await client.refund(refund_request("o-reuse", charge_id, 701))

    assert [r["amount"] for r in await admin.refunds("o-reuse")] == [700]


async def test_a_dropped_refund_answer_is_recovered_with_the_same_key(
    make_client: MakeClient, admin: Admin
) -> None:
    charge_id = await charged(make_client, "o-drop")
    await admin.set_faults(drop_response_rate=1.0)

    outcome = await make_client().refund(refund_request("o-drop", charge_id, 300))

    rows = await admin.refunds("o-drop")
    assert isinstance(outcome, Refunded)
    assert [(r["id"], r["amount"]) for r in rows] == [(outcome.gateway_refund_id, 300)]


async def test_a_flaky_gateway_refunds_each_request_exactly_once(
    make_client: MakeClient, admin: Admin
) -> None:
    charge_ids = {f"o-flaky-{n}": await charged(make_client, f"o-flaky-{n}") for n in range(20)}
    await admin.set_faults(error_rate=0.3)
    client = make_client()

    outcomes = await asyncio.gather(
        *(client.refund(refund_request(o, c, 1999)) for o, c in charge_ids.items())
    )

    assert all(isinstance(o, Refunded) for o in outcomes)
    assert (await admin.stats())["refunded_per_order"] == dict.fromkeys(charge_ids, 1999)


async def test_find_refund_reports_refunded_refused_or_none(
    make_client: MakeClient, admin: Admin
) -> None:
    charge_id = await charged(make_client, "o-find")
    client = make_client()
    done = refund_request("o-find", charge_id, 1999, "k1")
    refused = refund_request("o-find", charge_id, 1, "k2")
    outcome = await client.refund(done)
    await client.refund(refused)

    assert await client.find_refund(done.idempotency_key) == GatewayRefund(outcome, 1999, charge_id)
    found = await client.find_refund(refused.idempotency_key)
    assert found is not None
    assert found.outcome == RefundDeclined(DECLINE_MESSAGES["charge_already_refunded"])
    assert await client.find_refund("orderflow-refund-never") is None


async def test_an_outage_leaves_the_refund_unknown_and_nothing_refunded(
    make_client: MakeClient, admin: Admin
) -> None:
    charge_id = await charged(make_client, "o-outage")
    await admin.set_faults(error_rate=1.0)

    with pytest.raises(TransientGatewayError):
        await make_client(deadline=0.5).refund(refund_request("o-outage", charge_id, 10))

    await admin.clear_faults()
    assert await admin.refunds("o-outage") == []


async def test_refund_requests_are_logged_and_strict_mode_flags_a_needless_one(
    make_client: MakeClient, admin: Admin, sandbox: SandboxGateway
) -> None:
    charge_id = await charged(make_client, "o-strict")
    sandbox.config = sandbox.config.updated({"strict": True})
    client = make_client()
    request = refund_request("o-strict", charge_id, 10)
    await client.refund(request)

    await client.refund(request)  # its answer was delivered: the client should have known

    await sandbox.flush()
    logged = await sandbox.ledger.requests(idempotency_key=request.idempotency_key)
    assert [(r["kind"], r["outcome"], r["violation"] is not None) for r in logged] == [
        ("refund", "created", False),
        ("refund", "replayed", True),
    ]
