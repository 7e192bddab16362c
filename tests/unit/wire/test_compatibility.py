"""Every byte string the code wrote before orderflow.wire (captured from 1441d60) still decodes.

``captured_1441d60.json`` holds, per sample, the bytes main's ``records.py`` wrote (or, for the
``legacy-*``/``before-*`` samples, the layout older releases wrote: OrderDB values with a
payment token and no command offset, PaymentDB values without ``problem``) and the ``repr`` of
the object main's decoder made of them (the orders' since cancels and refunds: with the
fields those added, at the values an old order reads as: nothing refunded, a PAID one having
captured its amount).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orderflow.wire import (
    decode_event,
    encode_event,
    order_from_bytes,
    order_to_bytes,
    payment_from_bytes,
    payment_to_bytes,
)

CAPTURED = json.loads((Path(__file__).parent / "captured_1441d60.json").read_text())


def _samples(kind: str) -> list[Any]:
    return [pytest.param(s, id=s["name"]) for s in CAPTURED[kind]]


@pytest.mark.parametrize("sample", _samples("events"))
def test_captured_event_decodes_to_the_same_event(sample: dict[str, str]) -> None:
    event = decode_event(sample["bytes"].encode(), sample["name"].split("-")[0])

    assert repr(event) == sample["decoded"]


@pytest.mark.parametrize("sample", _samples("orders"))
def test_captured_order_db_value_decodes_to_the_same_order(sample: dict[str, str]) -> None:
    order = order_from_bytes(sample["bytes"].encode())

    assert repr(order) == sample["decoded"]
    assert order.legacy_payment_token == sample["legacy_payment_token"]


@pytest.mark.parametrize("sample", _samples("payments"))
def test_captured_payment_db_value_decodes_to_the_same_record(sample: dict[str, str]) -> None:
    assert repr(payment_from_bytes(sample["bytes"].encode())) == sample["decoded"]


def test_the_capture_covers_legacy_values() -> None:
    names = {s["name"] for kind in CAPTURED.values() for s in kind}

    assert {"legacy-with-token-pending", "before-problem", "order.created-tokenless-nudge"} <= names


# The bytes today's writers make of each sample's decoded object, kept at 34587e2 (before the
# writers lost their hand-written field copies): whatever the writers become, they must write
# exactly these bytes, or a changelog or topic would hold two spellings of one value. One
# deliberate change since: order.place and order.created put the order's terms (declared once
# for both) before their own fields. Key order means nothing to a reader (JSON objects match by
# name: the captured samples above, in the old order, still decode to the same events).
ENCODED = json.loads((Path(__file__).parent / "encoded_34587e2.json").read_text())


@pytest.mark.parametrize("sample", _samples("events"))
def test_event_is_written_to_the_same_bytes(sample: dict[str, str]) -> None:
    event = decode_event(sample["bytes"].encode(), sample["name"].split("-")[0])

    assert encode_event(event).decode() == ENCODED["events"][sample["name"]]


@pytest.mark.parametrize("sample", _samples("orders"))
def test_order_db_value_is_written_to_the_same_bytes(sample: dict[str, str]) -> None:
    order = order_from_bytes(sample["bytes"].encode())

    assert order_to_bytes(order).decode() == ENCODED["orders"][sample["name"]]


@pytest.mark.parametrize("sample", _samples("payments"))
def test_payment_db_value_is_written_to_the_same_bytes(sample: dict[str, str]) -> None:
    record = payment_from_bytes(sample["bytes"].encode())

    assert payment_to_bytes(record).decode() == ENCODED["payments"][sample["name"]]
