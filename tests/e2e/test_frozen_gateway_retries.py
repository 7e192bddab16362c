"""A frozen worker sends no gateway request after it wakes: the CI double charge, reproduced.

CI froze a worker (SIGSTOP) with charges in flight for longer than its gateway timeout. On waking,
its HTTP timeouts fired before it read the answers waiting in its sockets, and its retry loop sent
the same idempotency keys again, after the new owner had settled the orders; the sandbox, whose
keys had expired meanwhile, made new successful charges. Here, as in the zombie test, the worker
is frozen with charges in flight (sandbox latency 5 s), but its gateway timeout (10 s) is shorter
than the freeze, the deadline is far (the retry loop goes on after waking) and every key of the
test has expired before the worker wakes.

A gateway timeout shorter than the latency would not do: every attempt would time out before the
freeze too, the retries would open the client's circuit breaker (10 failures in a row) and the
payments would go UNKNOWN before the freeze, which is not the CI case.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from orderflow.domain.payment import idempotency_key_for
from tests.e2e.test_rebalance_fencing import _attempts_stored, _place, _ready
from tests.gateway_audit import check_gateway
from tests.harness import ManagedProcess, poll_until, start_sandbox, start_worker
from tests.invariants import assert_orders_settled_once
from tests.orders_client import (
    gateway_requests,
    get_terminal,
    ledger_stats,
    set_faults,
    set_gateway_config,
)

_LATENCY_S = 5.0
_GATEWAY_TIMEOUT_S = 10.0
_ENV = {
    "ORDERFLOW_SESSION_TIMEOUT": "6",  # the broker's minimum: the frozen worker is thrown out fast
    # Longer than the latency (no attempt times out before the freeze), shorter than the freeze:
    # the in-flight attempts' timeouts fire on waking, before their answers are read.
    "ORDERFLOW_GATEWAY_TIMEOUT": str(_GATEWAY_TIMEOUT_S),
    "ORDERFLOW_GATEWAY_DEADLINE": "600",  # far: after the freeze the retry loop would go on
    "ORDERFLOW_STALL_AFTER": "300",  # no nudge may hide or add anything here
}


def test_worker_frozen_longer_than_its_gateway_timeout_sends_no_charge_after_waking(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Keys last while the owner settles the orders; they expire before the worker wakes (CI).
    sandbox = start_sandbox(tmp_path, key_ttl_s=600)
    gateway = sandbox.meta["url"]
    frozen = start_worker(tmp_path, kafka_bootstrap, gateway, name="frozen", extra=_ENV)
    owner: ManagedProcess | None = None
    stopped = False
    try:
        owner = start_worker(tmp_path, kafka_bootstrap, gateway, name="owner", extra=_ENV)
        poll_until(lambda: _ready(frozen) and _ready(owner), 90, 0.5, "both workers assigned")
        set_faults(gateway, latency_ms=_LATENCY_S * 1000)  # charges stay in flight for 5 s
        ids = _place(owner.meta["url"], 16, f"frozen-gw-{tmp_path.name}")
        # In flight: every attempt stored and every charge request at the gateway (as in the
        # zombie test), the answers come while the worker is frozen.
        poll_until(lambda: _attempts_stored(kafka_bootstrap, set(ids)), 60, 0.2, "attempts")
        poll_until(
            lambda: ledger_stats(gateway)["charge_requests"] >= len(ids),
            60,
            what="every charge in flight",
        )
        os.killpg(frozen.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        frozen_at = time.monotonic()
        stopped = True
        for order_id in ids:
            assert get_terminal(owner.meta["url"], order_id, timeout=120)["status"] == "PAID"
        # Not waiting for the owner to commit every input (flaky on the shared broker: a
        # partition can stay uncommitted for a while): whatever the woken worker re-reads finds
        # its payment settled, and a settled payment is never charged, so the assertion below
        # holds either way.
        # Frozen longer than the gateway timeout (this is the fault, usually long true by now).
        poll_until(
            lambda: time.monotonic() - frozen_at > _GATEWAY_TIMEOUT_S + 2,
            30,
            0.2,
            "the freeze to outlast the gateway timeout",
        )
        set_gateway_config(gateway, key_ttl_s=1)  # every key of the test has expired now
        woke_at = time.time()
        os.killpg(frozen.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        stopped = False
        poll_until(lambda: _ready(frozen), 120, 0.5, "the frozen worker to rejoin")
        poll_until(lambda: _ready(owner), 120, 0.5, "the owner to settle the rebalance")
        poll_until(
            lambda: "in-flight work left to its owner" in frozen.log_tail(2_000_000),
            60,
            0.5,
            "the frozen worker's in-flight batch to be refused",
        )

        ours = {idempotency_key_for(o): o for o in ids}
        requests = [r for r in gateway_requests(gateway) if r["idempotency_key"] in ours]
        late = [
            (r["order_id"], r["outcome"])
            for r in requests
            if r["kind"] == "charge" and r["at"] >= woke_at
        ]
        assert late == [], f"charge requests after the worker woke: {late}"
        violations = [(r["order_id"], r["violation"]) for r in requests if r["violation"]]
        assert violations == [], violations
        check_gateway(kafka_bootstrap, gateway, ids)  # one successful charge per PAID order
        assert_orders_settled_once(kafka_bootstrap, set(ids))

        # The fault really happened: the owner looked up charges the frozen worker had in
        # flight, the worker saw its freeze, and its retries were refused, not sent.
        moved = {
            o for o, n in ledger_stats(gateway)["lookups_per_order"].items() if o in set(ids) and n
        }
        assert moved, "no order moved with its charge in flight"
        log = frozen.log_tail(2_000_000)
        assert "the process was frozen for" in log
        refused = {o for key, o in ours.items() if f"(key {key}) not sent" in log}
        assert refused, "no gateway request of the frozen worker was refused"
        assert refused <= moved, (refused, moved)
    finally:
        if stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(frozen.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        if owner is not None:
            owner.stop()
        frozen.stop()
        sandbox.stop()
