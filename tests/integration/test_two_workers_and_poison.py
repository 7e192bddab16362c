"""Scale-out and bad input on the wire: two workers share the partitions; poison goes to the DLQ."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from orderflow.topics import DEAD_LETTERS, ORDER_CREATED
from orderflow.wire.dead_letters import DLQ_HEADER_REASON, DLQ_HEADER_TOPIC
from tests.harness import http_json, poll_until, start_sandbox, start_worker
from tests.kafka_helpers import wait_for_records
from tests.orders_client import get_terminal, ledger_stats, order_body, place


def _both_ready(urls: list[str]) -> bool:
    return all(http_json("GET", f"{u}/ready", timeout=5)[0] == 200 for u in urls)


def test_two_workers_serve_any_order_from_either_worker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    first = start_worker(tmp_path, kafka_bootstrap, sandbox.meta["url"], name="one")
    second = start_worker(tmp_path, kafka_bootstrap, sandbox.meta["url"], name="two")
    urls = [first.meta["url"], second.meta["url"]]
    try:
        poll_until(lambda: _both_ready(urls), 60, 0.3, "both workers ready after the rebalance")
        placed = [place(urls[i % 2], order_body(), f"two-{uuid.uuid4()}") for i in range(12)]
        for order in placed:
            views = [get_terminal(url, order["order_id"]) for url in urls]
            assert views[0] == views[1]
            assert views[0]["status"] == "PAID"
        per_order = ledger_stats(sandbox.meta["url"])["per_order"]
        assert all(per_order[o["order_id"]] == 1 for o in placed)
    finally:
        second.stop()
        first.stop()
        sandbox.stop()


async def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


def test_poison_messages_go_to_the_dead_letter_topic_and_the_worker_keeps_going(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    worker = start_worker(tmp_path, kafka_bootstrap, sandbox.meta["url"], name="poison")
    try:
        tag = uuid.uuid4().hex
        poison = [
            (f"bad-{tag}-1".encode(), b"\xff\xfe not json"),
            (f"bad-{tag}-2".encode(), b'{"event_type": "order.created", "schema_version": 1}'),
            (f"bad-{tag}-3".encode(), b'{"event_type": "order.created", "schema_version": 99}'),
            (None, f'["{tag}"]'.encode()),  # keyless, and unique to this run
        ]
        asyncio.run(_produce(kafka_bootstrap, ORDER_CREATED, poison))
        keys = {key for key, _ in poison}
        letters = wait_for_records(
            kafka_bootstrap,
            DEAD_LETTERS,
            lambda r: r.key in keys and dict(r.headers).get(DLQ_HEADER_TOPIC) == b"order.created",
            count=len(poison),
        )
        assert {(r.key, r.value) for r in letters} == set(poison)  # kept byte for byte
        reasons = [dict(r.headers)[DLQ_HEADER_REASON].decode() for r in letters]
        assert all(reason.startswith("malformed:") for reason in reasons), reasons
        # The same partitions keep flowing: a good order placed afterwards completes.
        order = place(worker.meta["url"], order_body())
        assert get_terminal(worker.meta["url"], order["order_id"])["status"] == "PAID"
        assert worker.alive
    finally:
        worker.stop()
        sandbox.stop()
