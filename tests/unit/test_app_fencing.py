"""The app's wiring of the fence: a revocation is fenced before Faust acts on it (finding 1)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from orderflow.app import FencedApp, build
from orderflow.config import Settings


def test_the_fence_learns_of_a_revocation_before_faust_revokes_tables_and_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faust revokes the tables and flushes the producer before its on_partitions_revoked signal:
    # fenced only in the signal, in-flight work could still write during that window.
    flow = build(
        Settings.from_env({"ORDERFLOW_DATA_DIR": str(tmp_path), "ORDERFLOW_STORE": "memory"})
    )
    app = flow.app
    assert isinstance(app, FencedApp) and app.fence is not None
    fence = app.fence
    seen: list[bool] = []

    class Stop(Exception):
        pass

    def tables_revoked(revoked: Any) -> None:
        seen.append(fence.rebalancing)
        raise Stop  # enough: the rest needs a running consumer

    async def crash(exc: BaseException) -> None:
        assert isinstance(exc, Stop)

    monkeypatch.setattr(app.tables, "on_partitions_revoked", tables_revoked)
    monkeypatch.setattr(app, "crash", crash)
    asyncio.run(app._on_partitions_revoked(set()))
    assert seen == [True]
