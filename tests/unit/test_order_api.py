"""OrderApi's answers while a worker cannot serve: always 503 with Retry-After, never a 500."""

from __future__ import annotations

from typing import Any

import orjson

from orderflow.watch import OrderWatch
from orderflow.web.orders import OrderApi
from orderflow.web.routing import FORWARDED_HEADER, NotReady, Owner
from tests.orders_client import order_body


class _Content:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def read(self, limit: int) -> bytes:
        return self.raw[:limit]


class _Request(dict[str, Any]):
    """The parts of an aiohttp request that OrderApi reads."""

    def __init__(self, body: Any = None, headers: dict[str, str] | None = None,
                 query: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__()
        raw = orjson.dumps(body) if body is not None else b""
        self.content = _Content(raw)
        self.content_length = len(raw)
        self.headers = headers or {}
        self.query = query or {}
        self.method, self.path = "POST", "/orders"


class _Routing:
    def __init__(self, owner: Owner | None) -> None:
        self._owner = owner

    def owner(self, order_id: str) -> Owner:
        if self._owner is None:
            raise NotReady("recovering or rebalancing")
        return self._owner


class _NoTable:
    def get(self, order_id: str) -> None:
        return None


def _api(owner: Owner | None) -> OrderApi:
    return OrderApi(_NoTable(), None, OrderWatch(), _Routing(owner), post_wait_s=0.1)  # type: ignore[arg-type]


async def test_post_while_recovering_answers_503_with_retry_after() -> None:
    response = await _api(None).create(_Request(order_body(), {"Idempotency-Key": "k-1"}))
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert response.body["error"] == "unavailable"


async def test_get_while_rebalancing_answers_503_with_retry_after() -> None:
    response = await _api(None).get(_Request(), "ord_" + "0" * 32)
    assert (response.status, response.headers.get("Retry-After")) == (503, "1")


async def test_forwarded_request_for_a_partition_we_do_not_own_is_503_not_forwarded_again() -> None:
    from yarl import URL

    elsewhere = Owner(is_local=False, url=URL("http://127.0.0.1:1"))
    request = _Request(order_body(), {"Idempotency-Key": "k-2", FORWARDED_HEADER: "1"})
    response = await _api(elsewhere).create(request)
    assert (response.status, response.headers.get("Retry-After")) == (503, "1")


async def test_invalid_post_is_refused_before_any_routing() -> None:
    response = await _api(None).create(_Request({"currency": "EUR"}))
    assert response.status == 400
    assert {p["field"] for p in response.body["problems"]} == {"customer_id", "items", "payment"}
