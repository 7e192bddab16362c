"""A long-poll that spans a partition move must never answer 404 for an order that exists.

A client that believed such a 404 would place the order again: the customer would pay twice.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from aiokafka.partitioner import murmur2

from tests.harness import (
    forwarded_headers,
    http_json,
    key_order_id,
    poll_until,
    start_sandbox,
    start_worker,
)
from tests.orders_client import place, set_faults

PARTITIONS = 8


def _partition(order_id: str) -> int:
    # The producer's default partitioner (murmur2 of the key), which Faust's routing also uses.
    return int(murmur2(order_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def _one_key_per_partition() -> dict[int, str]:
    keys: dict[int, str] = {}
    while len(keys) < PARTITIONS:
        key = f"move-{uuid.uuid4()}"
        keys.setdefault(_partition(key_order_id(key)), key)
    return keys


def _served(url: str, order_id: str) -> bool:
    return http_json("GET", f"{url}/orders/{order_id}")[0] == 200


def test_long_polls_spanning_a_partition_move_never_answer_404(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    first = start_worker(tmp_path, kafka_bootstrap, gateway, name="first")
    second = None
    try:
        # Every charge hangs: the orders stay PENDING, so every long-poll waits its full time.
        set_faults(gateway, timeout_rate=1.0, hang_s=120)
        orders = [
            place(
                first.meta["url"],
                {
                    "customer_id": "c-1",
                    "currency": "EUR",
                    "items": [{"sku": "S", "quantity": 1, "unit_amount": 100}],
                    "payment": {"token": "tok_visa"},
                },
                key,
            )["order_id"]
            for key in _one_key_per_partition().values()
        ]
        assert {_partition(o) for o in orders} == set(range(PARTITIONS))
        stop = threading.Event()
        answers: list[tuple[str, int, object]] = []

        def keep_polling(order_id: str) -> None:
            while not stop.is_set():
                try:
                    status, body, _ = http_json(
                        "GET", f"{first.meta['url']}/orders/{order_id}?wait=4", timeout=30
                    )
                except OSError as exc:
                    status, body = 0, repr(exc)
                answers.append((order_id, status, body))

        with ThreadPoolExecutor(len(orders)) as pool:
            for order_id in orders:
                pool.submit(keep_polling, order_id)
            poll_until(lambda: len(answers) >= len(orders), 30, what="first long-poll answers")
            before_move = len(answers)
            second = start_worker(tmp_path, kafka_bootstrap, gateway, name="second")
            urls = [first.meta["url"], second.meta["url"]]
            poll_until(
                lambda: all(http_json("GET", f"{u}/ready")[0] == 200 for u in urls),
                90,
                0.3,
                "both workers ready",
            )
            settled_at = len(answers)
            # Let every poll that spanned the move come back, and a few more after it.
            poll_until(
                lambda: len(answers) >= settled_at + 2 * len(orders),
                60,
                what="long-polls after the move",
            )
            stop.set()
        # The partitions really moved: the first worker no longer owns some of the orders.
        moved = [
            o
            for o in orders
            if http_json(
                "GET",
                f"{first.meta['url']}/orders/{o}",
                headers=forwarded_headers("GET", f"/orders/{o}"),
            )[0]
            == 503
        ]
        assert moved, "no partition moved to the second worker"
        statuses = [status for _, status, _ in answers]
        assert 404 not in statuses, [a for a in answers if a[1] == 404]
        assert set(statuses) <= {200, 503}, answers
        # The polls really spanned the move: answered while the second worker joined (a poll
        # whose partition moves waits for the new owner, or answers 503 when its budget ends).
        assert settled_at > before_move, (before_move, settled_at)
        print(f"long-poll answers during the move: {Counter(statuses)}, moved: {len(moved)}/8")
        # Each order still exists and is served, from either worker.
        for order_id in orders:
            for url in urls:
                poll_until(partial(_served, url, order_id), 30, what=f"{order_id} from {url}")
    finally:
        set_faults(gateway)
        if second is not None:
            second.stop()
        first.stop()
        sandbox.stop()
