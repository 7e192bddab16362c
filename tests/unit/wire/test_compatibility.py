"""Every byte string the code wrote before orderflow.wire (captured from 1441d60) still decodes.

``captured_1441d60.json`` holds, per sample, the bytes main's ``records.py`` wrote (or, for the
``legacy-*``/``before-*`` samples, the layout older releases wrote: OrderDB values with a
payment token and no command offset, PaymentDB values without ``problem``) and the ``repr`` of
the object main's decoder made of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orderflow.wire import decode_event, order_from_bytes, payment_from_bytes

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
