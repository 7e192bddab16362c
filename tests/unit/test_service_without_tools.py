"""The service and its tools apart: a worker with a real gateway loads no ``orderflow.tools``
module, and the debugging commands load no Faust app (import-linter checks the imports
statically; these check what a process actually loads)."""

from __future__ import annotations

import configparser
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import orderflow


def _child(code: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={"ORDERFLOW_DATA_DIR": str(tmp / "data"), "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_worker_with_a_real_gateway_loads_no_tools_module(tmp_path: Path) -> None:
    child = _child(
        """
        import sys
        import orderflow.app as built
        assert built.app.conf.id, "no app"
        assert built.orderflow.settings.gateway == "http"
        print(sorted(m for m in sys.modules if m.startswith("orderflow.tools")))
        """,
        tmp_path,
        ORDERFLOW_GATEWAY="http",
        ORDERFLOW_GATEWAY_URL="http://127.0.0.1:9",
        ORDERFLOW_GATEWAY_API_KEY="sk_test_not_used",
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "[]"


def test_the_debugging_commands_load_no_faust_app(tmp_path: Path) -> None:
    child = _child(
        """
        import sys
        from orderflow.cli import orderflow, run_async
        import asyncio
        assert asyncio.run(run_async(["trace", "--help"])) == 0
        assert asyncio.run(run_async(["dlq", "list", "--help"])) == 0
        print(sorted(m for m in sys.modules if m in ("orderflow.app", "faust") ))
        """,
        tmp_path,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip().splitlines()[-1] == "[]"


def test_every_service_module_is_under_the_import_contract() -> None:
    # A new top-level module is service code unless it is the CLI: the contract must list it.
    config = configparser.ConfigParser()
    config.read(Path(__file__).parents[2] / "setup.cfg")
    listed = set(config["importlinter:contract:service-not-tools"]["source_modules"].split())
    modules = {f"orderflow.{m.name}" for m in pkgutil.iter_modules(orderflow.__path__)}
    assert modules - {"orderflow.cli", "orderflow.__main__", "orderflow.tools"} == listed
