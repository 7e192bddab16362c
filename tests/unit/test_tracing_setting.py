"""``ORDERFLOW_TRACING``: off by default with nothing of OpenTelemetry imported; asked for without
the packages, the worker refuses to start with a message naming the extra (fail closed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orderflow.config import ConfigError, Settings

# Run first in the child: every OpenTelemetry import fails there, as when it is not installed.
NO_OPENTELEMETRY = "import sys; sys.modules['opentelemetry'] = None\n"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {
        "ORDERFLOW_GATEWAY": "sandbox",
        "ORDERFLOW_DATA_DIR": str(tmp / "data"),
        "ORDERFLOW_SANDBOX_DB": str(tmp / "ledger.db"),
        "PATH": "/usr/bin:/bin",
        **extra,
    }


def _child(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_OPENTELEMETRY + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tracing_is_off_by_default_and_refuses_unknown_modes() -> None:
    assert Settings.from_env({"ORDERFLOW_GATEWAY": "sandbox"}).tracing == "off"
    assert (
        Settings.from_env({"ORDERFLOW_GATEWAY": "sandbox", "ORDERFLOW_TRACING": "console"}).tracing
        == "console"
    )
    with pytest.raises(ConfigError, match="ORDERFLOW_TRACING"):
        Settings.from_env({"ORDERFLOW_GATEWAY": "sandbox", "ORDERFLOW_TRACING": "jaeger"})


def test_with_tracing_off_the_worker_builds_without_opentelemetry(tmp_path: Path) -> None:
    child = _child(
        """
        import orderflow.app as built
        from orderflow import tracing
        assert not tracing.enabled()
        assert built.app.conf.web_application_options == {"middlewares": []}
        assert not [m for m in sys.modules if m.startswith("opentelemetry.")], "imported"
        print("built-untraced")
    """,
        _env(tmp_path),
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert "built-untraced" in child.stdout


@pytest.mark.parametrize("mode", ["console", "otlp"])
def test_tracing_asked_for_without_the_packages_refuses_to_start(tmp_path: Path, mode: str) -> None:
    child = _child(
        """
        import runpy
        sys.argv = ["faust", "-A", "orderflow.app", "worker"]
        runpy.run_module("faust", run_name="__main__")
    """,
        _env(tmp_path, ORDERFLOW_TRACING=mode),
    )
    assert child.returncode == 1, (child.stdout[-1000:], child.stderr[-2000:])
    assert (
        f"orderflow: configuration refused: ORDERFLOW_TRACING={mode} needs the "
        "OpenTelemetry packages: pip install 'orderflow[tracing]'"
    ) in child.stderr
    assert "Traceback" not in child.stderr
