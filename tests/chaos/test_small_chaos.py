"""The small chaos run of `make test`: a few hundred orders, 2 workers, a worker SIGKILL, a
rebalance (a worker joins), a broker restart and gateway fault bursts, audited from the outside.

It starts its own broker (the session broker's port + 10: the broker restart must not hit the
broker other tests share) and stops every process it started, also when it fails.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.chaos.runner import ChaosConfig, run

_PORT = int(os.environ.get("ORDERFLOW_TEST_KAFKA_PORT", "19092")) + 10


def test_small_chaos_run_loses_no_order_and_charges_none_twice(tmp_path: Path) -> None:
    cfg = ChaosConfig(
        orders=300,
        rate=10,
        workers=2,
        brokers=1,
        faults="small",
        seed=7,
        out=tmp_path / "result.json",
        work_dir=tmp_path / "run",
        drain_deadline_s=90,
        base_port=_PORT,
        ready_timeout_s=90,
    )
    result = run(cfg)

    # The faults really happened, not only the run ending well.
    played = {r.kind: r for r in result.faults if r.ok}
    assert set(played) == {
        "worker_kill",
        "add_worker",
        "broker_restart",
        "gateway_drop",
        "gateway_5xx",
    }, result.faults
    assert played["worker_kill"].detail["returncode"] == -signal.SIGKILL
    assert played["broker_restart"].detail["killed"] is True
    assert played["gateway_drop"].detail["charge_requests_during"] > 0
    assert played["gateway_5xx"].detail["charge_requests_during"] > 0
    assert result.figures["gateway_responses_dropped"] > 0
    # Every keyed order is accepted in the end (the client retries); an unkeyed POST is never
    # retried, so a 503 during the broker restart leaves it unplaced.
    assert result.figures["orders_accepted"] + result.figures["orders_never_accepted"] == cfg.orders
    assert result.figures["orders_never_accepted"] <= result.figures["orders_unkeyed_tried"]

    # The audit's verdict: nothing lost, charged twice, paid without its charge, inconsistent.
    assert result.ok, result.failures
    assert result.figures["orders_lost"] == 0
    assert result.figures["max_successful_charges_per_order"] == 1
    assert result.figures["bare_5xx"] == 0
    # The receiver refused POSTs (at random and during its outage), and yet every accepted
    # order's final state reached it (the audit fails the run otherwise).
    assert result.figures["webhook_posts_refused_by_receiver"] > 0
    assert (
        result.figures["webhook_orders_final_state_delivered"] == result.figures["orders_accepted"]
    )

    # What clients felt is measured for every fault and for every order (figures, not checks).
    assert set(result.availability["by_fault"]) == {r.kind for r in result.faults}
    assert result.availability["whole_run"]["orders"] == cfg.orders
    written = json.loads(cfg.out.read_text())["availability"]
    assert written["by_fault"].keys() == result.availability["by_fault"].keys()
