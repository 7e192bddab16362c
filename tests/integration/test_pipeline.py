"""The order -> payment pipeline through one worker, a real broker and the sandbox gateway."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import orjson
import pytest

from orderflow.topics import ORDER_COMMANDS, ORDER_CREATED, PAYMENT_COMPLETED, PAYMENT_FAILED
from orderflow.wire.schema import validate_event_dict
from tests.gateway_audit import GatewayAudit, check_gateway
from tests.harness import ManagedProcess, http_json
from tests.invariants import assert_not_nudged, assert_orders_settled_once
from tests.kafka_helpers import end_offsets_total, wait_for_records
from tests.orders_client import get_terminal, ledger_stats, order_body


def _post(
    worker: ManagedProcess, body: Any, key: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Idempotency-Key": key} if key else {}
    return http_json("POST", f"{worker.meta['url']}/orders", body, headers)


def _wait_terminal(worker: ManagedProcess, order_id: str) -> dict[str, Any]:
    """The order once terminal; it must have got there without the stall watchdog's help."""
    order = get_terminal(worker.meta["url"], order_id)
    assert_not_nudged([worker.log_path.read_text(errors="replace")], {order_id})
    return order


def _assert_settled_once(
    bootstrap: str, sandbox: ManagedProcess, order_ids: set[str]
) -> GatewayAudit:
    """One terminal state per order on the topics, and the gateway audit (strict, keys expire)."""
    assert_orders_settled_once(bootstrap, order_ids)
    return check_gateway(bootstrap, sandbox.meta["url"], order_ids)


def _event_for(bootstrap: str, topic: str, order_id: str) -> dict[str, Any]:
    records = wait_for_records(bootstrap, topic, lambda r: r.key == order_id.encode())
    event: dict[str, Any] = orjson.loads(records[0].value or b"")
    validate_event_dict(event)
    return event


def test_approved_order_reaches_paid_and_publishes_payment_completed(
    stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    worker, sandbox = stack
    status, created, headers = _post(worker, order_body("tok_visa", 3, 1250))
    assert status == 201, created
    order_id = created["order_id"]
    assert headers["Location"] == f"/orders/{order_id}"
    assert (created["amount"], created["currency"]) == (3750, "EUR")
    assert created["created_at"].endswith("Z")

    order = _wait_terminal(worker, order_id)
    assert order["status"] == "PAID"
    assert order["payment"]["status"] == "COMPLETED"
    assert order["payment"]["charge_id"].startswith("ch_")

    placed = _event_for(kafka_bootstrap, ORDER_CREATED, order_id)
    assert (placed["amount"], placed["currency"], placed["order_id"]) == (3750, "EUR", order_id)
    completed = _event_for(kafka_bootstrap, PAYMENT_COMPLETED, order_id)
    assert completed["event_type"] == "payment.completed"
    assert completed["charge_id"] == order["payment"]["charge_id"]
    assert (completed["amount"], completed["currency"]) == (3750, "EUR")
    assert ledger_stats(sandbox.meta["url"])["per_order"][order_id] == 1
    audit = _assert_settled_once(kafka_bootstrap, sandbox, {order_id})
    assert audit.charge_requests == {order_id: 1}


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("tok_chargeDeclined", "card_declined"),
        ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ("tok_chargeDeclinedExpiredCard", "expired_card"),
        ("tok_unknownToken", "invalid_token"),
    ],
)
def test_declined_order_reaches_payment_failed_with_the_decline_code(
    stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str, token: str, code: str
) -> None:
    worker, sandbox = stack
    status, created, _ = _post(worker, order_body(token))
    assert status == 201, created
    order = _wait_terminal(worker, created["order_id"])
    assert order["status"] == "PAYMENT_FAILED"
    assert order["payment"]["decline_code"] == code
    failed = _event_for(kafka_bootstrap, PAYMENT_FAILED, created["order_id"])
    assert failed["reason"]["code"] == code
    audit = _assert_settled_once(kafka_bootstrap, sandbox, {created["order_id"]})
    assert audit.charge_requests == {created["order_id"]: 1}
    assert isinstance(failed["reason"]["retryable"], bool)


def test_replayed_post_with_the_same_key_gives_one_order_and_one_charge(
    stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    worker, sandbox = stack
    key = f"replay-{uuid.uuid4()}"
    results: list[tuple[int, Any, dict[str, str]]] = []

    def post() -> None:
        results.append(_post(worker, order_body(), key))

    threads = [threading.Thread(target=post) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _, _ in results] == [201] * 5, results
    order_ids = {body["order_id"] for _, body, _ in results}
    assert len(order_ids) == 1
    order_id = order_ids.pop()
    assert _wait_terminal(worker, order_id)["status"] == "PAID"
    status, again, headers = _post(worker, order_body(), key)
    assert (status, again["order_id"], headers.get("Idempotent-Replayed")) == (
        201,
        order_id,
        "true",
    )
    assert again["status"] == "PAID"
    assert ledger_stats(sandbox.meta["url"])["per_order"][order_id] == 1
    assert _assert_settled_once(kafka_bootstrap, sandbox, {order_id}).charge_requests == {
        order_id: 1
    }


def test_same_key_with_another_body_is_refused_and_changes_nothing(
    stack: tuple[ManagedProcess, ManagedProcess],
) -> None:
    worker, _ = stack
    key = f"conflict-{uuid.uuid4()}"
    status, first, _ = _post(worker, order_body(quantity=1), key)
    assert status == 201
    status, body, _ = _post(worker, order_body(quantity=5), key)
    assert status == 422, body
    assert body["problems"][0]["field"] == "Idempotency-Key"
    order = _wait_terminal(worker, first["order_id"])
    assert order["amount"] == 1999 and order["items"][0]["quantity"] == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"{not json", {"$"}),
        (b"[]", {"$"}),
        ({}, {"customer_id", "currency", "items", "payment"}),
        (
            {"customer_id": 7, "currency": "XXX", "items": [], "payment": {"token": "tok_visa"}},
            {"customer_id", "currency", "items"},
        ),
        (
            {
                "customer_id": "c-1",
                "currency": "EUR",
                "payment": {"token": "tok_visa"},
                "items": [
                    {"sku": "A", "quantity": 0, "unit_amount": 10},
                    {"sku": "B", "quantity": 1, "unit_amount": 9.99},
                    {"sku": "C", "quantity": "2", "unit_amount": -1},
                ],
            },
            {
                "items[0].quantity",
                "items[1].unit_amount",
                "items[2].quantity",
                "items[2].unit_amount",
            },
        ),
        (
            {
                **order_body(),
                "items": [{"sku": f"S{i}", "quantity": 1, "unit_amount": 1} for i in range(101)],
            },
            {"items"},
        ),
    ],
    ids=[
        "not-json",
        "not-object",
        "empty-object",
        "wrong-types",
        "bad-items",
        "too-many-items",
    ],
)
def test_invalid_bodies_answer_400_naming_every_field_and_publish_nothing(
    stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str, body: Any, fields: set[str]
) -> None:
    worker, _ = stack
    before = end_offsets_total(kafka_bootstrap, ORDER_COMMANDS)
    status, answer, _ = _post(worker, body)
    assert status == 400, answer
    assert answer["error"] == "invalid_request"
    assert {p["field"] for p in answer["problems"]} == fields
    assert all(p["message"] for p in answer["problems"])
    assert end_offsets_total(kafka_bootstrap, ORDER_COMMANDS) == before


def test_a_body_over_64_kib_answers_413_naming_the_body_and_publishes_nothing(
    stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    worker, _ = stack
    before = end_offsets_total(kafka_bootstrap, ORDER_COMMANDS)
    status, answer, _ = _post(worker, b"x" * (64 * 1024 + 1))
    assert status == 413, answer  # Content Too Large (RFC 9110), with our JSON body
    assert answer["error"] == "invalid_request"
    assert [p["field"] for p in answer["problems"]] == ["$"]
    assert end_offsets_total(kafka_bootstrap, ORDER_COMMANDS) == before


def test_unknown_order_id_answers_404(stack: tuple[ManagedProcess, ManagedProcess]) -> None:
    worker, _ = stack
    for order_id in ("ord_" + uuid.uuid4().hex, "nonsense"):
        status, body, _ = http_json("GET", f"{worker.meta['url']}/orders/{order_id}")
        assert status == 404
        assert body["error"] == "not_found"


def test_long_poll_returns_once_the_order_is_terminal_and_times_out_while_pending(
    stack: tuple[ManagedProcess, ManagedProcess],
) -> None:
    worker, sandbox = stack
    faults = f"{sandbox.meta['url']}/_admin/faults"
    # Charges take 3 s: the order stays PENDING through the first, short long-poll.
    assert http_json("POST", faults, {"latency_ms": 3000})[0] == 200
    try:
        status, created, _ = _post(worker, order_body())
        assert status == 201
        url = f"{worker.meta['url']}/orders/{created['order_id']}"
        started = time.monotonic()
        status, early, _ = http_json("GET", f"{url}?wait=1")
        # Times out while pending: it held the request for its whole wait, then answered.
        assert (status, early["status"]) == (200, "PENDING")
        assert time.monotonic() - started >= 1.0
        started = time.monotonic()
        status, final, _ = http_json("GET", f"{url}?wait=30")
        assert (status, final["status"]) == (200, "PAID")
        # Woken by the change: it answered before its own 30 s wait ran out.
        assert time.monotonic() - started < 30
    finally:
        http_json("DELETE", faults)


def test_wait_parameter_out_of_range_is_a_400(stack: tuple[ManagedProcess, ManagedProcess]) -> None:
    worker, _ = stack
    url = f"{worker.meta['url']}/orders/ord_{uuid.uuid4().hex}"
    for wait in ("31", "-1", "soon"):
        status, body, _ = http_json("GET", f"{url}?wait={wait}")
        assert status == 400
        assert body["problems"][0]["field"] == "wait"
