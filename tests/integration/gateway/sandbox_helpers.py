"""What the gateway tests share: a charge request, the sandbox's admin API, the client factory's
type (the fixtures: conftest.py)."""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp

from orderflow.domain.payment import idempotency_key_for
from orderflow.gateway.base import ChargeRequest
from orderflow.gateway.http import HttpPaymentGateway

__all__ = ["Admin", "MakeClient", "charge_request"]


def charge_request(
    order_id: str, token: str = "tok_visa", amount: int = 1999, currency: str = "usd"
) -> ChargeRequest:
    return ChargeRequest(
        idempotency_key=idempotency_key_for(order_id),
        order_id=order_id,
        amount=amount,
        currency=currency,
        payment_token=token,
    )


class Admin:
    """The sandbox's admin API, as a test uses it."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def set_faults(self, **faults: float) -> None:
        async with self.session.post(f"{self.url}/_admin/faults", json=faults) as resp:
            assert resp.status == 200, await resp.text()

    async def clear_faults(self) -> None:
        async with self.session.delete(f"{self.url}/_admin/faults") as resp:
            assert resp.status == 200

    async def stats(self) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/_admin/stats") as resp:
            result: dict[str, Any] = await resp.json()
            return result

    async def ledger(self, order_id: str | None = None) -> list[dict[str, Any]]:
        params = {} if order_id is None else {"order_id": order_id}
        async with self.session.get(f"{self.url}/_admin/ledger", params=params) as resp:
            rows: list[dict[str, Any]] = (await resp.json())["data"]
            return rows

    async def refunds(self, order_id: str | None = None) -> list[dict[str, Any]]:
        params = {} if order_id is None else {"order_id": order_id}
        async with self.session.get(f"{self.url}/_admin/refunds", params=params) as resp:
            rows: list[dict[str, Any]] = (await resp.json())["data"]
            return rows


class MakeClient(Protocol):
    def __call__(self, url: str | None = None, **overrides: Any) -> HttpPaymentGateway: ...
