"""`faust -A <app> replay|trace|dlq ...` runs the same commands as `orderflow replay|trace|dlq`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from orderflow.topics import ORDER_CREATED
from tests.integration.replay.support import (
    Out,
    cli,
    created,
    dead_letter,
    new_order_id,
    produce,
)

# What app.py does once `register_commands(app)` is added there; a module of our own meanwhile.
APP_MODULE = """
from orderflow.app import app
from orderflow.tools.replay.faust_commands import register_commands

register_commands(app)
"""


def _faust(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp / "replay_cli_app.py").write_text(APP_MODULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp), os.getcwd(), env.get("PYTHONPATH", "")])
    env["ORDERFLOW_DATA_DIR"] = str(tmp / "data")
    env["ORDERFLOW_GATEWAY"] = "sandbox"  # the app is built at import: a worker's settings
    return subprocess.run(
        [sys.executable, "-m", "faust", "-A", "replay_cli_app", *args],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_faust_app_commands_forward_every_option_to_the_same_implementation(
    replay_bootstrap: str, tmp_path: Path
) -> None:
    order_id = new_order_id()
    [record, _] = await produce(
        replay_bootstrap,
        [
            Out(ORDER_CREATED, order_id.encode(), created(order_id)),
            dead_letter(order_id, b"{broken", ORDER_CREATED, "malformed: value: not JSON"),
        ],
    )
    replay = [
        "replay",
        "--topic",
        ORDER_CREATED,
        "--partition",
        str(record.partition),
        "--from-offset",
        str(record.offset),
        "--to-offset",
        str(record.offset),
        "--bootstrap",
        replay_bootstrap,
    ]

    via_faust = await asyncio.to_thread(_faust, tmp_path, *replay)
    assert via_faust.returncode == 0, via_faust.stderr
    direct = await cli(replay_bootstrap, *replay[:-2])
    assert via_faust.stdout == direct.out
    assert len(direct.lines) == 1

    listed = await asyncio.to_thread(
        _faust, tmp_path, "dlq", "list", "--order-id", order_id, "--bootstrap", replay_bootstrap
    )
    assert listed.returncode == 0, listed.stderr
    assert f'"order_id":"{order_id}"' in listed.stdout

    wrong = await asyncio.to_thread(_faust, tmp_path, "replay", "--no-such-option")
    assert wrong.returncode == 2
    assert "No such option: --no-such-option" in wrong.stderr
