"""Shared fixtures: a real Kafka broker for the session, and process helpers for tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from orderflow.tools.localkafka import KafkaCluster, broker_is_reachable

# `orderflow.app.app` builds the worker's app on first use (Faust's `-A` asks for it), and it needs a
# gateway chosen explicitly: tests that import it get the sandbox. Processes the tests start get
# their own environment (tests/harness.py).
os.environ.setdefault("ORDERFLOW_GATEWAY", "sandbox")
from tests.harness import STARTED, ManagedProcess, start_sandbox, start_worker

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


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ManagedProcess, ManagedProcess]]:
    """One worker and its own sandbox gateway, shared by the tests of a module."""
    tmp = tmp_path_factory.mktemp("stack")
    sandbox = start_sandbox(tmp)
    try:
        worker = start_worker(tmp, kafka_bootstrap, sandbox.meta["url"])
        try:
            yield worker, sandbox
        finally:
            worker.stop()
    finally:
        sandbox.stop()
