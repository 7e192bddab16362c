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
    "gateway_ledger",
    "gateway_requests",
    "get_terminal",
    "ledger_stats",
    "order_body",
    "place",
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
