"""Faust CLI commands other than ``worker`` import the app but never touch its local tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orderflow.tables.local_state import LOCK_FILE


def test_app_command_leaves_an_uncleanly_stopped_data_dir_alone(tmp_path: Path) -> None:
    # `faust -A orderflow.app <command>` sends on_worker_init too: the guard must act only
    # when the app service starts (the worker), or a command (here Faust's `tables`) next to a
    # running worker would fail on its lock, and one run after a crash would do the worker's
    # wiping.
    data_dir = tmp_path / "data"
    store = data_dir / "v1" / "tables" / "PaymentDB-0.db"
    store.mkdir(parents=True)
    (store / "000004.log").write_bytes(b"local only")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    env["ORDERFLOW_DATA_DIR"] = str(data_dir)
    env["ORDERFLOW_GATEWAY"] = "sandbox"  # the app is built at import: a worker's settings
    env["ORDERFLOW_KAFKA_BOOTSTRAP"] = "127.0.0.1:1"  # nothing may need a broker
    done = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "orderflow.app", "tables"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert b"OrderDB" in done.stdout  # the app was built, its tables listed
    assert (store / "000004.log").read_bytes() == b"local only"
    assert not (data_dir / LOCK_FILE).exists()
