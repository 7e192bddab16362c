"""The pipeline and recovery scenarios' bookkeeping: what they inject is what the service reads,
how records per topic and terminal times are counted. Speed is never asserted."""

from __future__ import annotations

import msgspec
import pytest

from bench.inject import build_commands, paid_order
from bench.kafka_counts import TerminalWatch, by_topic
from bench.scenarios.pipeline import PipelineRun, figures
from orderflow.domain.events import PlaceOrder
from orderflow.domain.order import OrderStatus
from orderflow.domain.validation import validate_order_request
from orderflow.wire import decode_event, order_from_bytes, order_to_bytes


def test_injected_commands_are_place_orders_the_order_service_decodes() -> None:
    [(order_id, raw)] = build_commands(1, "bench-client")
    command = decode_event(raw, PlaceOrder.event_type)
    assert isinstance(command, PlaceOrder)
    assert command.order_id == order_id
    assert command.client_id == "bench-client"
    assert not command.keyed  # an order without an Idempotency-Key: its own fresh id
    assert order_id.startswith("ord_") and len(order_id) == len("ord_") + 32
    # The body a client would have posted for it passes the API's validation.
    body = {
        "customer_id": command.customer_id,
        "currency": command.currency,
        "items": [
            {"sku": i.sku, "quantity": i.quantity, "unit_amount": i.unit_amount}
            for i in command.items
        ],
        "payment": {"token": command.payment_token},
    }
    assert not isinstance(validate_order_request(body), list)


def test_filled_orders_are_valid_paid_orderdb_values() -> None:
    order = paid_order("ord_" + "a" * 32, "bench-client", "2026-11-30T12:00:00.000Z", 7)
    stored = order_from_bytes(order_to_bytes(order))
    assert stored == order
    assert stored.status is OrderStatus.PAID
    assert stored.amount == sum(i.quantity * i.unit_amount for i in stored.items)


def test_records_per_topic_are_end_offset_deltas_over_every_partition() -> None:
    before = {("a", 0): 5, ("a", 1): 2, ("b", 0): 10}
    after = {("a", 0): 8, ("a", 1): 2, ("b", 0): 10, ("c", 0): 4}
    assert by_topic(before, after) == {"a": 3, "c": 4}


def _value(status: str) -> bytes:
    return msgspec.json.encode({"order_id": "x", "status": status, "amount": 1})


def test_terminal_watch_keeps_the_first_terminal_write_of_each_expected_order() -> None:
    watch = TerminalWatch("unused:1")
    watch.expect(["o1", "o2", "o3"])
    watch._track(b"o1", _value("PENDING"), 1_000)
    watch._track(b"o1", _value("PAID"), 2_000)
    watch._track(b"o1", _value("PAID"), 9_000)  # a later write does not move its end
    watch._track(b"o2", _value("PAYMENT_FAILED"), 3_000)
    watch._track(b"other", _value("PAID"), 99_000)  # not expected: not counted
    watch._track(b"o3", b"not json", 4_000)
    assert watch.pending == 1
    assert watch.terminal_at["o1"] == 2.0
    assert watch.last_terminal_at() == 3.0
    assert dict(watch.statuses) == {"PAID": 1, "PAYMENT_FAILED": 1}


def test_pipeline_figures_name_every_topic_in_every_repetition() -> None:
    runs = [
        PipelineRun(100, 1.0, 10.0, 0.5, 0.2, 2**20, {"t1": 200, "t2": 100}),
        PipelineRun(100, 2.0, 20.0, 0.7, 0.3, 2**20, {"t1": 200}),
    ]
    by_name = {f.name: f for f in figures(runs)}
    assert by_name["throughput, 100 orders injected"].values == [10.0, 5.0]
    assert by_name["worker CPU per order"].values == pytest.approx([5.0, 7.0])
    assert by_name["Kafka records per order, all topics"].values == [3.0, 2.0]
    assert by_name["records per order: t2"].values == [1.0, 0.0]
