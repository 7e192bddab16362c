"""A duplicate ``order.created`` for a settled order: the service must answer from PaymentDB.

Real broker, one worker, the strict sandbox with expiring keys. The sandbox would replay the
first charge for a repeated key, so the ledger alone cannot see a re-charge; the gateway audit
(request log against the PaymentDB changelog) can.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from orderflow.topics import ORDER_CREATED, PAYMENT_COMPLETED, PAYMENT_FAILED
from tests.gateway_audit import check_gateway
from tests.harness import ManagedProcess, http_json
from tests.kafka_helpers import Record, wait_for_records
from tests.orders_client import get_terminal, order_body


async def _publish_again(bootstrap: str, record: Record) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            record.topic, key=record.key, value=record.value, partition=record.partition
        )
    finally:
        await producer.stop()


def _keyed(order_id: str) -> Callable[[Record], bool]:
    return lambda record: record.key == order_id.encode()


def _place_and_settle(worker: ManagedProcess, token: str) -> str:
    status, created, _ = http_json("POST", f"{worker.meta['url']}/orders", order_body(token))
    assert status == 201, created
    order_id: str = created["order_id"]
    get_terminal(worker.meta["url"], order_id)
    return order_id


def test_duplicate_order_created_for_settled_orders_republishes_without_charging(
    stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    worker, sandbox = stack
    orders = {
        _place_and_settle(worker, "tok_visa"): PAYMENT_COMPLETED,
        _place_and_settle(worker, "tok_chargeDeclined"): PAYMENT_FAILED,
    }
    for order_id, outcome_topic in orders.items():
        (created,) = wait_for_records(kafka_bootstrap, ORDER_CREATED, _keyed(order_id))
        asyncio.run(_publish_again(kafka_bootstrap, created))
        # The duplicate was handled once its outcome is published a second time.
        wait_for_records(kafka_bootstrap, outcome_topic, _keyed(order_id), count=2, timeout=60)

    audit = check_gateway(kafka_bootstrap, sandbox.meta["url"], set(orders))
    assert audit.charge_requests == dict.fromkeys(orders, 1)
    assert audit.reasks_after_crash == []
