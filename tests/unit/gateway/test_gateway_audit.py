"""The gateway audit's judgement on hand-made request logs, ledgers and changelog records."""

from __future__ import annotations

from typing import Any

import orjson

from orderflow.domain.payment import idempotency_key_for
from tests.gateway_audit import GatewayAudit, judge_gateway
from tests.kafka_helpers import Record

SETTLED_MS = 1_000_000_000  # PaymentDB records the answer at this time (epoch ms)
SETTLED_S = SETTLED_MS / 1000


def _record(order_id: str, value: dict[str, Any], timestamp: int) -> Record:
    return Record("changelog", 0, 0, order_id.encode(), orjson.dumps(value), (), timestamp)


def _charge(order_id: str, at: float, outcome: str = "created", **extra: Any) -> dict[str, Any]:
    row = {
        "kind": "charge",
        "order_id": order_id,
        "idempotency_key": idempotency_key_for(order_id),
        "at": at,
        "outcome": outcome,
        "delivered": True,
        "violation": None,
        "charge_id": "ch_1",
    }
    return {**row, **extra}


def _judge(
    requests: list[dict[str, Any]],
    ledger: list[dict[str, Any]] | None = None,
    *,
    status: str = "PAID",
    charge_id: str = "ch_1",
    payment_statuses: tuple[str, ...] = ("ATTEMPTING", "COMPLETED"),
) -> GatewayAudit:
    ledger = (
        [{"order_id": "o1", "id": "ch_1", "status": "succeeded", "amount": 500}]
        if (ledger is None)
        else ledger
    )
    payments = [
        _record("o1", {"status": s}, SETTLED_MS - 10 * (len(payment_statuses) - 1 - i))
        for i, s in enumerate(payment_statuses)
    ]
    order = {"status": status, "charge_id": charge_id if status == "PAID" else None, "amount": 500}
    return judge_gateway(
        {"o1"},
        requests=requests,
        ledger=ledger,
        order_changelog=[_record("o1", order, SETTLED_MS + 5)],
        payment_changelog=payments,
    )


def test_one_charge_before_settlement_is_clean() -> None:
    audit = _judge([_charge("o1", SETTLED_S - 0.05)])
    assert audit.problems == []
    assert audit.charge_requests == {"o1": 1}
    assert audit.paid == {"o1"}


def test_charge_request_after_the_payment_settled_is_a_service_fault() -> None:
    late = _charge("o1", SETTLED_S + 0.5, "replayed", violation="answered before")
    audit = _judge([_charge("o1", SETTLED_S - 0.05), late])
    assert audit.late_charge_requests == [late]
    assert audit.violations_after_settled == [late]
    assert any("after the payment was settled" in p for p in audit.problems)


def test_request_within_the_timestamp_grain_of_the_settle_is_not_called_late() -> None:
    # Kafka truncates to the millisecond: 0.5 ms after the timestamp may be before the write.
    audit = _judge([_charge("o1", SETTLED_S + 0.0005, "replayed")])
    assert audit.late_charge_requests == []


def test_reask_before_paymentdb_knew_the_answer_is_allowed_but_counted() -> None:
    # The worker heard the answer, crashed before writing it, and its successor asked again.
    reask = _charge("o1", SETTLED_S - 0.01, "replayed", violation="answered before")
    audit = _judge([_charge("o1", SETTLED_S - 5), reask])
    assert audit.problems == []
    assert audit.reasks_after_crash == [reask]


def test_second_successful_charge_is_found_even_when_paid_matches_one() -> None:
    ledger = [
        {"order_id": "o1", "id": "ch_1", "status": "succeeded", "amount": 500},
        {"order_id": "o1", "id": "ch_2", "status": "succeeded", "amount": 500},
    ]
    audit = _judge([_charge("o1", SETTLED_S - 5)], ledger, charge_id="ch_2")
    assert audit.succeeded == {"o1": 2}
    assert any("more than once" in p for p in audit.problems)
    assert any("2 successful charge(s) for 1 PAID" in p for p in audit.problems)


def test_paid_order_whose_charge_differs_from_the_ledger_is_a_fault() -> None:
    audit = _judge([_charge("o1", SETTLED_S - 5)], charge_id="ch_other")
    assert any("PAID with charge ch_other" in p for p in audit.problems)


def test_paid_order_without_a_charge_and_money_without_paid_are_faults() -> None:
    assert any("without a successful charge" in p for p in _judge([], ledger=[]).problems)
    failed = _judge(
        [_charge("o1", SETTLED_S - 5)],
        status="PAYMENT_FAILED",
        payment_statuses=("ATTEMPTING", "FAILED"),
    )
    assert failed.problems == ["1 successful charge(s) for 0 PAID order(s)"]


def test_requests_are_matched_by_key_when_they_carry_no_order_and_counted() -> None:
    lookup = {
        "kind": "lookup",
        "order_id": None,
        "idempotency_key": idempotency_key_for("o1"),
        "at": SETTLED_S - 1,
        "outcome": "not_found",
        "delivered": True,
        "violation": None,
        "charge_id": None,
    }
    dropped = _charge("o1", SETTLED_S - 2, "dropped_response", delivered=False)
    other = _charge("o2", SETTLED_S + 9)
    audit = _judge(
        [dropped, lookup, _charge("o1", SETTLED_S - 0.5, "replayed"), other],
        payment_statuses=("ATTEMPTING", "UNKNOWN", "COMPLETED"),
    )
    assert audit.problems == []
    assert (audit.charge_requests, audit.lookups) == ({"o1": 2}, {"o1": 1})
    assert (audit.dropped_responses, audit.undelivered, audit.dropped_orders) == (1, 1, {"o1"})
    assert audit.went_unknown == {"o1"}
