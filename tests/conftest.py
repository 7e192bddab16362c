"""Shared fixtures: a real Kafka broker for the session, and process helpers for tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orderflow.localkafka import KafkaCluster, broker_is_reachable
from tests.harness import STARTED

# The tests' broker listens away from 9092 so that `make test` runs beside a `make run`.
TEST_BASE_PORT = int(os.environ.get("ORDERFLOW_TEST_KAFKA_PORT", "19092"))


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A reachable broker: ORDERFLOW_TEST_KAFKA_BOOTSTRAP if given, else one we start and stop."""
    external = os.environ.get("ORDERFLOW_TEST_KAFKA_BOOTSTRAP")
    if external:
        assert broker_is_reachable(external), f"ORDERFLOW_TEST_KAFKA_BOOTSTRAP={external} is down"
        yield external
        return
    cluster = KafkaCluster(state_dir=tmp_path_factory.mktemp("kafka"), base_port=TEST_BASE_PORT)
    try:
        cluster.start()
        yield cluster.bootstrap
    finally:
        cluster.stop()


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """A safety net: whatever a failed test did not stop is stopped here."""
    yield
    for proc in STARTED:
        if proc.alive:
            proc.stop(timeout=10)


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    return tmp_path
