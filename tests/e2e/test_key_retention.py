"""An Idempotency-Key names its order for the retention, then may place a new one, on the same
partition (its single writer decides every generation of the key)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from pathlib import Path

from aiokafka.partitioner import murmur2

from tests.harness import http_json, poll_until, start_sandbox, start_worker
from tests.orders_client import get_terminal, order_body, place

RETENTION_S = 6.0
PARTITIONS = 8  # the workers' default


def _partition(order_id: str) -> int:
    return int(murmur2(order_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def _age(order: dict[str, object]) -> float:
    return time.time() - datetime.fromisoformat(str(order["created_at"])).timestamp()


def test_same_key_within_retention_is_the_same_order_after_it_a_new_one_on_the_same_partition(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    worker = start_worker(
        tmp_path,
        kafka_bootstrap,
        sandbox.meta["url"],
        extra={"ORDERFLOW_IDEMPOTENCY_RETENTION": f"{RETENTION_S:g}s"},
    )
    try:
        url, key = worker.meta["url"], f"retained-{uuid.uuid4()}"
        first = place(url, order_body(), key=key)
        status, again, headers = http_json(
            "POST", f"{url}/orders", order_body(), {"Idempotency-Key": key}
        )
        if _age(first) < RETENTION_S - 1:  # (a machine too slow to ask in time proves nothing)
            assert (status, again["order_id"]) == (201, first["order_id"])
            assert headers.get("Idempotent-Replayed") == "true"
        assert get_terminal(url, first["order_id"])["status"] == "PAID"

        answers: list[tuple[int, str, float]] = []

        def new_order() -> str | None:
            status, answer, _ = http_json(
                "POST", f"{url}/orders", order_body(), {"Idempotency-Key": key}
            )
            answers.append((status, answer["order_id"], _age(first)))
            return answer["order_id"] if answer["order_id"] != first["order_id"] else None

        second_id = poll_until(new_order, 60, 0.5, "the key to name a new order")
        # Until the retention had passed, every answer was the first order.
        assert all(s == 201 and o == first["order_id"] for s, o, _ in answers[:-1]), answers
        assert answers[-1][2] >= RETENTION_S, answers[-1]
        assert _partition(second_id) == _partition(first["order_id"])
        second = get_terminal(url, second_id)
        assert second["status"] == "PAID"
        # The first order is still there under its own id; the key now names the second.
        assert http_json("GET", f"{url}/orders/{first['order_id']}")[1]["status"] == "PAID"
        status, again, _ = http_json(
            "POST", f"{url}/orders", order_body(), {"Idempotency-Key": key}
        )
        if _age(second) < RETENTION_S - 1:
            assert (status, again["order_id"]) == (201, second_id)
    finally:
        worker.stop()
        sandbox.stop()
