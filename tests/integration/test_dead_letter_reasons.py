"""Well-formed events that must still not be acted on: each is dead-lettered with its reason.

A valid ``order.created`` under a key that is not its order id (it would be handled on the wrong
partition, by a second writer of the order), a payment result for an order nobody placed, and a
result that contradicts the order's terminal state.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from aiokafka import AIOKafkaProducer

from orderflow.domain.events import OrderCreated, PaymentCompleted, PaymentFailed, rfc3339
from orderflow.domain.payment import DECLINE_MESSAGES
from orderflow.domain.validation import LineItem
from orderflow.topics import (
    DEAD_LETTERS,
    ORDER_CREATED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
)
from orderflow.wire import encode_event
from orderflow.wire.dead_letters import DLQ_HEADER_REASON, DLQ_HEADER_TOPIC
from tests.harness import ManagedProcess
from tests.kafka_helpers import Record, read_topic, wait_for_records
from tests.orders_client import get_terminal, ledger_stats, order_body, place


async def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


def _letter_for(bootstrap: str, key: bytes, source: str) -> Record:
    letters = wait_for_records(
        bootstrap,
        DEAD_LETTERS,
        lambda r: r.key == key and dict(r.headers).get(DLQ_HEADER_TOPIC) == source.encode(),
        timeout=60,
    )
    assert len(letters) == 1, letters
    return letters[0]


def _reason(letter: Record) -> str:
    return dict(letter.headers)[DLQ_HEADER_REASON].decode()


def test_a_valid_order_created_under_another_key_is_dead_lettered_and_never_charged(
    stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    _, sandbox = stack
    order_id = f"ord_{uuid.uuid4().hex}"
    event = OrderCreated(
        order_id,
        "c-1",
        "EUR",
        3998,
        (LineItem("SKU-1", 2, 1999),),
        "tok_visa",
        rfc3339(1_790_000_000.0),
    )
    wrong_key = f"ord_{uuid.uuid4().hex}".encode()
    value = encode_event(event)
    asyncio.run(_produce(kafka_bootstrap, ORDER_CREATED, wrong_key, value))
    letter = _letter_for(kafka_bootstrap, wrong_key, ORDER_CREATED)
    assert letter.value == value
    assert _reason(letter).startswith("malformed: key") and "differs from order_id" in _reason(
        letter
    )
    assert order_id not in ledger_stats(sandbox.meta["url"])["per_order"]


def test_a_payment_result_for_an_unknown_order_is_dead_lettered(
    stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    order_id = f"ord_{uuid.uuid4().hex}"
    completed = PaymentCompleted(order_id, 3998, "EUR", "ch_nobody", rfc3339(1_790_000_000.0))
    asyncio.run(
        _produce(kafka_bootstrap, PAYMENT_COMPLETED, order_id.encode(), encode_event(completed))
    )
    letter = _letter_for(kafka_bootstrap, order_id.encode(), PAYMENT_COMPLETED)
    assert _reason(letter) == "payment result for an unknown order"


def test_a_payment_result_contradicting_a_paid_order_is_dead_lettered_and_changes_nothing(
    stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    worker, _ = stack
    url = worker.meta["url"]
    order_id = place(url, order_body(), f"contra-{uuid.uuid4()}")["order_id"]
    paid = get_terminal(url, order_id)
    assert paid["status"] == "PAID"
    failed = PaymentFailed(
        order_id,
        3998,
        "EUR",
        DECLINE_MESSAGES["card_declined"],
        rfc3339(1_790_000_000.0),
        "ch_other",
    )
    asyncio.run(_produce(kafka_bootstrap, PAYMENT_FAILED, order_id.encode(), encode_event(failed)))
    letter = _letter_for(kafka_bootstrap, order_id.encode(), PAYMENT_FAILED)
    assert _reason(letter).startswith("refused: "), _reason(letter)
    assert get_terminal(url, order_id) == paid
    # Nothing else about the order was dead-lettered (the order itself went through cleanly).
    others = [
        r
        for r in read_topic(kafka_bootstrap, DEAD_LETTERS)
        if r.key == order_id.encode()
        and dict(r.headers).get(DLQ_HEADER_TOPIC) != PAYMENT_FAILED.encode()
    ]
    assert others == []


def test_an_order_created_written_by_a_newer_minor_version_is_charged_not_dead_lettered(
    stack: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    # A rolling upgrade: a newer worker adds fields (at every level) and raises schema_minor.
    order_id = f"ord_{uuid.uuid4().hex}"
    event = OrderCreated(
        order_id, "c-1", "EUR", 1999, (LineItem("SKU-1", 1, 1999),), "tok_visa", rfc3339(1.79e9)
    )
    data = json.loads(encode_event(event))
    data.update(schema_minor=1, loyalty_points=12)
    data["items"][0]["tax_code"] = "T1"
    data["payment"]["wallet"] = "acme"
    asyncio.run(
        _produce(kafka_bootstrap, ORDER_CREATED, order_id.encode(), json.dumps(data).encode())
    )

    wait_for_records(
        kafka_bootstrap, PAYMENT_COMPLETED, lambda r: r.key == order_id.encode(), timeout=60
    )
    letters = read_topic(kafka_bootstrap, DEAD_LETTERS)
    assert not [
        r
        for r in letters
        if r.key == order_id.encode() and dict(r.headers).get(DLQ_HEADER_TOPIC) == b"order.created"
    ]
