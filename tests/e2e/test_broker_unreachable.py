"""The broker unreachable for longer than the producer's delivery timeout, with payments in flight.

Records sent while the broker is down (SIGKILL, then started again on its data) fail after ``ORDERFLOW_PRODUCER_TIMEOUT``. The
offsets of the events that produced them must never be committed past: every order still ends
terminal exactly once, with one charge, and the table changelogs (what a restarted worker rebuilds
from) agree with it.
"""

from __future__ import annotations

import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orderflow.tools.localkafka import KafkaCluster
from tests.harness import ManagedProcess, poll_until, start_sandbox, start_worker
from tests.invariants import assert_orders_settled_once
from tests.orders_client import get_terminal, ledger_stats, order_body, place, set_faults

# Faust's warning when a record's delivery failed for good.
_PAYMENT_SEND_FAILED = "_on_published error for message topic orderflow-PaymentDB-changelog"


def test_sends_failed_while_the_broker_was_down_are_never_committed_past(
    own_broker: KafkaCluster, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    worker = start_worker(
        tmp_path,
        bootstrap,
        gateway,
        name="frozen",
        extra={
            "ORDERFLOW_PRODUCER_TIMEOUT": "3",
            "ORDERFLOW_STALL_AFTER": "8",
            "ORDERFLOW_GATEWAY_TIMEOUT": "5",
            "ORDERFLOW_GATEWAY_DEADLINE": "10",
            "ORDERFLOW_SESSION_TIMEOUT": "30",
        },
    )
    try:
        # Slow charges: the broker freezes while answers are on their way back to the worker.
        set_faults(gateway, latency_ms=1500)
        keys = [f"frozen-{uuid.uuid4()}" for _ in range(16)]
        with ThreadPoolExecutor(8) as pool:
            orders = list(pool.map(lambda k: place(worker.meta["url"], order_body(), k), keys))
        order_ids = {o["order_id"] for o in orders}
        # Kill the broker once every charge request reached the gateway: the answers (1.5 s
        # later) land in a worker with no broker, and what it writes after the charges expires.
        poll_until(
            lambda: ledger_stats(gateway)["charge_requests"] >= len(keys),
            60,
            0.1,
            "every charge request to reach the gateway",
        )
        own_broker.stop_node(1, signal.SIGKILL)
        try:
            poll_until(
                lambda: ledger_stats(gateway)["charges"] >= len(keys),
                60,
                0.2,
                "every charge to be made",
            )
            before = _payment_send_failures(worker)
            # Down until the producer gave up on a PaymentDB write made after the charges.
            poll_until(
                lambda: _payment_send_failures(worker) > before,
                90,
                0.3,
                "a PaymentDB write to fail while the broker is down",
            )
        finally:
            own_broker.start()
        set_faults(gateway)
        finals = {oid: get_terminal(worker.meta["url"], oid, timeout=180) for oid in order_ids}
        assert {f["status"] for f in finals.values()} == {"PAID"}, finals
        per_order = ledger_stats(gateway)["per_order"]
        assert all(per_order.get(oid) == 1 for oid in order_ids), per_order
        # The changelogs, not only the worker's memory, hold every order's final state.
        poll_until(
            lambda: _settled(bootstrap, order_ids),
            120,
            1.0,
            "the changelogs to hold every final state",
        )
        assert_orders_settled_once(bootstrap, order_ids)
    finally:
        worker.stop()
        sandbox.stop()


def _payment_send_failures(worker: ManagedProcess) -> int:
    return worker.log_tail(10_000_000).count(_PAYMENT_SEND_FAILED)


def _settled(bootstrap: str, order_ids: set[str]) -> bool:
    try:
        assert_orders_settled_once(bootstrap, order_ids)
    except AssertionError:
        return False
    return True
