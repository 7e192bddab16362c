"""Faults injected into a running system: nothing lost, nothing charged twice.

Each test checks the gateway's ledger (SQLite, outside the worker: one charge per order) and what
the services wrote on the topics (one terminal state per order, reached once; one outcome; table
entries on the order's partition), so neither a lost order nor a double outcome can hide.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from orderflow.domain.events import rfc3339
from orderflow.domain.order import Order, OrderStatus
from orderflow.domain.validation import LineItem
from orderflow.topics import changelog_topic
from orderflow.wire import order_to_bytes
from tests.gateway_audit import GatewayAudit, check_gateway
from tests.harness import TEST_CLIENT, ManagedProcess, poll_until, start_sandbox, start_worker
from tests.invariants import assert_orders_settled_once
from tests.kafka_helpers import handled_place_command, read_topic
from tests.orders_client import get_terminal, ledger_stats, order_body, place, set_faults

TOKENS = ["tok_visa", "tok_visa", "tok_chargeDeclined", "tok_visa", "tok_chargeDeclinedExpiredCard"]
EXPECTED = {
    "tok_visa": "PAID",
    "tok_chargeDeclined": "PAYMENT_FAILED",
    "tok_chargeDeclinedExpiredCard": "PAYMENT_FAILED",
}


def _place_many(url: str, count: int, prefix: str) -> list[tuple[str, str, str]]:
    """Place ``count`` orders concurrently; returns (idempotency key, order id, token)."""
    jobs = [(f"{prefix}-{i}", token) for i, token in zip(range(count), itertools.cycle(TOKENS))]
    with ThreadPoolExecutor(8) as pool:
        placed = list(pool.map(lambda job: place(url, order_body(job[1]), job[0]), jobs))
    return [
        (key, order["order_id"], token) for (key, token), order in zip(jobs, placed, strict=False)
    ]


def _assert_exactly_once(
    url: str, gateway: str, orders: list[tuple[str, str, str]], bootstrap: str
) -> GatewayAudit:
    finals = {order_id: get_terminal(url, order_id) for _, order_id, _ in orders}
    # What the service asked of the gateway (keys expire, sandbox strict): never a second
    # charge, never a charge request once PaymentDB knew the answer.
    audit = check_gateway(bootstrap, gateway, set(finals))
    print(f"gateway audit of {len(finals)} orders: {audit.summary()}")
    per_order = ledger_stats(gateway)["per_order"]
    for _, order_id, token in orders:
        assert finals[order_id]["status"] == EXPECTED[token], finals[order_id]
        # A decline is recorded by the gateway too, but nothing is taken: one row either way.
        assert per_order.get(order_id) == 1, (order_id, per_order.get(order_id))
    assert_orders_settled_once(bootstrap, set(finals))
    return audit


# Short gateway deadlines and stall detection, so faults play out in seconds.
_FAST = {
    "ORDERFLOW_GATEWAY_DEADLINE": "3",
    "ORDERFLOW_GATEWAY_TIMEOUT": "1",
    "ORDERFLOW_STALL_AFTER": "4",
}


def _worker(tmp: Path, bootstrap: str, gateway: str, name: str) -> ManagedProcess:
    return start_worker(tmp, bootstrap, gateway, name=name, extra=_FAST)


@pytest.mark.parametrize(
    ("stop", "fresh_data_dir"),
    [("sigkill", True), ("sigterm", False)],
    ids=["sigkill-rebuild-tables-from-changelog", "sigterm-resume-rocksdb"],
)
def test_worker_stopped_mid_flight_then_restarted_settles_every_order_exactly_once(
    kafka_bootstrap: str, tmp_path: Path, stop: str, fresh_data_dir: bool
) -> None:
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    try:
        set_faults(gateway, latency_ms=400, latency_jitter_ms=300)  # keep charges in flight
        # Small payment batches: a graceful stop finishes its current batch, and the orders
        # queued behind it must still be waiting when the worker goes.
        first = start_worker(
            tmp_path,
            kafka_bootstrap,
            gateway,
            name="victim",
            extra={**_FAST, "ORDERFLOW_PAYMENT_BATCH": "4"},
        )
        orders = _place_many(first.meta["url"], 40, f"{stop}-{tmp_path.name}")
        # Stop while payments are in flight: some charged, some not, some answers unread.
        poll_until(lambda: ledger_stats(gateway)["charges"] >= 3, 30, what="first charges")
        if stop == "sigkill":
            first.kill()
        else:
            first.stop()  # graceful: Faust acks the batch it was handling as it stops
        per_order = ledger_stats(gateway)["per_order"]
        charged_before_restart = sum(per_order.get(order_id, 0) for _, order_id, _ in orders)
        assert charged_before_restart < len(orders), "the stop came too late to prove anything"
        set_faults(gateway)
        # A fresh data dir: OrderDB and PaymentDB must be rebuilt from their changelogs.
        data_dir = None if fresh_data_dir else first.meta["data_dir"]
        second = start_worker(
            tmp_path, kafka_bootstrap, gateway, name="survivor", data_dir=data_dir, extra=_FAST
        )
        try:
            _assert_exactly_once(second.meta["url"], gateway, orders, kafka_bootstrap)
            # The restarted OrderDB still knows every idempotency key: replays give the same order.
            for key, order_id, token in orders[:5]:
                assert place(second.meta["url"], order_body(token), key)["order_id"] == order_id
        finally:
            assert second.stop() == 0, second.log_tail()
    finally:
        sandbox.stop()


@pytest.fixture
def fast_stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A sandbox gateway and one worker with short deadlines: (worker URL, gateway URL)."""
    sandbox = start_sandbox(tmp_path)
    try:
        worker = _worker(tmp_path, kafka_bootstrap, sandbox.meta["url"], "worker")
        try:
            yield worker.meta["url"], sandbox.meta["url"]
        finally:
            worker.stop()
    finally:
        sandbox.stop()


def test_gateway_faults_retries_and_lost_responses_end_with_one_charge_per_order(
    kafka_bootstrap: str, tmp_path: Path, fast_stack: tuple[str, str]
) -> None:
    url, gateway = fast_stack
    # 30% 5xx plus 30% "charged, then the answer is lost": retries with the same key.
    set_faults(gateway, error_rate=0.3, drop_response_rate=0.3)
    orders = _place_many(url, 30, f"flaky-{tmp_path.name}")
    audit = _assert_exactly_once(url, gateway, orders, kafka_bootstrap)
    # The faults really happened, and every payment whose answer was lost was asked about
    # again (a retry with its key, or a lookup after it went UNKNOWN) and kept its one charge.
    assert audit.outcomes["fault_5xx"] > 0, audit.summary()
    assert audit.dropped_responses > 0, audit.summary()
    for order_id in audit.dropped_orders:
        asked_again = audit.charge_requests[order_id] >= 2 or order_id in audit.lookups
        assert asked_again, (order_id, audit.summary())
        assert audit.succeeded.get(order_id, 0) <= 1


def test_total_gateway_outage_leaves_orders_waiting_then_completes_them(
    kafka_bootstrap: str, tmp_path: Path, fast_stack: tuple[str, str]
) -> None:
    url, gateway = fast_stack
    set_faults(gateway, error_rate=1.0)
    orders = _place_many(url, 10, f"outage-{tmp_path.name}")
    # Every order was tried and its payment recorded UNKNOWN (may have been charged: ask
    # again later), never FAILED.
    ids = {order_id for _, order_id, _ in orders}
    poll_until(lambda: _all_waiting(kafka_bootstrap, ids), 60, 0.5, "every payment to be UNKNOWN")
    statuses: list[Any] = [get_status(url, order_id) for _, order_id, _ in orders]
    assert statuses == ["PENDING"] * len(orders)
    assert ledger_stats(gateway)["charges"] == 0
    set_faults(gateway)
    audit = _assert_exactly_once(url, gateway, orders, kafka_bootstrap)
    # Every payment was reconciled: looked up by its key while UNKNOWN, then settled.
    assert audit.went_unknown == ids
    assert set(audit.lookups) == ids, audit.summary()


def _payment_history(bootstrap: str, order_ids: set[str]) -> dict[str, list[str]]:
    """Every PaymentDB status each order went through, from the table's changelog topic."""
    history: dict[str, list[str]] = {}
    for record in read_topic(bootstrap, changelog_topic("PaymentDB")):
        order_id = (record.key or b"").decode()
        if order_id in order_ids and record.value:
            history.setdefault(order_id, []).append(orjson.loads(record.value)["status"])
    return history


def _all_waiting(bootstrap: str, order_ids: set[str]) -> bool:
    """True once every payment went UNKNOWN; fails at once if any was settled meanwhile."""
    history = _payment_history(bootstrap, order_ids)
    settled = {o: h for o, h in history.items() if {"COMPLETED", "FAILED"} & set(h)}
    assert not settled, f"settled during the outage: {settled}"
    return set(history) == order_ids and all("UNKNOWN" in h for h in history.values())


def get_status(url: str, order_id: str) -> str:
    from tests.harness import http_json

    status, body, _ = http_json("GET", f"{url}/orders/{order_id}")
    assert status == 200, body
    return str(body["status"])


async def _write_changelog(bootstrap: str, order: Order) -> None:
    # The same key bytes and default partitioner as Faust's table writes: the same partition.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            changelog_topic("OrderDB"), key=order.order_id.encode(), value=order_to_bytes(order)
        )
    finally:
        await producer.stop()


def test_order_stored_but_never_published_is_nudged_to_completion(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # What a crash between the OrderDB write and the order.created publish leaves behind: a
    # PENDING order in the changelog, and no event anywhere that would move it.
    order_id = "ord_" + uuid.uuid4().hex
    now = rfc3339(time.time())
    items = (LineItem("SKU-1", 1, 500),)
    # (placed by the test client: with API keys on, an order with no owner is nobody's to read)
    order = Order(
        order_id,
        "c-1",
        "EUR",
        items,
        500,
        OrderStatus.PENDING,
        now,
        now,
        "fingerprint",
        "request",
        client_id=TEST_CLIENT,
    )
    sandbox = start_sandbox(tmp_path)
    try:
        # A first worker creates the topics and leaves; the order appears while nobody owns it
        # (its command handled; OrderDB has where it is, for the token: never the token itself).
        assert _worker(tmp_path, kafka_bootstrap, sandbox.meta["url"], "creator").stop() == 0
        offset = handled_place_command(kafka_bootstrap, order_id)
        asyncio.run(_write_changelog(kafka_bootstrap, replace(order, command_offset=offset)))
        worker = _worker(tmp_path, kafka_bootstrap, sandbox.meta["url"], "nudger")
        try:
            final = get_terminal(worker.meta["url"], order_id, timeout=60)
            assert final["status"] == "PAID"
            assert ledger_stats(sandbox.meta["url"])["per_order"][order_id] == 1
            check_gateway(kafka_bootstrap, sandbox.meta["url"], {order_id})
            assert "still PENDING: publishing order.created again" in worker.log_tail(200_000)
        finally:
            worker.stop()
    finally:
        sandbox.stop()


def test_rebalances_while_orders_are_in_flight_settle_every_order_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    first = _worker(tmp_path, kafka_bootstrap, gateway, "first")
    second: ManagedProcess | None = None
    try:
        set_faults(gateway, latency_ms=300, latency_jitter_ms=300)
        with ThreadPoolExecutor(1) as background:
            # Orders keep arriving at the first worker while a second one joins (a rebalance
            # moves half the partitions, with payments in flight on them).
            early = background.submit(_place_many, first.meta["url"], 30, f"rb1-{tmp_path.name}")
            poll_until(
                lambda: ledger_stats(gateway)["charge_requests"] >= 3, 30, what="payments in flight"
            )
            second = _worker(tmp_path, kafka_bootstrap, gateway, "second")
            orders = early.result()
        orders += _place_many(second.meta["url"], 20, f"rb2-{tmp_path.name}")
        # The first worker leaves with payments in flight: a second rebalance.
        assert first.stop() == 0, first.log_tail()
        set_faults(gateway)
        _assert_exactly_once(second.meta["url"], gateway, orders, kafka_bootstrap)
    finally:
        if second is not None:
            second.stop()
        first.stop()
        sandbox.stop()
