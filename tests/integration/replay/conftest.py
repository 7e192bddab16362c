"""Fixtures of the replay tests: a broker of their own, with the orderflow topics created.

These tests write synthetic events (``order.created`` with approving tokens, fake changelog rows,
dead letters) straight onto the orderflow topics. On the shared test broker a worker of another
test, in the same consumer group, would consume and charge them and its ledger totals could no
longer be checked; so the replay tests get a broker no worker ever reads.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orderflow.tools.localkafka import KafkaCluster
from tests.conftest import TEST_BASE_PORT
from tests.integration.replay.support import ensure_orderflow_topics


@pytest.fixture(scope="package")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A single-node broker for this package only (two ports above the session broker's)."""
    cluster = KafkaCluster(
        state_dir=tmp_path_factory.mktemp("replay-kafka"), base_port=TEST_BASE_PORT + 2
    )
    try:
        cluster.start()
        yield cluster.bootstrap
    finally:
        cluster.stop()


@pytest.fixture(scope="package")
async def replay_bootstrap(kafka_bootstrap: str) -> str:
    """The replay tests' broker, with every orderflow topic created as the worker would."""
    await ensure_orderflow_topics(kafka_bootstrap)
    return kafka_bootstrap
