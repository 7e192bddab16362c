"""The app's wiring of the fence: a revocation is fenced before Faust acts on it (finding 1), and
the gateway client asks the fence before every request."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from orderflow.app import build
from orderflow.config import Settings
from orderflow.domain.payment import idempotency_key_for
from orderflow.faust_glue import FencedApp
from orderflow.fencing import Fenced
from orderflow.gateway.base import ChargeRequest, TransientGatewayError


def test_the_fence_learns_of_a_revocation_before_faust_revokes_tables_and_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faust revokes the tables and flushes the producer before its on_partitions_revoked signal:
    # fenced only in the signal, in-flight work could still write during that window.
    flow = build(
        Settings.from_env(
            {
                "ORDERFLOW_DATA_DIR": str(tmp_path),
                "ORDERFLOW_STORE": "memory",
                "ORDERFLOW_GATEWAY": "sandbox",
            }
        )
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


def test_the_gateway_client_asks_the_fence_before_every_request_of_a_bound_batch(
    tmp_path: Path,
) -> None:
    # A zombie's charge retries (and lookups) after its partition moved would reach the gateway
    # after the new owner settled the order: with an expired key, a second charge.
    with socket.socket() as sock:  # a port nobody listens on: any request fails, slowly
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    flow = build(
        Settings.from_env(
            {
                "ORDERFLOW_DATA_DIR": str(tmp_path),
                "ORDERFLOW_STORE": "memory",
                "ORDERFLOW_GATEWAY": "http",
                "ORDERFLOW_GATEWAY_API_KEY": "sk_test_fence",
                "ORDERFLOW_GATEWAY_URL": f"http://127.0.0.1:{port}",
                "ORDERFLOW_GATEWAY_TIMEOUT": "0.2",
                "ORDERFLOW_GATEWAY_DEADLINE": "0.5",
            }
        )
    )
    fence = flow.app.fence
    assert fence is not None
    key = idempotency_key_for("o-1")
    request = ChargeRequest(key, "o-1", 500, "EUR", "tok_visa")

    async def stale_batch() -> None:
        gateway = await flow.gateway.get()
        fence.bind()  # as the agents do per batch
        fence.revoked()  # its partition moved
        with pytest.raises(Fenced):
            await gateway.charge(request)
        with pytest.raises(Fenced):
            await gateway.find_charge(key)

    async def unbound() -> None:
        # Timers and web views are not bound to a batch: their requests go out.
        gateway = await flow.gateway.get()
        with pytest.raises(TransientGatewayError, match="deadline"):
            await gateway.find_charge(key)

    async def both() -> None:
        try:
            await asyncio.create_task(stale_batch())
            await asyncio.create_task(unbound())
        finally:
            await flow.gateway.close()

    asyncio.run(both())
    assert fence.refused == 2
