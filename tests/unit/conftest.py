"""Fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from orderflow.app import Orderflow
from tests.unit.builders import unstarted_flow


@pytest.fixture
def flow(tmp_path: Path) -> Orderflow:
    """A worker's app, built but not started (no broker, memory store, sandbox gateway)."""
    return unstarted_flow(tmp_path)
