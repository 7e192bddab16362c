"""Fixtures of the fault tests: a broker of the test's own, which it may stop, freeze or kill."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from orderflow.tools.localkafka import KafkaCluster
from tests.conftest import TEST_BASE_PORT


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaCluster]:
    """A single-node broker for one test, away from the session broker's ports (tests run one at
    a time, so they can share the port); SIGSTOP or SIGKILL on it disturbs no other test."""
    cluster = KafkaCluster(state_dir=tmp_path / "kafka", base_port=TEST_BASE_PORT + 30)
    try:
        cluster.start()
        yield cluster
    finally:
        pid = cluster.running_pid(1)
        if pid is not None:  # a test may have frozen it (SIGSTOP): a frozen broker cannot stop
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        cluster.stop()
