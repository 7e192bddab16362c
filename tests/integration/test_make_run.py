"""`make run` as a user starts it: scripts/run.sh, one worker with the embedded sandbox gateway."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
from pathlib import Path

from tests.harness import ManagedProcess, free_port, http_json, poll_until, wait_worker_ready
from tests.orders_client import get_terminal, order_body, place

REPO = Path(__file__).resolve().parents[2]


def _closed(url: str) -> bool:
    try:
        http_json("GET", f"{url}/health", timeout=2)
    except OSError:
        return True
    return False


def test_make_run_script_serves_orders_through_the_embedded_sandbox_and_stops_on_ctrl_c(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    port = free_port()
    ledger = tmp_path / "embedded-ledger.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    # The broker answers, so the script starts none; no gateway chosen: the script asks for the
    # embedded sandbox.
    env.update(
        {
            "ORDERFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "ORDERFLOW_WEB_PORT": str(port),
            "ORDERFLOW_DATA_DIR": str(tmp_path / "data"),
            "ORDERFLOW_SANDBOX_DB": str(ledger),
        }
    )
    run = ManagedProcess(
        "make-run",
        ["bash", str(REPO / "scripts" / "run.sh")],
        env,
        tmp_path / "make-run.log",
        meta={"url": f"http://127.0.0.1:{port}"},
    )
    run.start()
    try:
        wait_worker_ready(run)
        url = run.meta["url"]
        # The script made (or reused) a development key under .run/ and printed it.
        log = run.log_tail(100_000)
        match = re.search(r"Development API key \(client \"dev\"[^)]*\): (ofk_\S+)", log)
        assert match, log[-2000:]
        key = match.group(1)
        assert http_json("POST", f"{url}/orders", order_body())[0] == 401  # the test key: no
        paid = place(url, order_body("tok_visa"), api_key=key)
        declined = place(url, order_body("tok_chargeDeclined"), api_key=key)
        assert get_terminal(url, paid["order_id"], api_key=key)["status"] == "PAID"
        assert get_terminal(url, declined["order_id"], api_key=key)["status"] == "PAYMENT_FAILED"
        assert "embedded sandbox gateway at" in run.log_tail(100_000)
        assert "payment gateway: sandbox" in run.log_tail(100_000)  # asked for by run.sh
        assert "event loop: uvloop.Loop" in run.log_tail(100_000)  # ORDERFLOW_EVENT_LOOP default
        assert http_json("GET", f"{url}/ready")[1]["gateway"] == "sandbox"
        with sqlite3.connect(ledger) as db:
            rows = dict(
                db.execute(
                    "SELECT order_id, status FROM charges WHERE order_id IN (?, ?)",
                    (paid["order_id"], declined["order_id"]),
                ).fetchall()
            )
        assert rows == {paid["order_id"]: "succeeded", declined["order_id"]: "failed"}
        # Ctrl-C in a terminal signals the whole foreground group: the script and its worker.
        assert run.proc is not None
        os.killpg(run.proc.pid, signal.SIGINT)
        run.proc.wait(60)
        poll_until(lambda: _closed(url), 30, what="the worker's port to close")
    finally:
        run.stop()
