"""BASELINE, not orderflow: the straightforward Faust app of the same order flow.

Written the way the Faust documentation shows it, so the bench can compare orderflow with what
users would build first; it is deliberately neither optimised nor crippled. It has none of
orderflow's guarantees (no idempotency keys, no API keys, no exactly-one-terminal-state proof, no
dead letters, no durability wait before answering) and must not be used for anything but the
bench.

The flow, one agent per topic, one worker, memory tables (``store="memory://"``):

    POST /orders             web view: builds the order, sends it to ``<id>.orders``, answers 202
    agent create_order       ``<id>.orders`` -> stores it (PENDING) in ``orders`` table,
                             sends it to ``<id>.order-created``
    agent charge_payment     ``<id>.order-created`` -> awaits the gateway's charge (aiohttp, one
                             session, idempotency key from the order id), records it in the
                             ``payments`` table, sends the result to ``<id>.payment-results``
    agent settle_order       ``<id>.payment-results`` -> order PAID / PAYMENT_FAILED in ``orders``
    GET /orders/{id}?wait=S  ``table_route`` page: the order from the table; with ``wait`` it waits
                             (an asyncio.Event per order, set by settle_order) until it is terminal

Settings come from ``TYPICAL_FAUST_*`` variables (Faust's own unprefixed ones are not used):
``BOOTSTRAP`` (host:port), ``WEB_PORT``, ``DATA_DIR``, ``APP_ID`` (names the topics and the
group: a fresh one starts from empty tables), ``GATEWAY_URL`` and ``GATEWAY_API_KEY`` (the sandbox
gateway's ``/v1/charges``). Its topics must exist before it starts (``create_topics``).

Known Faust behaviour kept as is: a GET before the worker wrote its first order answers 500
(``table_route`` asks the producer for the changelog's partitions, which it learns at its first
write); the bench places one order before it measures.
"""

import asyncio
import contextlib
import os
import uuid
from typing import Any

import aiohttp
import faust
from faust.web import Request, Response, View

from bench.baselines.typical_faust import PARTITIONS, topic_names

APP_ID = os.environ.get("TYPICAL_FAUST_APP_ID", "typical-orders")
GATEWAY_URL = os.environ.get("TYPICAL_FAUST_GATEWAY_URL", "http://127.0.0.1:8099").rstrip("/")
GATEWAY_API_KEY = os.environ.get("TYPICAL_FAUST_GATEWAY_API_KEY", "")
TERMINAL = ("PAID", "PAYMENT_FAILED")

app = faust.App(
    APP_ID,
    broker=f"kafka://{os.environ.get('TYPICAL_FAUST_BOOTSTRAP', '127.0.0.1:9092')}",
    store="memory://",
    datadir=os.environ.get("TYPICAL_FAUST_DATA_DIR", f".run/{APP_ID}"),
    web_host="127.0.0.1",
    web_port=int(os.environ.get("TYPICAL_FAUST_WEB_PORT", "6067")),
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
)


class Item(faust.Record):
    sku: str
    quantity: int
    unit_amount: int


class Order(faust.Record, serializer="json"):
    order_id: str
    customer_id: str
    currency: str
    items: list[Item]
    amount: int
    payment_token: str
    status: str = "PENDING"
    charge_id: str | None = None
    decline_code: str | None = None


class PaymentResult(faust.Record, serializer="json"):
    order_id: str
    succeeded: bool
    charge_id: str | None = None
    decline_code: str | None = None


# Created beforehand with the changelogs (create_topics), as the Faust docs advise.
ORDERS, CREATED, RESULTS = topic_names(APP_ID)
orders_topic = app.topic(ORDERS, key_type=str, value_type=Order)
created_topic = app.topic(CREATED, key_type=str, value_type=Order)
results_topic = app.topic(RESULTS, key_type=str, value_type=PaymentResult)

orders_table = app.Table("orders", default=None, value_type=Order)
payments_table = app.Table("payments", default=None)

# Long-polling GETs waiting for an order to become terminal (one worker: same process).
waiters: dict[str, asyncio.Event] = {}


@app.agent(orders_topic)
async def create_order(orders: faust.StreamT[Order]) -> None:
    async for order in orders:
        orders_table[order.order_id] = order
        await created_topic.send(key=order.order_id, value=order)


async def charge(session: aiohttp.ClientSession, order: Order) -> PaymentResult:
    """One charge at the gateway; its answer as a PaymentResult."""
    try:
        async with session.post(
            f"{GATEWAY_URL}/v1/charges",
            json={
                "amount": order.amount,
                "currency": order.currency,
                "source": order.payment_token,
                "metadata": {"order_id": order.order_id},
            },
            headers={
                "Idempotency-Key": f"charge-{order.order_id}",
                "Authorization": f"Bearer {GATEWAY_API_KEY}",
            },
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response:
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError):
        return PaymentResult(order.order_id, False, decline_code="gateway_error")
    if response.status == 200:
        return PaymentResult(order.order_id, True, charge_id=body["id"])
    code = body.get("error", {}).get("code") or "gateway_error"
    return PaymentResult(order.order_id, False, decline_code=code)


@app.agent(created_topic)
async def charge_payment(orders: faust.StreamT[Order]) -> None:
    async with aiohttp.ClientSession() as session:
        async for order in orders:
            result = await charge(session, order)
            payments_table[order.order_id] = result.asdict()
            await results_topic.send(key=order.order_id, value=result)


@app.agent(results_topic)
async def settle_order(results: faust.StreamT[PaymentResult]) -> None:
    async for result in results:
        order = orders_table.get(result.order_id)
        if order is None:
            continue
        orders_table[result.order_id] = order.derive(
            status="PAID" if result.succeeded else "PAYMENT_FAILED",
            charge_id=result.charge_id,
            decline_code=result.decline_code,
        )
        event = waiters.pop(result.order_id, None)
        if event is not None:
            event.set()


def render(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "status": order.status,
        "amount": order.amount,
        "currency": order.currency,
        "payment": {"charge_id": order.charge_id, "decline_code": order.decline_code},
    }


@app.page("/orders")
class OrderCollection(View):
    async def post(self, request: Request) -> Response:
        body = await request.json()
        try:
            items = [
                Item(sku=i["sku"], quantity=int(i["quantity"]), unit_amount=int(i["unit_amount"]))
                for i in body["items"]
            ]
            order = Order(
                order_id=f"ord_{uuid.uuid4().hex}",
                customer_id=body["customer_id"],
                currency=body["currency"],
                items=items,
                amount=sum(i.quantity * i.unit_amount for i in items),
                payment_token=body["payment"]["token"],
            )
        except (KeyError, TypeError, ValueError):
            return self.json({"error": "invalid_request"}, status=400)
        await orders_topic.send(key=order.order_id, value=order)
        return self.json(render(order), status=202)


@app.page("/orders/{order_id}")
@app.table_route(table=orders_table, match_info="order_id")
async def get_order(web: View, request: Request, order_id: str) -> Response:
    wait = min(float(request.query.get("wait", "0")), 30.0)
    order = orders_table.get(order_id)
    if wait > 0 and (order is None or order.status not in TERMINAL):
        event = waiters.setdefault(order_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), wait)
        order = orders_table.get(order_id)
    if order is None:
        return web.json({"error": "not_found"}, status=404)
    return web.json(render(order))
