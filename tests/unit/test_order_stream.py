"""``GET /orders/{id}/events``: the order's states as Server-Sent Events, over the real
``OrderApi`` long-poll (this worker owning the order; forwarding is the GET's own)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import orjson

from orderflow.domain.order import Order, OrderRefund, OrderStatus, RefundState
from orderflow.domain.responses import order_to_public, public_version
from orderflow.watch import OrderWatch
from orderflow.web.events import OrderStream, is_final_view
from orderflow.web.orders import ApiResponse, OrderApi
from tests.fakes import FakeCommandTopic, FakeOrderStore, FakeRequest, FakeRouting
from tests.unit.builders import ITEMS_TOTAL, T1, pending_order

ORDER = "ord_" + "c" * 32


class Stack:
    def __init__(self, order: Order | None = None, max_s: float = 5.0) -> None:
        self.orders = FakeOrderStore()
        self.watch = OrderWatch()
        api = OrderApi(self.orders, FakeCommandTopic(), self.watch, FakeRouting(), post_wait_s=0.5)
        self.stream = OrderStream(api, heartbeat_s=0.2, max_s=max_s)
        if order is not None:
            self.orders.put(order)

    def change(self, order: Order) -> None:
        self.orders.put(order)
        self.watch.notify(order.order_id)

    async def open(self, **headers: str) -> AsyncIterator[bytes] | ApiResponse:
        return await self.stream.open(FakeRequest(None, dict(headers)), ORDER)


def _events(frames: list[bytes]) -> list[tuple[str, dict[str, object]]]:
    out = []
    for frame in frames:
        if frame.startswith(b"id: "):
            head, _, data = frame.partition(b"\ndata: ")
            out.append((head.split(b"\n")[0][4:].decode(), orjson.loads(data)))
    return out


async def test_the_current_state_comes_at_once_then_each_change_then_the_stream_ends() -> None:
    pending = pending_order(order_id=ORDER)
    stack = Stack(pending)
    frames = await stack.open()
    assert not isinstance(frames, ApiResponse)

    async def pay_later() -> None:
        await asyncio.sleep(0.3)
        paid = dataclasses.replace(
            pending, status=OrderStatus.PAID, captured=ITEMS_TOTAL, updated_at=T1
        )
        stack.change(paid)

    payer = asyncio.create_task(pay_later())
    got = [frame async for frame in frames]  # ends on its own after PAID
    await payer

    events = _events(got)
    assert [e[1]["status"] for e in events] == ["PENDING", "PAID"]
    assert events[0][0] == public_version(order_to_public(pending))
    assert b": keep-alive\n\n" in got  # idle polls between the two states


async def test_a_reconnect_with_last_event_id_gets_only_what_changed_since() -> None:
    pending = pending_order(order_id=ORDER)
    stack = Stack(pending, max_s=0.5)
    seen = public_version(order_to_public(pending))

    frames = await stack.open(**{"Last-Event-ID": seen})
    assert not isinstance(frames, ApiResponse)
    got = [frame async for frame in frames]  # nothing changes: keep-alives until max_s

    assert _events(got) == []
    assert got and all(frame == b": keep-alive\n\n" for frame in got)


async def test_a_refund_in_progress_keeps_a_paid_order_s_stream_open() -> None:
    asked = pending_order(
        order_id=ORDER,
        status=OrderStatus.PAID,
        captured=ITEMS_TOTAL,
        refunds=(OrderRefund("rf_1", 100, RefundState.REQUESTED, "", T1),),
    )
    stack = Stack(asked)
    frames = await stack.open()
    assert not isinstance(frames, ApiResponse)

    async def refund_later() -> None:
        await asyncio.sleep(0.3)
        done = dataclasses.replace(
            asked,
            status=OrderStatus.PARTIALLY_REFUNDED,
            refunded=100,
            refunds=(OrderRefund("rf_1", 100, RefundState.COMPLETED, "", T1),),
            updated_at=T1,
        )
        stack.change(done)

    refunder = asyncio.create_task(refund_later())
    got = [frame async for frame in frames]
    await refunder

    statuses = [(e[1]["status"], e[1]["refunded"]) for e in _events(got)]
    assert statuses == [("PAID", 0), ("PARTIALLY_REFUNDED", 100)]


async def test_an_unknown_order_is_a_404_before_any_stream() -> None:
    opened = await Stack().open()

    assert isinstance(opened, ApiResponse) and opened.status == 404


def test_which_views_end_a_stream() -> None:
    assert is_final_view({"status": "PAID", "refunds": []})
    assert not is_final_view({"status": "PAID", "refunds": [{"status": "REQUESTED"}]})
    assert not is_final_view({"status": "PENDING"})
    assert not is_final_view({"status": "CANCELLED", "captured": 5, "refunded": 0})
    assert is_final_view({"status": "CANCELLED", "captured": 5, "refunded": 5})
    assert is_final_view({"status": "REFUNDED"}) and is_final_view({"status": "PAYMENT_FAILED"})
