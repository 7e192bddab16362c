"""The chaos run's webhook check: it must catch a final state never delivered, an event missing
from an order's sequence, and a POST whose signature does not verify."""

from __future__ import annotations

import json
from typing import Any

from orderflow.domain.webhooks import SIGNATURE_HEADER, sign
from tests.chaos.webhooks import WebhookCheck
from tests.webhook_receiver import Received

SECRET = "whsec_test"
NOW = 1_800_000_000


def _post(
    order_id: str,
    sequence: int,
    status: str,
    updated_at: str,
    answered: int = 200,
    secret: str = SECRET,
) -> Received:
    body = json.dumps(
        {
            "id": f"evt_{order_id}_{sequence}",
            "sequence": sequence,
            "data": {
                "order": {
                    "order_id": order_id,
                    "status": status,
                    "refunded": 0,
                    "updated_at": updated_at,
                }
            },
        }
    ).encode()
    headers = {
        "Orderflow-Event-Id": f"evt_{order_id}_{sequence}",
        SIGNATURE_HEADER: sign(secret, NOW, body),
    }
    return Received(headers, body, answered)


def _final(status: str, updated_at: str) -> dict[str, Any]:
    return {"status": status, "updated_at": updated_at}


def _check(received: list[Received], finals: dict[str, dict[str, Any]]) -> WebhookCheck:
    return WebhookCheck(received, SECRET, finals, now=lambda: NOW)


def test_every_final_state_delivered_in_sequence_passes() -> None:
    check = _check(
        [_post("o1", 1, "PENDING", "t1"), _post("o1", 2, "PAID", "t2")],
        {"o1": _final("PAID", "t2")},
    )
    assert check.failures() == {}
    assert check.figures()["webhook_orders_final_state_delivered"] == 1


def test_a_final_state_only_refused_by_the_receiver_is_not_delivered() -> None:
    check = _check(
        [_post("o1", 1, "PENDING", "t1"), _post("o1", 2, "PAID", "t2", answered=503)],
        {"o1": _final("PAID", "t2")},
    )
    assert check.failures()["webhook_final_state_not_delivered"] == ["o1"]


def test_a_sequence_number_never_delivered_is_a_missing_event() -> None:
    check = _check(
        [_post("o1", 1, "PENDING", "t1"), _post("o1", 3, "PAID", "t3")],
        {"o1": _final("PAID", "t3")},
    )
    assert check.failures() == {"webhook_event_missing": ["o1"]}


def test_a_post_signed_with_another_secret_is_reported() -> None:
    check = _check(
        [_post("o1", 1, "PAID", "t1", secret="whsec_other")], {"o1": _final("PAID", "t1")}
    )
    assert check.failures() == {"webhook_bad_signature": ["evt_o1_1"]}


def test_duplicates_are_counted_not_failed() -> None:
    check = _check(
        [_post("o1", 1, "PAID", "t1"), _post("o1", 1, "PAID", "t1")], {"o1": _final("PAID", "t1")}
    )
    assert check.failures() == {}
    assert check.figures()["webhook_duplicate_deliveries"] == 1
