"""Standby table copies promoted to active: every order stays readable, none is "unknown".

A worker joining while orders flow gets standby copies of the partitions it does not own, read
from the changelogs' first record. When the owner then leaves, the standbys are promoted, and the
new owner must know every order the old one stored: a GET answers 200 with the order's state
(never 404), and no payment result meets "unknown order". Done four times (each new worker
takes over from the last), with and without standbys.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from orderflow.tools.localkafka import KafkaCluster
from orderflow.topics import DEAD_LETTERS
from orderflow.wire.dead_letters import DLQ_HEADER_REASON
from tests.harness import ManagedProcess, http_json, poll_until, start_sandbox, start_worker
from tests.kafka_helpers import read_topic
from tests.orders_client import ledger_stats, order_body, place, set_faults

TOKENS = ["tok_visa", "tok_visa", "tok_chargeDeclined"]
EXPECTED = {"tok_visa": "PAID", "tok_chargeDeclined": "PAYMENT_FAILED"}


def _place_many(url: str, count: int, prefix: str) -> dict[str, str]:
    """Place ``count`` orders concurrently; returns order id -> expected terminal status."""
    jobs = [(f"{prefix}-{i}", token) for i, token in zip(range(count), itertools.cycle(TOKENS))]
    with ThreadPoolExecutor(4) as pool:
        placed = list(pool.map(lambda job: place(url, order_body(job[1]), job[0]), jobs))
    return {
        order["order_id"]: EXPECTED[token] for (_, token), order in zip(jobs, placed, strict=True)
    }


def _read_state(url: str, order_id: str, timeout: float = 90) -> tuple[int, Any]:
    """GET until 200 with a terminal state, or 404 (an answer that must never come)."""
    deadline = time.monotonic() + timeout
    status: int = 0
    body: Any = None
    while time.monotonic() < deadline:
        try:
            status, body, _ = http_json("GET", f"{url}/orders/{order_id}?wait=10")
        except OSError:
            status = 0
        if status == 404 or (status == 200 and body["status"] in ("PAID", "PAYMENT_FAILED")):
            return status, body
        assert status in (0, 200, 429, 503), (status, body)
        time.sleep(0.2)
    raise AssertionError(f"order {order_id} unreadable after {timeout}s: {status} {body}")


def _assert_all_known(url: str, orders: dict[str, str], what: str) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = dict(zip(orders, pool.map(lambda o: _read_state(url, o), orders), strict=True))
    unknown = sorted(o for o, (status, _) in answers.items() if status == 404)
    assert unknown == [], f"{what}: {len(unknown)} of {len(orders)} orders answered 404: {unknown}"
    wrong = {o: body["status"] for o, (_, body) in answers.items() if body["status"] != orders[o]}
    assert wrong == {}, f"{what}: wrong final states {wrong}"


def _worker(tmp: Path, bootstrap: str, gateway: str, name: str, standbys: int) -> ManagedProcess:
    return start_worker(
        tmp,
        bootstrap,
        gateway,
        name=name,
        extra={
            "ORDERFLOW_STANDBY_REPLICAS": str(standbys),
            "ORDERFLOW_STORE": "rocksdb",
            "ORDERFLOW_GATEWAY_DEADLINE": "3",
            "ORDERFLOW_GATEWAY_TIMEOUT": "1",
            "ORDERFLOW_STALL_AFTER": "4",
        },
    )


def _hand_over(
    tmp: Path,
    bootstrap: str,
    gateway: str,
    owner: ManagedProcess,
    name: str,
    standbys: int,
    orders: dict[str, str],
) -> ManagedProcess:
    """A new worker joins while orders flow to ``owner``; then ``owner`` leaves."""
    charged = ledger_stats(gateway)["charge_requests"]
    with ThreadPoolExecutor(1) as background:
        early = background.submit(_place_many, owner.meta["url"], 30, f"{name}-{tmp.name}")
        poll_until(
            lambda: ledger_stats(gateway)["charge_requests"] >= charged + 3,
            30,
            what="payments in flight",
        )
        joined = _worker(tmp, bootstrap, gateway, name, standbys)
        orders.update(early.result())
    orders.update(_place_many(joined.meta["url"], 20, f"{name}-joined-{tmp.name}"))
    # The owner leaves with payments in flight: the new worker takes its partitions (standby
    # copies promoted, when there are standbys).
    assert owner.stop() == 0, owner.log_tail()
    return joined


@pytest.mark.parametrize("standbys", [1, 0], ids=["standby", "no-standby"])
def test_orders_stay_known_when_their_owner_leaves_and_standbys_are_promoted(
    own_broker: KafkaCluster, tmp_path: Path, standbys: int
) -> None:
    bootstrap = own_broker.bootstrap
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    workers: list[ManagedProcess] = []
    try:
        set_faults(gateway, latency_ms=300, latency_jitter_ms=300)  # keep charges in flight
        workers.append(_worker(tmp_path, bootstrap, gateway, "first", standbys))
        orders: dict[str, str] = {}
        # Each hand-over is a chance for the race that left holes in the standby copies
        # (orderflow.consumer: LivePartitions); before the fix, one in two failed or so.
        for name in ("second", "third", "fourth", "fifth"):
            workers.append(
                _hand_over(tmp_path, bootstrap, gateway, workers[-1], name, standbys, orders)
            )
            _assert_all_known(workers[-1].meta["url"], orders, f"after {name} took over")
        letters = [
            dict(r.headers).get(DLQ_HEADER_REASON, b"").decode()
            for r in read_topic(bootstrap, DEAD_LETTERS)
        ]
        assert [reason for reason in letters if "unknown order" in reason] == []
    finally:
        for proc in reversed(workers):
            proc.stop()
        sandbox.stop()
