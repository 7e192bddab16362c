"""Records a rebalance drops from a worker's buffers are read again, committed offset or not.

At a rebalance Faust clears the records it fetched but had not handed to an agent yet and seeks
each partition back to its committed offset, except a partition with nothing committed: there
the dropped records were never delivered, and the first record handled afterwards was committed
past them (CI lost orders this way). ``orderflow.consumer`` seeks those partitions to their start.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from orderflow.tools.localkafka import KafkaCluster
from orderflow.topics import ORDER_CREATED
from tests.e2e.test_rebalance_fencing import _ENV, _place, _ready
from tests.harness import ManagedProcess, http_json, poll_until, start_sandbox, start_worker
from tests.invariants import assert_orders_settled_once
from tests.kafka_helpers import read_topic
from tests.orders_client import get_terminal, ledger_stats, set_faults


def test_records_buffered_at_a_rebalance_on_uncommitted_partitions_are_handled(
    own_broker: KafkaCluster, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap  # a fresh group: no partition has a committed offset
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    first = start_worker(tmp_path, bootstrap, gateway, name="first", extra=_ENV)
    second: ManagedProcess | None = None
    try:
        # The first wave's charges hold the payment agent's batch (nothing of order.created is
        # acked, so nothing committed) while the second wave's order.created records are fetched
        # into its buffer behind it.
        set_faults(gateway, latency_ms=30_000)
        first_wave = _place(first.meta["url"], 8, f"held-{tmp_path.name}")
        poll_until(
            lambda: ledger_stats(gateway)["charge_requests"] >= len(first_wave),
            60,
            what="the first wave's charges in flight",
        )
        second_wave = _place(first.meta["url"], 16, f"buffered-{tmp_path.name}")
        wanted = {order_id.encode() for order_id in second_wave}
        poll_until(
            lambda: wanted <= {r.key for r in read_topic(bootstrap, ORDER_CREATED)},
            60,
            what="the second wave's order.created published",
        )
        # A worker joins while that batch is in flight: every partition is revoked (Faust's
        # eager protocol), the buffers are cleared, and the first worker keeps some partitions.
        second = start_worker(tmp_path, bootstrap, gateway, name="second", extra=_ENV)
        poll_until(lambda: _ready(first) and _ready(second), 120, 0.5, "both workers assigned")
        set_faults(gateway, latency_ms=0)

        # No nudge can help (ORDERFLOW_STALL_AFTER is 300 s): each order needs its own record.
        for order_id in first_wave + second_wave:
            assert get_terminal(second.meta["url"], order_id, timeout=120)["status"] == "PAID"
        assert_orders_settled_once(bootstrap, set(first_wave + second_wave))
        per_order = ledger_stats(gateway)["per_order"]
        assert all(per_order.get(o) == 1 for o in first_wave + second_wave), per_order
        # The rewind really happened on a partition the first worker kept.
        assert "no committed offset: reading" in first.log_tail(2_000_000)
    finally:
        if second is not None:
            second.stop()
        first.stop()
        sandbox.stop()


def _charging(worker: ManagedProcess) -> bool:
    """Whether the worker's payment agent holds a batch (``ORDERFLOW_STUCK_AFTER`` is 1 s)."""
    try:
        _, body, _ = http_json("GET", f"{worker.meta['url']}/health", timeout=5)
    except OSError:
        return False
    return any(entry.get("agent") == "payment-service" for entry in (body or {}).get("stuck", []))


def test_orders_of_a_frozen_worker_and_of_the_survivors_own_batch_complete_without_a_nudge(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # A freeze while both workers have a payment batch in flight: the survivor takes the frozen
    # worker's partitions (nothing committed there) and gets its own back mid-batch. Before the
    # fix, some orders of both kinds stayed PENDING with /health ok (an event skipped and
    # committed past on a kept partition; the taken-over partitions never read).
    env = {
        **_ENV,
        "ORDERFLOW_GATEWAY_TIMEOUT": "10",
        "ORDERFLOW_GATEWAY_DEADLINE": "600",
        "ORDERFLOW_STUCK_AFTER": "1",
    }
    sandbox = start_sandbox(tmp_path, key_ttl_s=600)
    gateway = sandbox.meta["url"]
    frozen = start_worker(tmp_path, kafka_bootstrap, gateway, name="frozen", extra=env)
    survivor: ManagedProcess | None = None
    stopped = False
    try:
        survivor = start_worker(tmp_path, kafka_bootstrap, gateway, name="survivor", extra=env)
        poll_until(lambda: _ready(frozen) and _ready(survivor), 90, 0.5, "both workers assigned")
        set_faults(gateway, latency_ms=8000)
        ids = _place(survivor.meta["url"], 12, f"early-{tmp_path.name}")
        poll_until(lambda: _charging(frozen), 60, 0.2, "the frozen worker's batch in flight")
        assert frozen.proc is not None
        os.killpg(frozen.proc.pid, signal.SIGSTOP)
        stopped = True
        set_faults(gateway)
        ids += _place(survivor.meta["url"], 2, f"late-{tmp_path.name}")
        # STALL_AFTER is 300 s: each order completes from its own events, or not at all.
        for order_id in ids:
            assert get_terminal(survivor.meta["url"], order_id, timeout=120)["status"] == "PAID"
        per_order = ledger_stats(gateway)["per_order"]
        assert all(per_order.get(order_id) == 1 for order_id in ids), per_order
    finally:
        if stopped and frozen.proc is not None:
            os.killpg(frozen.proc.pid, signal.SIGCONT)
        if survivor is not None:
            survivor.stop()
        frozen.stop()
        sandbox.stop()
