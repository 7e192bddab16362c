"""Payments settled from the gateway's own record: the lost answer, the refused retry, a foreign charge.

Each test drives a real worker against its own sandbox gateway and checks, on the PaymentDB
changelog, that the path under test really ran (the payment went UNKNOWN, or the charge request
was refused), not only that the order ended well.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from orderflow.domain.payment import idempotency_key_for
from orderflow.tools.sandbox.gateway import ChargeRow, Ledger
from orderflow.topics import DEAD_LETTERS, changelog_topic
from orderflow.wire.dead_letters import DLQ_HEADER_REASON
from tests.harness import (
    ManagedProcess,
    http_json,
    key_order_id,
    poll_until,
    start_sandbox,
    start_worker,
)
from tests.kafka_helpers import read_topic
from tests.orders_client import get_terminal, ledger_stats, order_body, place, set_faults

# Short gateway timeouts (a 1.5 s latency fault outlives every attempt) and a quick stall nudge.
_FAST = {
    "ORDERFLOW_GATEWAY_TIMEOUT": "1",
    "ORDERFLOW_GATEWAY_DEADLINE": "3",
    "ORDERFLOW_STALL_AFTER": "3",
}


@pytest.fixture(scope="module")
def settling_stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ManagedProcess, ManagedProcess]]:
    tmp = tmp_path_factory.mktemp("settling")
    sandbox = start_sandbox(tmp)
    try:
        worker = start_worker(tmp, kafka_bootstrap, sandbox.meta["url"], name="settle", extra=_FAST)
        try:
            yield worker, sandbox
        finally:
            worker.stop()
    finally:
        sandbox.stop()


def _charge_requests(gateway: str, order_id: str) -> int:
    """Charge requests the sandbox received for this order (the shared test broker may hold other
    tests' unfinished orders, which this worker nudges and charges at this same sandbox)."""
    return int(ledger_stats(gateway)["charge_requests_per_order"].get(order_id, 0))


def _payment_history(bootstrap: str, order_id: str) -> list[dict[str, Any]]:
    return [
        orjson.loads(r.value or b"{}")
        for r in read_topic(bootstrap, changelog_topic("PaymentDB"))
        if r.key == order_id.encode()
    ]


def _insert_ledger_row(
    db: Path, order_key: str, *, order_id: str, amount: int, currency: str, source: str
) -> str:
    """Write a succeeded charge under ``order_key`` into the sandbox's ledger, as another client
    of the same gateway account would have (through the sandbox's own ``Ledger``)."""
    charge_id = f"ch_{uuid.uuid4().hex}"
    # The sandbox's canonical form of the request parameters (it compares them on a reused key).
    params = json.dumps(
        {
            "amount": amount,
            "currency": currency,
            "metadata": {"order_id": order_id},
            "source": source,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    now = time.time()
    row = ChargeRow(
        charge_id,
        order_key,
        params,
        order_id,
        amount,
        currency,
        source,
        "succeeded",
        None,
        None,
        200,
        "",
        int(now),
        now,
    )
    row = dataclasses.replace(row, response_body=json.dumps(row.to_charge()))

    async def insert() -> None:
        ledger = Ledger(db)
        await ledger.open()
        try:
            stored, outcome = await ledger.charge_once(order_key, now, 86400.0, lambda: row)
            assert (stored.id, outcome) == (charge_id, "created")
        finally:
            await ledger.close()

    asyncio.run(insert())
    return charge_id


def test_lost_answer_goes_unknown_then_the_lookup_settles_it_without_a_second_charge(
    settling_stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    worker, sandbox = settling_stack
    gateway = sandbox.meta["url"]
    key = f"lost-{uuid.uuid4()}"
    order_id = key_order_id(key)
    body = order_body()
    # The gateway charged this very request, and every answer the worker gets is a 5xx (its
    # answer was lost): the payment must go UNKNOWN, and the reconciler's lookup must settle it.
    charged = _insert_ledger_row(
        sandbox.meta["db"],
        idempotency_key_for(order_id),
        order_id=order_id,
        amount=_amount(body),
        currency="EUR",
        source="tok_visa",
    )
    set_faults(gateway, error_rate=1.0)
    try:
        place(worker.meta["url"], body, key)
        unknown = poll_until(
            lambda: next(
                (
                    p
                    for p in _payment_history(kafka_bootstrap, order_id)
                    if p["status"] == "UNKNOWN"
                ),
                None,
            ),
            60,
            0.3,
            "the payment to go UNKNOWN",
        )
        requests = _charge_requests(gateway, order_id)
    finally:
        set_faults(gateway)
    final = get_terminal(worker.meta["url"], order_id)
    assert final["status"] == "PAID", final
    assert final["payment"]["charge_id"] == charged
    history = _payment_history(kafka_bootstrap, order_id)
    completed = [p for p in history if p["status"] == "COMPLETED"]
    assert completed, history
    # Settled by the lookup: no new attempt and no charge request after the payment went UNKNOWN.
    assert completed[-1]["attempts"] == unknown["attempts"], history
    assert _charge_requests(gateway, order_id) == requests
    assert ledger_stats(gateway)["per_order"][order_id] == 1


def _amount(body: dict[str, Any]) -> int:
    return sum(int(i["quantity"]) * int(i["unit_amount"]) for i in body["items"])


def test_refused_retry_after_an_earlier_charge_is_settled_from_the_gateways_record(
    settling_stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    worker, sandbox = settling_stack
    key = f"refused-{uuid.uuid4()}"
    order_id = key_order_id(key)
    body = order_body()
    # An earlier attempt for this order charged with other parameters (another token): the
    # worker's request with the same key is refused (400 idempotency_error).
    earlier = _insert_ledger_row(
        sandbox.meta["db"],
        idempotency_key_for(order_id),
        order_id=order_id,
        amount=_amount(body),
        currency="EUR",
        source="tok_visa_earlier",
    )
    order = place(worker.meta["url"], body, key)
    assert order["order_id"] == order_id
    final = get_terminal(worker.meta["url"], order_id)
    assert final["status"] == "PAID", final
    assert final["payment"]["charge_id"] == earlier
    assert ledger_stats(sandbox.meta["url"])["per_order"][order_id] == 1
    statuses = [p["status"] for p in _payment_history(kafka_bootstrap, order_id)]
    assert statuses[-1] == "COMPLETED" and "UNKNOWN" not in statuses, statuses


def test_a_foreign_charge_under_the_key_never_makes_the_order_paid_nor_charges_again(
    settling_stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    worker, sandbox = settling_stack
    gateway = sandbox.meta["url"]
    key = f"foreign-{uuid.uuid4()}"
    order_id = key_order_id(key)
    # Another deployment sharing the gateway account used the same key for another order.
    foreign = _insert_ledger_row(
        sandbox.meta["db"],
        idempotency_key_for(order_id),
        order_id="ord_of_another_deployment",
        amount=100,
        currency="USD",
        source="tok_visa",
    )
    place(worker.meta["url"], order_body(), key)
    letters = poll_until(
        lambda: [
            r for r in read_topic(kafka_bootstrap, DEAD_LETTERS) if r.key == order_id.encode()
        ],
        60,
        0.5,
        "the inconsistency to be dead-lettered",
    )
    reason = dict(letters[0].headers)[DLQ_HEADER_REASON].decode()
    assert reason.startswith("inconsistent:") and foreign in reason, reason
    history = _payment_history(kafka_bootstrap, order_id)
    assert history[-1]["status"] == "INCONSISTENT", history
    requests = _charge_requests(gateway, order_id)
    # The stall watchdog publishes order.created again: that must not charge again.
    poll_until(
        lambda: (
            "publishing order.created again" in worker.log_tail(200_000)
            and order_id in worker.log_tail(200_000)
        ),
        60,
        0.5,
        "a stall nudge",
    )
    status, current, _ = http_json("GET", f"{worker.meta['url']}/orders/{order_id}")
    assert status == 200 and current["status"] == "PENDING", current
    assert _charge_requests(gateway, order_id) == requests
    assert ledger_stats(gateway)["per_order"].get(order_id) is None  # only the foreign row
