"""Fixtures of the gateway tests: a sandbox on a temporary ledger, its admin API, and clients
of it with small timeouts (no Kafka)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from orderflow.gateway.http import CircuitBreaker, HttpPaymentGateway
from orderflow.tools.sandbox.gateway import SandboxGateway
from tests.integration.gateway.sandbox_helpers import Admin, MakeClient


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxGateway]:
    gateway = SandboxGateway(tmp_path / "ledger.db", seed=1234)
    await gateway.start()
    yield gateway
    await gateway.stop()


@pytest.fixture
async def admin(sandbox: SandboxGateway) -> AsyncIterator[Admin]:
    async with aiohttp.ClientSession() as session:
        yield Admin(session, sandbox.url)


@pytest.fixture
async def make_client(sandbox: SandboxGateway) -> AsyncIterator[MakeClient]:
    clients: list[HttpPaymentGateway] = []

    def make(url: str | None = None, **overrides: Any) -> HttpPaymentGateway:
        settings: dict[str, Any] = {
            "connect_timeout": 0.5,
            "request_timeout": 0.5,
            "deadline": 3.0,
            "max_attempts": 15,
            "backoff_base": 0.01,
            "backoff_cap": 0.1,
            "rng": random.Random(99),
            # Out of the way unless a test is about the breaker.
            "breaker": CircuitBreaker(failure_threshold=10_000),
        }
        settings.update(overrides)
        client = HttpPaymentGateway(url or sandbox.url, **settings)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
