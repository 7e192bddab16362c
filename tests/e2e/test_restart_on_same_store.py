"""Restarts on the worker's own data dir: RocksDB after SIGKILL, and the memory store.

A SIGKILL leaves RocksDB with writes its changelog may lack, so the restarted worker rebuilds the
stores from the changelogs (``orderflow.tables.local_state``) and must still settle every order
exactly once and keep every idempotency key. The memory store keeps nothing: it replays the
changelogs at every start.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_worker_faults import _assert_exactly_once, _place_many
from tests.harness import poll_until, start_sandbox, start_worker
from tests.orders_client import ledger_stats, order_body, place, set_faults

_FAST = {
    "ORDERFLOW_GATEWAY_DEADLINE": "3",
    "ORDERFLOW_GATEWAY_TIMEOUT": "1",
    "ORDERFLOW_STALL_AFTER": "4",
}


def test_sigkill_then_restart_on_the_same_data_dir_rebuilds_the_tables_and_settles_every_order_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    try:
        set_faults(gateway, latency_ms=400, latency_jitter_ms=300)  # keep charges in flight
        first = start_worker(
            tmp_path,
            kafka_bootstrap,
            gateway,
            name="killed",
            extra={**_FAST, "ORDERFLOW_PAYMENT_BATCH": "4"},
        )
        orders = _place_many(first.meta["url"], 40, f"samedir-{tmp_path.name}")
        poll_until(lambda: ledger_stats(gateway)["charges"] >= 3, 30, what="first charges")
        first.kill()
        assert ledger_stats(gateway)["charges"] < len(orders), "the kill came too late"
        data_dir = first.meta["data_dir"]
        assert any(Path(data_dir).rglob("*")), "the killed worker left no RocksDB state"
        set_faults(gateway)
        second = start_worker(
            tmp_path, kafka_bootstrap, gateway, name="restarted", data_dir=data_dir, extra=_FAST
        )
        try:
            assert "unclean stop, rebuilding tables from their changelogs" in second.log_tail(
                200_000
            )
            _assert_exactly_once(second.meta["url"], gateway, orders, kafka_bootstrap)
            for key, order_id, token in orders[:5]:  # idempotency keys survived too
                assert place(second.meta["url"], order_body(token), key)["order_id"] == order_id
        finally:
            assert second.stop() == 0, second.log_tail()
    finally:
        sandbox.stop()


def test_memory_store_runs_the_pipeline_and_replays_the_changelog_at_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    memory = {**_FAST, "ORDERFLOW_STORE": "memory"}
    try:
        first = start_worker(tmp_path, kafka_bootstrap, gateway, name="mem1", extra=memory)
        try:
            orders = _place_many(first.meta["url"], 10, f"memory-{tmp_path.name}")
            _assert_exactly_once(first.meta["url"], gateway, orders, kafka_bootstrap)
        finally:
            assert first.stop() == 0, first.log_tail()
        # Nothing on disk to resume from: the orders come back from the changelog replay.
        second = start_worker(
            tmp_path,
            kafka_bootstrap,
            gateway,
            name="mem2",
            data_dir=tmp_path / "mem2-empty",
            extra=memory,
        )
        try:
            _assert_exactly_once(second.meta["url"], gateway, orders, kafka_bootstrap)
            for key, order_id, token in orders:
                assert place(second.meta["url"], order_body(token), key)["order_id"] == order_id
            assert "| store       | memory:" in second.log_tail(200_000)  # Faust's banner
        finally:
            assert second.stop() == 0, second.log_tail()
    finally:
        sandbox.stop()
