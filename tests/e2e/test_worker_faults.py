"""Faults injected into a running system: nothing lost, nothing charged twice.

Each test counts charges per order at the sandbox gateway's ledger (SQLite, outside the worker),
so a double charge cannot hide in a worker's memory.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from orderflow.topics import changelog_topic
from tests.harness import ManagedProcess, poll_until, start_sandbox, start_worker
from tests.kafka_helpers import read_topic
from tests.orders_client import get_terminal, ledger_stats, order_body, place, set_faults

TOKENS = ["tok_visa", "tok_visa", "tok_chargeDeclined", "tok_visa", "tok_chargeDeclinedExpiredCard"]
EXPECTED = {"tok_visa": "PAID", "tok_chargeDeclined": "PAYMENT_FAILED",
            "tok_chargeDeclinedExpiredCard": "PAYMENT_FAILED"}  # fmt: skip


def _place_many(url: str, count: int, prefix: str) -> list[tuple[str, str, str]]:
    """Place ``count`` orders concurrently; returns (idempotency key, order id, token)."""
    jobs = [(f"{prefix}-{i}", token) for i, token in zip(range(count), itertools.cycle(TOKENS))]
    with ThreadPoolExecutor(8) as pool:
        placed = list(pool.map(lambda job: place(url, order_body(job[1]), job[0]), jobs))
    return [
        (key, order["order_id"], token) for (key, token), order in zip(jobs, placed, strict=False)
    ]


def _assert_exactly_once(url: str, gateway: str, orders: list[tuple[str, str, str]]) -> None:
    finals = {order_id: get_terminal(url, order_id) for _, order_id, _ in orders}
    per_order = ledger_stats(gateway)["per_order"]
    for _, order_id, token in orders:
        assert finals[order_id]["status"] == EXPECTED[token], finals[order_id]
        # A decline is recorded by the gateway too, but nothing is taken: one row either way.
        assert per_order.get(order_id) == 1, (order_id, per_order.get(order_id))


def _worker(tmp: Path, bootstrap: str, gateway: str, name: str, **extra: str) -> ManagedProcess:
    env = {"ORDERFLOW_GATEWAY_DEADLINE": "3", "ORDERFLOW_GATEWAY_TIMEOUT": "1", **extra}
    return start_worker(tmp, bootstrap, gateway, name=name, extra=env)


def test_sigkill_mid_flight_then_restart_every_order_terminal_and_charged_at_most_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    try:
        set_faults(gateway, latency_ms=400, latency_jitter_ms=300)  # keep charges in flight
        first = _worker(tmp_path, kafka_bootstrap, gateway, "victim")
        orders = _place_many(first.meta["url"], 40, f"kill-{tmp_path.name}")
        # Kill while payments are in flight: some orders charged, some not, some unanswered.
        poll_until(lambda: ledger_stats(gateway)["charges"] >= 3, 30, what="first charges")
        first.kill()
        charged_before_restart = ledger_stats(gateway)["charges"]
        assert charged_before_restart < len(orders), "the kill came too late to prove anything"
        set_faults(gateway)
        # A fresh data dir: OrderDB and PaymentDB must be rebuilt from their changelogs.
        second = _worker(tmp_path, kafka_bootstrap, gateway, "survivor")
        try:
            _assert_exactly_once(second.meta["url"], gateway, orders)
            # The rebuilt OrderDB still knows every idempotency key: replays give the same order.
            for key, order_id, token in orders[:5]:
                assert place(second.meta["url"], order_body(token), key)["order_id"] == order_id
            assert ledger_stats(gateway)["charges"] >= len(orders)
        finally:
            assert second.stop() == 0, second.log_tail()
    finally:
        sandbox.stop()


def test_gateway_faults_retries_and_lost_responses_end_with_one_charge_per_order(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    worker = _worker(tmp_path, kafka_bootstrap, gateway, "faults")
    try:
        # 30% 5xx plus 30% "charged, then the answer is lost": retries with the same key.
        set_faults(gateway, error_rate=0.3, drop_response_rate=0.3)
        orders = _place_many(worker.meta["url"], 30, f"flaky-{tmp_path.name}")
        _assert_exactly_once(worker.meta["url"], gateway, orders)
        assert ledger_stats(gateway)["charge_requests"] > len(orders)  # faults really happened
    finally:
        set_faults(gateway)
        worker.stop()
        sandbox.stop()


def test_total_gateway_outage_leaves_orders_waiting_then_completes_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    worker = _worker(tmp_path, kafka_bootstrap, gateway, "outage")
    url = worker.meta["url"]
    try:
        set_faults(gateway, error_rate=1.0)
        orders = _place_many(url, 10, f"outage-{tmp_path.name}")
        # Every order was tried and its payment recorded UNKNOWN (may have been charged: ask
        # again later), never FAILED.
        ids = {order_id for _, order_id, _ in orders}
        poll_until(lambda: _payment_statuses(kafka_bootstrap, ids) == dict.fromkeys(ids, "UNKNOWN"),
                   60, 0.5, "every payment to be UNKNOWN")  # fmt: skip
        statuses: list[Any] = [get_status(url, order_id) for _, order_id, _ in orders]
        assert statuses == ["PENDING"] * len(orders)
        assert ledger_stats(gateway)["charges"] == 0
        set_faults(gateway)
        _assert_exactly_once(url, gateway, orders)
    finally:
        set_faults(gateway)
        worker.stop()
        sandbox.stop()


def _payment_statuses(bootstrap: str, order_ids: set[str]) -> dict[str, str]:
    """The latest PaymentDB status per order, read from the table's changelog topic."""
    latest: dict[str, str] = {}
    for record in read_topic(bootstrap, changelog_topic("PaymentDB")):
        order_id = (record.key or b"").decode()
        if order_id in order_ids and record.value:
            latest[order_id] = orjson.loads(record.value)["status"]
    return latest


def get_status(url: str, order_id: str) -> str:
    from tests.harness import http_json

    status, body, _ = http_json("GET", f"{url}/orders/{order_id}")
    assert status == 200, body
    return str(body["status"])
