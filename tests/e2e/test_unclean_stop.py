"""A worker killed while its table writes were local only: its RocksDB must not outlive the crash.

Faust's RocksDB store writes ``table[k] = v`` locally at once and sends the changelog record after.
A worker SIGKILLed in between restarts on the same data dir with state its changelog never got.
It must rebuild its tables from their changelogs then (``orderflow.tables.local_state``), and keep
them after a clean stop.
"""

from __future__ import annotations

import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from orderflow.tools.localkafka import KafkaCluster
from orderflow.topics import changelog_topic
from tests.gateway_audit import GatewayAudit, check_gateway
from tests.harness import ManagedProcess, poll_until, start_sandbox, start_worker
from tests.invariants import assert_orders_settled_once
from tests.kafka_helpers import read_topic
from tests.orders_client import (
    gateway_requests,
    get_terminal,
    ledger_stats,
    order_body,
    place,
    set_faults,
)

# The worker's start-up verdict on its local tables (orderflow.tables.local_state).
_KEPT = "local tables kept"
_REBUILT = "unclean stop, rebuilding tables from their changelogs"


def _local_completed(data_dir: Path) -> int:
    """COMPLETED payments written to the worker's PaymentDB, read from RocksDB's write-ahead logs.

    RocksDB appends every put to its WAL (uncompressed) before it returns: what the worker wrote
    locally shows there at once, whether or not its changelog record ever left.
    """
    return sum(
        wal.read_bytes().count(b'"status":"COMPLETED"')
        for wal in data_dir.glob("**/PaymentDB-*.db/*.log")
    )


def _last_payment_status(bootstrap: str, order_ids: set[str]) -> dict[str, str | None]:
    last: dict[str, str | None] = dict.fromkeys(order_ids)
    for record in read_topic(bootstrap, changelog_topic("PaymentDB")):
        key = (record.key or b"").decode(errors="replace")
        if key in last:
            last[key] = orjson.loads(record.value or b"{}").get("status")
    return last


def _restart(
    tmp_path: Path, bootstrap: str, gateway: str, data_dir: Path, extra: dict[str, str]
) -> ManagedProcess:
    """The stopped worker started again on its data dir."""
    return start_worker(
        tmp_path,
        bootstrap,
        gateway,
        name="w1-restarted",
        data_dir=data_dir,
        extra=extra,
        timeout=180,
    )


def _all_paid_and_audited(
    worker: ManagedProcess, bootstrap: str, gateway: str, order_ids: set[str]
) -> GatewayAudit:
    """Every order PAID at the restarted worker, settled in PaymentDB, and the gateway audit."""
    finals = {oid: get_terminal(worker.meta["url"], oid, timeout=120) for oid in order_ids}
    assert {f["status"] for f in finals.values()} == {"PAID"}, finals
    _wait_settled(bootstrap, order_ids, 60)
    return check_gateway(bootstrap, gateway, order_ids)


def _wait_settled(bootstrap: str, order_ids: set[str], timeout: float) -> None:
    """Poll the topics until the invariants hold; at the deadline, fail with what is wrong."""

    def settled() -> bool:
        try:
            assert_orders_settled_once(bootstrap, order_ids)
        except AssertionError:
            return False
        return True

    try:
        poll_until(settled, timeout, 1.0, "the changelogs to hold every final state")
    except AssertionError:
        assert_orders_settled_once(bootstrap, order_ids)  # raises what is still wrong
        raise


def test_sigkill_with_changelog_behind_rocksdb_rebuilds_tables_and_charges_once(
    own_broker: KafkaCluster, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap
    # Keys that outlive the test: the restarted worker charges ATTEMPTING payments again with
    # the same key, and the gateway must answer with the first charge (what a real gateway's
    # 24 h keys do); this test is about the tables, not about re-charges after key expiry.
    sandbox = start_sandbox(tmp_path, key_ttl_s=600)
    gateway = sandbox.meta["url"]
    data_dir = tmp_path / "data-w1"
    extra = {
        "ORDERFLOW_GATEWAY_TIMEOUT": "5",
        "ORDERFLOW_GATEWAY_DEADLINE": "10",
        "ORDERFLOW_STALL_AFTER": "8",
        "ORDERFLOW_SESSION_TIMEOUT": "10",
    }
    worker = start_worker(tmp_path, bootstrap, gateway, name="w1", data_dir=data_dir, extra=extra)
    try:
        # Slow charges: the answers come back while the broker is frozen.
        set_faults(gateway, latency_ms=1500)
        keys = [f"unclean-{uuid.uuid4()}" for _ in range(12)]
        with ThreadPoolExecutor(6) as pool:
            placed = list(pool.map(lambda k: place(worker.meta["url"], order_body(), k), keys))
        order_ids = {o["order_id"] for o in placed}
        poll_until(
            lambda: ledger_stats(gateway)["charge_requests"] >= len(keys),
            60,
            0.05,
            "every charge request to reach the gateway",
        )
        pid = own_broker.running_pid(1)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # from now on no changelog record can be delivered
        try:
            poll_until(
                lambda: (
                    sum(r["delivered"] for r in gateway_requests(gateway) if r["kind"] == "charge")
                    >= len(keys)
                ),
                60,
                0.1,
                "every charge answer to reach the worker",
            )
            poll_until(
                lambda: _local_completed(data_dir) >= len(keys),
                30,
                0.1,
                "the worker to write every COMPLETED payment to its RocksDB",
            )
            worker.kill()
        finally:
            os.kill(pid, signal.SIGCONT)
        # The fault happened: the local store held COMPLETED payments that the changelog lacks.
        behind = {
            oid
            for oid, status in _last_payment_status(bootstrap, order_ids).items()
            if status != "COMPLETED"
        }
        print(f"{len(behind)} of {len(order_ids)} PaymentDB changelog entries behind at the kill")
        assert behind, "every COMPLETED reached the changelog: the kill came too late"
        set_faults(gateway)
        worker = _restart(tmp_path, bootstrap, gateway, data_dir, extra)
        audit = _all_paid_and_audited(worker, bootstrap, gateway, order_ids)
        print(f"gateway audit: {audit.summary()}")
        assert all(ledger_stats(gateway)["per_order"].get(oid) == 1 for oid in order_ids)
        assert _REBUILT in worker.log_tail(10_000_000)
    finally:
        worker.stop()
        sandbox.stop()


def test_sigterm_keeps_local_tables_and_sigkill_rebuilds_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    data_dir = tmp_path / "data-w"
    try:
        worker = start_worker(tmp_path, kafka_bootstrap, gateway, name="w-a", data_dir=data_dir)
        first = place(worker.meta["url"], order_body(), f"kept-{uuid.uuid4()}")
        assert get_terminal(worker.meta["url"], first["order_id"])["status"] == "PAID"
        assert worker.stop() == 0, worker.log_tail()

        worker = start_worker(tmp_path, kafka_bootstrap, gateway, name="w-b", data_dir=data_dir)
        log = worker.log_tail(10_000_000)
        assert _KEPT in log and _REBUILT not in log, log[-3000:]
        # The kept tables answer for the order placed before the stop.
        assert get_terminal(worker.meta["url"], first["order_id"])["status"] == "PAID"
        second = place(worker.meta["url"], order_body(), f"rebuilt-{uuid.uuid4()}")
        assert get_terminal(worker.meta["url"], second["order_id"])["status"] == "PAID"
        worker.kill()

        worker = start_worker(tmp_path, kafka_bootstrap, gateway, name="w-c", data_dir=data_dir)
        log = worker.log_tail(10_000_000)
        assert _REBUILT in log and _KEPT not in log, log[-3000:]
        for order in (first, second):  # rebuilt from the changelogs
            assert get_terminal(worker.meta["url"], order["order_id"])["status"] == "PAID"
        assert worker.stop() == 0, worker.log_tail()
    finally:
        sandbox.stop()


def test_second_worker_on_the_same_data_dir_fails_at_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    data_dir = tmp_path / "data-shared"
    try:
        worker = start_worker(
            tmp_path, kafka_bootstrap, sandbox.meta["url"], name="owner", data_dir=data_dir
        )
        intruder = start_worker(
            tmp_path,
            kafka_bootstrap,
            sandbox.meta["url"],
            name="intruder",
            data_dir=data_dir,
            wait_ready=False,
        )
        assert intruder.proc is not None
        assert intruder.proc.wait(60) != 0
        assert "ORDERFLOW_DATA_DIR" in intruder.log_tail(), intruder.log_tail()
        # The intruder's stop left the owner's state alone: no clean-stop marker while it runs.
        assert not list(data_dir.glob("**/.clean-stop"))
        assert worker.alive
        assert worker.stop() == 0, worker.log_tail()
    finally:
        sandbox.stop()


# Faust's warning when a record's delivery failed for good.
_PAYMENT_SEND_FAILED = "_on_published error for message topic orderflow-PaymentDB-changelog"
_AGENTS_STOPPED = "[^--RewindingConsumer]: Stopping..."  # logged after the AgentManager stopped


def test_sigterm_with_undelivered_changelog_records_rebuilds_tables_at_restart(
    own_broker: KafkaCluster, tmp_path: Path
) -> None:
    """A graceful stop is not enough: the marker needs every changelog record delivered."""
    bootstrap = own_broker.bootstrap
    sandbox = start_sandbox(tmp_path, key_ttl_s=600)  # see the SIGKILL test
    gateway = sandbox.meta["url"]
    data_dir = tmp_path / "data-w1"
    extra = {
        "ORDERFLOW_GATEWAY_TIMEOUT": "5",
        "ORDERFLOW_GATEWAY_DEADLINE": "10",
        "ORDERFLOW_STALL_AFTER": "8",
        "ORDERFLOW_SESSION_TIMEOUT": "10",
        "ORDERFLOW_PRODUCER_TIMEOUT": "3",
    }
    worker = start_worker(tmp_path, bootstrap, gateway, name="w1", data_dir=data_dir, extra=extra)
    try:
        set_faults(gateway, latency_ms=1500)
        keys = [f"unclean-term-{uuid.uuid4()}" for _ in range(8)]
        with ThreadPoolExecutor(4) as pool:
            placed = list(pool.map(lambda k: place(worker.meta["url"], order_body(), k), keys))
        order_ids = {o["order_id"] for o in placed}
        poll_until(
            lambda: ledger_stats(gateway)["charge_requests"] >= len(keys),
            60,
            0.05,
            "every charge request to reach the gateway",
        )
        pid = own_broker.running_pid(1)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            poll_until(
                lambda: _local_completed(data_dir) >= len(keys),
                60,
                0.1,
                "the worker to write every COMPLETED payment to its RocksDB",
            )
            poll_until(
                lambda: _PAYMENT_SEND_FAILED in worker.log_tail(10_000_000),
                60,
                0.2,
                "a PaymentDB changelog record to fail",
            )
            assert worker.proc is not None
            os.killpg(worker.proc.pid, signal.SIGTERM)
            # The agents stop (their failed records are not sent again); the consumer's final
            # commit needs the broker: let it back only then, so the stop is a clean one.
            poll_until(
                lambda: _AGENTS_STOPPED in worker.log_tail(10_000_000),
                60,
                0.2,
                "the agents to stop",
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        code = worker.proc.wait(120)
        log = worker.log_tail(10_000_000)
        assert code == 0, log[-3000:]  # a graceful stop, not the harness's SIGKILL
        assert "local tables not marked clean" in log, log[-3000:]
        behind = {
            oid
            for oid, status in _last_payment_status(bootstrap, order_ids).items()
            if status != "COMPLETED"
        }
        # Usually most are; a produce request the client gave up on may still have reached the
        # frozen broker's socket and been appended at SIGCONT. The worker cannot know which: the
        # failure alone must keep it from trusting its stores.
        print(f"{len(behind)} of {len(order_ids)} PaymentDB changelog entries behind at the stop")
        set_faults(gateway)
        worker = _restart(tmp_path, bootstrap, gateway, data_dir, extra)
        _all_paid_and_audited(worker, bootstrap, gateway, order_ids)
        assert _REBUILT in worker.log_tail(10_000_000)
    finally:
        worker.stop()
        sandbox.stop()
