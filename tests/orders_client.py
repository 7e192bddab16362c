"""A test client for the orders API that behaves like a careful real client.

It retries 503 with the same Idempotency-Key (that is what the key is for) and polls with a
deadline; it never sleeps for synchronisation.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import quote

from tests.harness import http_json

__all__ = [
    "cancel",
    "gateway_ledger",
    "gateway_refunds",
    "gateway_requests",
    "get_terminal",
    "get_until",
    "ledger_stats",
    "order_body",
    "place",
    "refund",
    "set_faults",
    "set_gateway_config",
]


def order_body(
    token: str = "tok_visa", quantity: int = 2, unit_amount: int = 1999
) -> dict[str, Any]:
    return {
        "customer_id": "c-1",
        "currency": "EUR",
        "items": [{"sku": "SKU-1", "quantity": quantity, "unit_amount": unit_amount}],
        "payment": {"token": token},
    }


def _auth(api_key: str | None) -> dict[str, str]:
    """No header: http_json sends the test client's key; else this key."""
    return {} if api_key is None else {"Authorization": f"Bearer {api_key}"}


def place(
    base_url: str,
    body: dict[str, Any],
    key: str | None = None,
    timeout: float = 60,
    api_key: str | None = None,
) -> dict[str, Any]:
    """POST /orders until it answers 201: 503 (not stored durably) and 202 (accepted durably, not
    stored yet: a rebalance) are retried with the same key, as the API tells clients to."""
    key = key or f"test-{uuid.uuid4()}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, answer, _ = http_json(
                "POST", f"{base_url}/orders", body, {"Idempotency-Key": key, **_auth(api_key)}
            )
        except OSError:
            status, answer = 0, None
        if status == 201:
            return dict(answer)
        assert status in (0, 202, 503), (status, answer)
        assert time.monotonic() < deadline, f"POST kept failing: {status} {answer}"
        time.sleep(0.2)


def get_terminal(
    base_url: str, order_id: str, timeout: float = 90, api_key: str | None = None
) -> dict[str, Any]:
    """GET the order with long-poll until it is PAID or PAYMENT_FAILED."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            status, last, _ = http_json(
                "GET", f"{base_url}/orders/{order_id}?wait=10", headers=_auth(api_key)
            )
        except OSError:
            status = 0
        if status == 200 and last["status"] in ("PAID", "PAYMENT_FAILED"):
            return dict(last)
        # 429: over the worker's long-poll caps; a careful client retries as told.
        assert status in (0, 200, 429, 503), (status, last)
        if status != 200:
            time.sleep(0.2)
    raise AssertionError(f"order {order_id} not terminal after {timeout}s: {last}")


def ledger_stats(gateway_url: str) -> dict[str, Any]:
    status, body, _ = http_json("GET", f"{gateway_url}/_admin/stats")
    assert status == 200
    return dict(body)


def set_faults(gateway_url: str, **faults: float) -> None:
    if faults:
        assert http_json("POST", f"{gateway_url}/_admin/faults", faults)[0] == 200
    else:
        assert http_json("DELETE", f"{gateway_url}/_admin/faults")[0] in (200, 204)


def set_gateway_config(gateway_url: str, **config: float | bool) -> dict[str, Any]:
    """Change the sandbox's runtime settings (``key_ttl_s``, ``strict``)."""
    status, body, _ = http_json("POST", f"{gateway_url}/_admin/config", config)
    assert status == 200, body
    return dict(body)


def gateway_requests(gateway_url: str, **filters: str) -> list[dict[str, Any]]:
    """The sandbox's request log (filters: ``order_id``, ``idempotency_key``)."""
    query = "&".join(f"{k}={quote(v)}" for k, v in filters.items())
    status, body, _ = http_json("GET", f"{gateway_url}/_admin/requests?{query}")
    assert status == 200, body
    return list(body["data"])


def gateway_ledger(gateway_url: str) -> list[dict[str, Any]]:
    """Every charge the sandbox made, oldest first."""
    status, body, _ = http_json("GET", f"{gateway_url}/_admin/ledger")
    assert status == 200, body
    return list(body["data"])


def _decided(
    method_url: str, body: Any, headers: dict[str, str], timeout: float
) -> tuple[int, Any]:
    """POST until it answers something other than 202/503 (accepted, not decided; unavailable):
    the same request again is safe (cancel is idempotent, a refund's key names it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, answer, _ = http_json("POST", method_url, body, headers)
        except OSError:
            status, answer = 0, None
        if status not in (0, 202, 503):
            return status, answer
        assert time.monotonic() < deadline, f"POST {method_url} kept failing: {status} {answer}"
        time.sleep(0.2)


def cancel(base_url: str, order_id: str, reason: str = "", timeout: float = 60) -> tuple[int, Any]:
    """POST /orders/{id}/cancel until decided: (status, body)."""
    body = {"reason": reason} if reason else None
    return _decided(f"{base_url}/orders/{order_id}/cancel", body, {}, timeout)


def refund(
    base_url: str, order_id: str, amount: int, key: str, reason: str = "", timeout: float = 60
) -> tuple[int, Any]:
    """POST /orders/{id}/refunds with ``key`` until decided: (status, body)."""
    body: dict[str, Any] = {"amount": amount}
    if reason:
        body["reason"] = reason
    url = f"{base_url}/orders/{order_id}/refunds"
    return _decided(url, body, {"Idempotency-Key": key}, timeout)


def get_until(
    base_url: str, order_id: str, done: Any, timeout: float = 90, what: str = "the order"
) -> dict[str, Any]:
    """GET the order until ``done(order)`` is true (polled, with a deadline)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            status, last, _ = http_json("GET", f"{base_url}/orders/{order_id}")
        except OSError:
            status = 0
        if status == 200 and done(last):
            return dict(last)
        time.sleep(0.2)
    raise AssertionError(f"{what} never came for {order_id}: {last}")


def gateway_refunds(gateway_url: str, order_id: str) -> list[dict[str, Any]]:
    """Every refund the sandbox made (or refused) for the order, oldest first."""
    status, body, _ = http_json("GET", f"{gateway_url}/_admin/refunds?order_id={quote(order_id)}")
    assert status == 200, body
    return list(body["data"])
