"""Fixtures of the replay tests: the orderflow topics exist (8 partitions each)."""

from __future__ import annotations

import pytest

from tests.integration.replay.support import ensure_orderflow_topics


@pytest.fixture(scope="session")
async def replay_bootstrap(kafka_bootstrap: str) -> str:
    """The test broker, with every orderflow topic created as the worker would."""
    await ensure_orderflow_topics(kafka_bootstrap)
    return kafka_bootstrap
