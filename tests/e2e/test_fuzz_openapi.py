"""Schemathesis, driven by the worker's own ``/openapi.json``, against a running worker.

Real broker, the sandbox gateway, one worker. Every operation is fuzzed with data that fits the
document (positive) and, where it takes input, data that does not (negative). Every answer must
be no 5xx, have a documented status and content type, headers and a body matching its schema.
Hypothesis is derandomized (the same cases on every run) and shrinking is off, so the run is
reproducible and bounded. The number of requests actually sent is counted and asserted.

The test client's API key (or ``ORDERFLOW_FUZZ_API_KEY``) is sent as ``Authorization: Bearer``, and
``ORDERFLOW_FUZZ_WORKER_ENV`` (a JSON object) is added to the worker's environment.

Run alone: ``ORDERFLOW_TEST_KAFKA_PORT=... .venv/bin/python -m pytest tests/e2e/test_fuzz_openapi.py``
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.harness import TEST_API_KEY, ManagedProcess, start_sandbox, start_worker
from tests.webhook_receiver import forget_endpoints

# The test client's key (the harness configures it on every worker): the fuzz reaches past the
# 401s into the order handling. ORDERFLOW_FUZZ_API_KEY overrides it.
API_KEY = os.environ.get("ORDERFLOW_FUZZ_API_KEY") or TEST_API_KEY
WORKER_ENV: dict[str, str] = json.loads(os.environ.get("ORDERFLOW_FUZZ_WORKER_ENV") or "{}")

# Examples per (operation, mode): tuned for a few minutes on a 2-core machine. Operations without
# parameters yield a single distinct case however many are asked for.
EXAMPLES = {
    ("POST", "/orders", GenerationMode.POSITIVE): 500,
    ("POST", "/orders", GenerationMode.NEGATIVE): 500,
    ("GET", "/orders/{order_id}", GenerationMode.POSITIVE): 250,
    ("GET", "/orders/{order_id}", GenerationMode.NEGATIVE): 250,
}
OTHER_EXAMPLES = 5
MIN_REQUESTS = 1000
MAX_WAIT_S = 0.2  # a long-poll GET answers after at most this (the document allows 30)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzzed(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    sandbox = start_sandbox(tmp)
    try:
        worker = start_worker(tmp, kafka_bootstrap, sandbox.meta["url"], extra=WORKER_ENV)
        try:
            yield worker
        finally:
            # The fuzz registers webhook endpoints for the test client: none may outlive it.
            forget_endpoints(worker.meta["url"])
            worker.stop()
    finally:
        sandbox.stop()


def _short_wait(case: Any) -> None:
    """A generated ``wait`` would hold each GET up to 30 s: keep valid ones short."""
    wait = (case.query or {}).get("wait")
    if isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait > MAX_WAIT_S:
        case.query["wait"] = MAX_WAIT_S


def _fuzz(operation: Any, mode: GenerationMode, examples: int, call: Any) -> None:
    """Run ``call`` on ``examples`` derandomized cases of ``operation`` in ``mode``."""

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a bounded, reproducible run
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        call(case)

    run()


def test_schemathesis_finds_no_5xx_and_no_answer_off_the_document(
    fuzzed: ManagedProcess,
) -> None:
    base_url = fuzzed.meta["url"]
    session = requests.Session()
    document = session.get(f"{base_url}/openapi.json", timeout=10).json()
    if not API_KEY:
        # A worker given no API key serves /orders without one: fuzzing the document's bearer
        # requirement would only report that (the auth tests own it).
        document.pop("security", None)
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}
    sent: Counter[str] = Counter()
    started = time.monotonic()

    def call(case: Any, label: str) -> None:
        _short_wait(case)
        sent[label] += 1
        case.call_and_validate(
            base_url=base_url, session=session, headers=headers, checks=CHECKS, timeout=30
        )

    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the document does not describe
        operation = result.ok()
        method, path = operation.method.upper(), operation.path
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            examples = EXAMPLES.get((method, path, mode))
            if examples is None:
                if mode is GenerationMode.NEGATIVE:
                    continue  # nothing to negate in an operation without input
                examples = OTHER_EXAMPLES
            label = f"{method} {path} {mode.value}"
            _fuzz(operation, mode, examples, lambda case, label=label: call(case, label))

    elapsed = time.monotonic() - started
    total = sum(sent.values())
    print(f"\nschemathesis: {total} requests in {elapsed:.0f}s: {dict(sent)}")
    assert total >= MIN_REQUESTS, dict(sent)
    for label in ("POST /orders", "GET /orders/{order_id}"):  # each fuzzed both ways
        assert sent[f"{label} positive"] >= 200 and sent[f"{label} negative"] >= 200, dict(sent)
