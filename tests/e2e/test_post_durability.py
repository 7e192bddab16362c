"""No 2xx for an order that is not durably in Kafka: a stalled broker and a crash lose nothing.

The broker is this test's own (SIGSTOP would stall every other test on the shared one): it is
frozen while orders are posted, the worker is killed with whatever it held in memory, then both
come back. Every order the client was told was accepted must exist; the others got a 503.
"""

from __future__ import annotations

import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orderflow.tools.localkafka import KafkaCluster
from tests.harness import http_json, start_sandbox, start_worker
from tests.orders_client import get_terminal, order_body, place

_WORKER_ENV = {"ORDERFLOW_POST_WAIT": "3", "ORDERFLOW_SESSION_TIMEOUT": "6"}


def _post(url: str, key: str | None) -> tuple[int, Any, dict[str, str]]:
    headers = {"Idempotency-Key": key} if key else {}
    try:
        return http_json("POST", f"{url}/orders", order_body(), headers, timeout=60)
    except OSError as exc:
        return 0, repr(exc), {}


def test_posts_during_a_broker_stall_then_a_worker_crash_are_never_2xx_and_lost(
    own_broker: KafkaCluster, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap
    sandbox = start_sandbox(tmp_path)
    worker = start_worker(
        tmp_path, bootstrap, sandbox.meta["url"], name="before", extra=_WORKER_ENV
    )
    restarted = None
    broker_pid = own_broker.running_pid(1)
    assert broker_pid is not None
    try:
        warm = place(worker.meta["url"], order_body())  # metadata known, producer connected
        keys: list[str | None] = [f"stall-{uuid.uuid4()}" for _ in range(3)] + [None] * 3
        os.kill(broker_pid, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(len(keys)) as pool:
                answers = list(pool.map(lambda k: _post(worker.meta["url"], k), keys))
            worker.kill()  # whatever the worker held in memory is gone
        finally:
            os.kill(broker_pid, signal.SIGCONT)
        # The fault really happened: the stalled broker confirmed nothing within the POST wait.
        assert all(status != 201 for status, _, _ in answers), answers
        restarted = start_worker(
            tmp_path,
            bootstrap,
            sandbox.meta["url"],
            name="after",
            data_dir=worker.meta["data_dir"],
            extra=_WORKER_ENV,
        )
        url = restarted.meta["url"]
        assert get_terminal(url, warm["order_id"])["status"] == "PAID"
        for key, (status, body, headers) in zip(keys, answers, strict=True):
            assert status == 503 or 500 <= status < 600 or 200 <= status < 300, (status, body)
            if 200 <= status < 300:
                # Accepted: it must exist and settle, whatever happened after the answer.
                assert get_terminal(url, body["order_id"])["status"] == "PAID"
            elif key is not None:
                assert headers.get("Retry-After"), headers
                # The retry with the same key is safe, and places the order once.
                assert get_terminal(url, place(url, order_body(), key)["order_id"])
            else:
                assert status == 503 and headers.get("Retry-After"), (status, body, headers)
                assert headers["Location"] == f"/orders/{body['order_id']}"
                # The client can check before placing again: it is there or it is not.
                check = http_json("GET", f"{url}{headers['Location']}")
                assert check[0] in (200, 404), check
    finally:
        if restarted is not None:
            restarted.stop()
        worker.stop()
        sandbox.stop()
