"""What a Selection matches, how keys map to partitions, and how records are shown."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from orderflow.domain.events import OrderCancelled, PaymentRefunded, RefundRequested
from orderflow.domain.order import Cancellation, OrderRefund, OrderStatus, RefundState
from orderflow.tools.replay.errors import SelectionError
from orderflow.tools.replay.model import (
    Selection,
    TopicRecord,
    describe,
    key_partition,
    record_to_json,
    time_order,
)
from orderflow.tools.replay.window import TimeWindow
from orderflow.wire import encode_event, order_to_bytes
from tests.unit.builders import ITEMS_TOTAL, T0, pending_order


def rec(key: bytes | None = b"ord_1", value: bytes | None = b"{}", **kw: object) -> TopicRecord:
    fields: dict[str, object] = {
        "topic": "order.created",
        "partition": 3,
        "offset": 10,
        "timestamp": 1_000,
        "key": key,
        "value": value,
    }
    fields.update(kw)
    return TopicRecord(**fields)  # type: ignore[arg-type]


def test_offsets_need_a_partition_and_must_be_ordered() -> None:
    with pytest.raises(SelectionError, match="need --partition"):
        Selection(from_offset=1)
    with pytest.raises(SelectionError, match="greater"):
        Selection(partitions=(0,), from_offset=5, to_offset=4)
    Selection(partitions=(0,), from_offset=5, to_offset=5)  # one record: fine


def test_offsets_are_inclusive_and_the_window_half_open() -> None:
    selection = Selection(
        partitions=(3,), from_offset=10, to_offset=11, window=TimeWindow(1_000, 2_000)
    )
    assert selection.matches(rec(offset=10)) and selection.matches(rec(offset=11))
    assert not selection.matches(rec(offset=12)) and not selection.matches(rec(offset=9))
    assert not selection.matches(rec(partition=4))
    assert not selection.matches(rec(timestamp=2_000))


def test_order_id_matches_the_key_or_a_value_whose_key_is_wrong() -> None:
    selection = Selection(order_ids=frozenset({"ord_1"}))
    assert selection.matches(rec(key=b"ord_1"))
    assert selection.matches(rec(key=b"other", value=b'{"order_id": "ord_1"}'))
    assert not selection.matches(rec(key=b"ord_12", value=b'{"order_id": "ord_12"}'))
    assert not selection.matches(rec(key=None, value=b'{"note": "ord_1"}'))
    assert not selection.matches(rec(key=b"x", value=b'"ord_1" not json'))


def test_event_type_comes_from_the_value() -> None:
    selection = Selection(event_types=frozenset({"payment.failed"}))
    assert selection.matches(rec(value=b'{"event_type": "payment.failed"}'))
    assert not selection.matches(rec(value=b'{"event_type": "payment.completed"}'))
    assert not selection.matches(rec(value=b"garbage"))
    assert not selection.matches(rec(value=None))


def test_key_partition_is_the_default_partitioner_of_every_producer() -> None:
    partitions = list(range(8))
    for key in (b"ord_1", b"", "ord_é".encode(), bytes(range(50))):
        assert key_partition(key, 8) == DefaultPartitioner()(key, partitions, partitions)


def test_json_output_inlines_json_and_keeps_other_bytes_readable() -> None:
    data = record_to_json(
        rec(
            value=b'{"event_type": "order.created", "amount": 1}',
            headers=(("h", b"v"), ("bin", b"\xff")),
        )
    )
    assert data["value"] == {"event_type": "order.created", "amount": 1}
    assert data["event_type"] == "order.created"
    assert data["headers"] == {"h": "v", "bin": "base64:/w=="}
    assert data["time"] == "1970-01-01T00:00:01.000Z"
    broken = record_to_json(rec(key=b"\xff", value=b"{broken"))
    assert (broken["key"], broken["value"], broken["value_raw"]) == ("base64:/w==", None, "{broken")
    assert record_to_json(rec(value=None))["value"] is None
    assert describe(rec(value=None)) == "(tombstone)"
    assert describe(rec(value=b"\x00\x01")).startswith("undecodable value")


def test_time_order_breaks_millisecond_ties_by_the_pipeline_order() -> None:
    created = rec(topic="order.created", timestamp=5, offset=1)
    command = rec(topic="orderflow.order-commands", timestamp=5, offset=9)
    earlier = rec(topic="payment.completed", timestamp=4, offset=7)
    assert sorted([created, command, earlier], key=time_order) == [earlier, command, created]


def test_a_header_with_a_null_value_prints_as_null() -> None:
    out = record_to_json(rec(headers=(("nullable", None), ("text", b"t"))))
    assert out["headers"] == {"nullable": None, "text": "t"}


def test_cancels_refunds_and_their_states_are_described_from_the_real_encoding() -> None:
    at = "2026-12-01T00:00:00Z"
    cancelled = OrderCancelled("ord_1", "ordered twice", at, 100, "EUR")
    requested = RefundRequested("ord_1", "rf_1", 40, "EUR", "", at)
    refunded = PaymentRefunded("ord_1", "cancel_1", 100, "EUR", "re_9", at, True, "ch_1")
    partly = pending_order(
        status=OrderStatus.PARTIALLY_REFUNDED,
        captured=ITEMS_TOTAL,
        refunded=40,
        refunds=(
            OrderRefund("rf_1", 40, RefundState.COMPLETED, "", T0),
            OrderRefund("rf_2", 5, RefundState.REQUESTED, "", T0),
        ),
    )
    gone = pending_order(status=OrderStatus.CANCELLED, cancellation=Cancellation("oops", T0))

    def shown(topic: str, value: bytes) -> str:
        return describe(rec(topic=topic, value=value))

    assert shown("order.cancelled", encode_event(cancelled)) == (
        "order.cancelled 100 EUR (ordered twice)"
    )
    assert shown("refund.requested", encode_event(requested)) == "refund.requested rf_1 40 EUR"
    assert shown("payment.refunded", encode_event(refunded)) == (
        "payment.refunded cancel_1 100 EUR refund=re_9 (compensation)"
    )
    changelog = "orderflow-OrderDB-changelog"
    assert shown(changelog, order_to_bytes(partly)) == (
        f"OrderDB <- PARTIALLY_REFUNDED captured {ITEMS_TOTAL} refunded 40, 2 refund(s), "
        "1 in progress"
    )
    assert shown(changelog, order_to_bytes(gone)) == "OrderDB <- CANCELLED (oops)"
