"""Builders of valid domain objects (a test overrides only the fields it is about), and of a
worker's app built but not started."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any

from orderflow.app import Orderflow, build
from orderflow.config import Settings
from orderflow.consumer import ReadOffsets, RewindingConsumer
from orderflow.domain.events import PlaceOrder
from orderflow.domain.order import Order, place_order
from orderflow.domain.payment import PaymentRecord, PaymentStatus, idempotency_key_for
from orderflow.domain.validation import LineItem

T0 = "2024-05-01T12:00:00.000Z"
T1 = "2024-05-01T12:00:05.250Z"
REQUEST_ID = "5b0c7d7e-8f7a-4c6e-9d52-1f0e2b3a4c5d"
TOKEN = "tok_visa"
ITEMS = (LineItem("sku-1", 2, 1999), LineItem("sku-2", 1, 500))
ITEMS_TOTAL = 2 * 1999 + 500


def valid_body(**overrides: Any) -> dict[str, Any]:
    """A POST /orders body that validates; ``overrides`` replace top-level fields."""
    body: dict[str, Any] = {
        "customer_id": "cust-42",
        "currency": "USD",
        "items": [
            {"sku": "sku-1", "quantity": 2, "unit_amount": 1999},
            {"sku": "sku-2", "quantity": 1, "unit_amount": 500},
        ],
        "payment": {"token": TOKEN},
    }
    body.update(overrides)
    return body


def place_command(**overrides: Any) -> PlaceOrder:
    command = PlaceOrder(
        order_id="ord-1",
        request_id=REQUEST_ID,
        fingerprint="fp-aaaa",
        customer_id="cust-42",
        currency="USD",
        items=ITEMS,
        payment_token=TOKEN,
        occurred_at=T0,
    )
    return dataclasses.replace(command, **overrides)


def pending_order(**overrides: Any) -> Order:
    """The order ``place_order`` creates from ``place_command()``, with ``overrides`` applied."""
    return dataclasses.replace(place_order(None, place_command()).order, **overrides)


def payment_record(**overrides: Any) -> PaymentRecord:
    record = PaymentRecord(
        order_id="ord-1",
        idempotency_key=idempotency_key_for("ord-1"),
        amount=ITEMS_TOTAL,
        currency="USD",
        status=PaymentStatus.ATTEMPTING,
        attempts=1,
        updated_at=1714564800.125,
    )
    return dataclasses.replace(record, **overrides)


def unstarted_flow(data_dir: Path, **env: str) -> Orderflow:
    """A worker's app, built but not started (no broker, memory store, sandbox gateway, no API
    auth); ``env`` adds or overrides ``ORDERFLOW_*`` settings."""
    return build(
        Settings.from_env(
            {
                "ORDERFLOW_DATA_DIR": str(data_dir),
                "ORDERFLOW_STORE": "memory",
                "ORDERFLOW_GATEWAY": "sandbox",
                "ORDERFLOW_API_AUTH": "none",
                **env,
            }
        )
    )


def bare_consumer(committed: dict[Any, int | None]) -> Any:
    """Our Faust consumer built without ``__init__`` (no broker, no app): the attributes its
    commit decision reads, with ``committed`` as Faust's committed offsets."""
    consumer = object.__new__(RewindingConsumer)
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._committed_offset = defaultdict(lambda: None, committed)
    consumer._gap = defaultdict(list)  # no gaps (Faust keeps IntervalTrees here)
    consumer.reading_from, consumer._held, consumer._seeks = {}, {}, set()
    consumer._fetched = {}
    consumer._read_offset = ReadOffsets()
    return consumer
