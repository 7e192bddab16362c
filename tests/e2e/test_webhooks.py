"""Webhooks against the real broker, with faults: the client's receiver fails for a while (503s)
and the worker is SIGKILLed while deliveries are pending; once the receiver is back, every
change of every order has been delivered, signed, at least once, and none is missing."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orderflow.domain.webhooks import SIGNATURE_HEADER, verify
from tests.harness import (
    ManagedProcess,
    auth_headers,
    http_json,
    poll_until,
    start_sandbox,
    start_worker,
)
from tests.orders_client import get_terminal, get_until, order_body, place, refund
from tests.webhook_receiver import (
    Received,
    WebhookReceiver,
    delete_all_endpoints,
    forget_endpoints,
    list_endpoints,
)

_WEBHOOKS = {
    "ORDERFLOW_GATEWAY_DEADLINE": "3",
    "ORDERFLOW_GATEWAY_TIMEOUT": "1",
    "ORDERFLOW_STALL_AFTER": "4",
    # The receiver is on 127.0.0.1: refused by default (SSRF), allowed for the test.
    "ORDERFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
    "ORDERFLOW_WEBHOOK_RETRY_FIRST": "0.5",
    "ORDERFLOW_WEBHOOK_RETRY_CAP": "2",
}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def _register(url: str, receiver_url: str) -> dict[str, Any]:
    delete_all_endpoints(url)
    status, endpoint, headers = http_json(
        "POST", f"{url}/webhooks", {"url": receiver_url}, auth_headers()
    )
    assert status == 201, endpoint
    assert headers["Location"] == f"/webhooks/{endpoint['endpoint_id']}"
    assert endpoint["secret"].startswith("whsec_")
    assert all("secret" not in e for e in list_endpoints(url))  # shown once, never again
    return dict(endpoint)


def _deliveries(url: str, order_id: str) -> list[dict[str, Any]]:
    status, body, _ = http_json("GET", f"{url}/orders/{order_id}/webhooks")
    return list(body["deliveries"]) if status == 200 else []


def _all_failed_once(url: str, order_ids: list[str]) -> bool:
    for order_id in order_ids:
        deliveries = _deliveries(url, order_id)
        if not deliveries or any(d["attempt_count"] < 1 for d in deliveries):
            return False
    return True


def _all_delivered(url: str, order_ids: list[str]) -> bool:
    return all(
        (deliveries := _deliveries(url, order_id))
        and all(d["state"] == "DELIVERED" for d in deliveries)
        for order_id in order_ids
    )


def _by_order(accepted: list[Received]) -> dict[str, dict[int, dict[str, Any]]]:
    events: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for received in accepted:
        event = received.event
        events[event["data"]["order"]["order_id"]][event["sequence"]] = event
    return events


def test_a_receiver_down_for_a_while_and_a_worker_killed_meanwhile_gets_every_event(
    kafka_bootstrap: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    worker: ManagedProcess = start_worker(tmp_path, kafka_bootstrap, gateway, extra=_WEBHOOKS)
    try:
        url = worker.meta["url"]
        endpoint = _register(url, receiver.url)
        receiver.failing = True
        order_ids = [str(place(url, order_body())["order_id"]) for _ in range(5)]
        for order_id in order_ids:
            assert get_terminal(url, order_id)["status"] == "PAID"
        assert refund(url, order_ids[0], 1000, f"wh-{order_ids[0]}")[0] == 201
        get_until(url, order_ids[0], lambda o: o["refunded"] == 1000, what="the refund")
        poll_until(
            lambda: _all_failed_once(url, order_ids), 60, 0.3, "a failed attempt of each order"
        )

        worker.kill()  # deliveries PENDING in WebhookDB, some POSTs perhaps in flight
        worker = start_worker(
            tmp_path,
            kafka_bootstrap,
            gateway,
            port=worker.meta["port"],
            data_dir=worker.meta["data_dir"],
            extra=_WEBHOOKS,
        )
        receiver.failing = False
        poll_until(lambda: _all_delivered(url, order_ids), 90, 0.3, "every delivery DELIVERED")

        accepted = receiver.accepted()
        now = time.time()
        for received in accepted:
            assert received.headers["Orderflow-Event-Id"] == received.event["id"]
            assert verify(
                endpoint["secret"], received.headers[SIGNATURE_HEADER], received.body, now
            ), received.headers
        events = _by_order(accepted)
        assert sorted(events) == sorted(order_ids)
        for order_id in order_ids:
            sequences = events[order_id]
            # None missing: every event the order made, 1..n, was accepted at least once ...
            assert sorted(sequences) == list(range(1, max(sequences) + 1)), sorted(sequences)
            assert sequences[1]["type"] == "order.pending"
            assert "order.paid" in {e["type"] for e in sequences.values()}
            # ... and the last one is the order as it is now.
            last = sequences[max(sequences)]["data"]["order"]
            final = http_json("GET", f"{url}/orders/{order_id}")[1]
            assert (last["status"], last["refunded"], last["updated_at"]) == (
                final["status"],
                final["refunded"],
                final["updated_at"],
            )
            listed = _deliveries(url, order_id)
            assert {d["event_id"] for d in listed} == {e["id"] for e in sequences.values()}
        assert events[order_ids[0]][max(events[order_ids[0]])]["type"] == "order.partially_refunded"
        retried = [d for o in order_ids for d in _deliveries(url, o) if d["attempt_count"] >= 2]
        assert retried, "no delivery was ever retried: the receiver's failures were not seen"
    finally:
        forget_endpoints(worker.meta["url"])
        worker.stop()
        sandbox.stop()
