"""Fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderflow.app import Orderflow, build
from orderflow.config import Settings


@pytest.fixture
def flow(tmp_path: Path) -> Orderflow:
    """A worker's app, built but not started (no broker, memory store, sandbox gateway)."""
    return build(
        Settings.from_env(
            {
                "ORDERFLOW_DATA_DIR": str(tmp_path),
                "ORDERFLOW_STORE": "memory",
                "ORDERFLOW_GATEWAY": "sandbox",
                "ORDERFLOW_API_AUTH": "none",
            }
        )
    )
