"""The audit can fail: each check is shown to catch a made-up broken run."""

from __future__ import annotations

from typing import Any

from tests.chaos.audit import Evidence, audit
from tests.chaos.load import Intent

_BODY = {"customer_id": "c-1", "currency": "EUR",
         "items": [{"sku": "S", "quantity": 2, "unit_amount": 500}],
         "payment": {"token": "tok_visa"}}  # fmt: skip
_ORDER = "ord_1"


def _clean() -> Evidence:
    intent = Intent(0, "k-0", _BODY, "tok_visa", "single", order_id=_ORDER, accepted_status=201)
    order = {"order_id": _ORDER, "amount": 1000, "currency": "EUR"}
    return Evidence(
        intents=[intent],
        orderdb={_ORDER: [{**order, "status": "PENDING"},
                          {**order, "status": "PAID", "charge_id": "ch_1"}]},
        paymentdb={_ORDER: [{"status": "ATTEMPTING"}, {"status": "COMPLETED", "charge_id": "ch_1"}]},
        completed={_ORDER: [{"charge_id": "ch_1"}]},
        failed={},
        dead_letters=[],
        ledger=[{"id": "ch_1", "order_id": _ORDER, "status": "succeeded", "amount": 1000,
                 "currency": "EUR"}],
        api={_ORDER: {"status": "PAID"}},
    )  # fmt: skip


def _charge(charge_id: str, amount: int = 1000) -> dict[str, Any]:
    return {"id": charge_id, "order_id": _ORDER, "status": "succeeded", "amount": amount,
            "currency": "EUR"}  # fmt: skip


def test_a_clean_run_passes() -> None:
    verdict = audit(_clean())
    assert verdict.ok, verdict.failures
    assert verdict.figures["orders_terminal"] == 1


def test_a_second_successful_charge_is_a_double_charge() -> None:
    ev = _clean()
    ev.ledger.append(_charge("ch_2"))
    verdict = audit(ev)
    assert verdict.figures["max_successful_charges_per_order"] == 2
    assert "double_charged" in verdict.failures
    assert "paid_without_exactly_one_matching_charge" in verdict.failures


def test_paid_with_another_amount_at_the_gateway_is_paid_without_its_charge() -> None:
    ev = _clean()
    ev.ledger[0] = _charge("ch_1", amount=999)
    assert "paid_without_exactly_one_matching_charge" in audit(ev).failures


def test_an_accepted_order_still_pending_is_lost() -> None:
    ev = _clean()
    ev.orderdb[_ORDER] = ev.orderdb[_ORDER][:1]
    verdict = audit(ev)
    assert verdict.figures["orders_lost"] == 1
    assert "lost" in verdict.failures


def test_a_failure_event_beside_the_completion_is_contradictory() -> None:
    ev = _clean()
    ev.failed[_ORDER] = [{"decline": {"code": "card_declined"}}]
    assert "contradictory_terminal_events" in audit(ev).failures


def test_paymentdb_naming_another_charge_than_the_ledger_is_inconsistent() -> None:
    ev = _clean()
    ev.paymentdb[_ORDER][-1] = {"status": "COMPLETED", "charge_id": "ch_other"}
    assert "paymentdb_vs_ledger" in audit(ev).failures


def test_a_bare_500_fails_the_run() -> None:
    ev = _clean()
    ev.bare_5xx.append({"status": 500, "key": "k-0"})
    assert "bare_5xx" in audit(ev).failures


def test_a_reused_key_that_was_not_refused_fails_the_run() -> None:
    ev = _clean()
    ev.intents[0].mode = "reuse_key"
    ev.intents[0].reuse_status = 201
    assert "reused_key_not_422" in audit(ev).failures


def test_gateway_violations_are_reported_and_fail_the_run_when_asked() -> None:
    ev = _clean()
    ev.gateway_requests = [{"order_id": _ORDER, "kind": "charge", "violation": "answered"}]
    assert audit(ev).ok
    assert audit(ev).figures["gateway_violations"] == 1
    verdict = audit(ev, fail_on_violations=True)
    assert verdict.figures["gateway_violations"] == 1
    assert verdict.figures["charge_requests_per_order_max"] == 1
    assert "gateway_violations" in verdict.failures


def test_a_paymentdb_write_after_settlement_is_a_second_writer() -> None:
    ev = _clean()
    ev.paymentdb[_ORDER].append({"status": "ATTEMPTING"})
    ev.paymentdb[_ORDER].append({"status": "COMPLETED", "charge_id": "ch_1"})
    verdict = audit(ev)
    assert verdict.figures["paymentdb_changed_after_settled"] == 1
    assert "paymentdb_changed_after_settled" in verdict.failures


def test_an_unkeyed_order_answered_202_and_never_stored_is_lost() -> None:
    ev = _clean()
    ev.intents.append(Intent(1, "k-1", _BODY, "tok_visa", "no_key", order_id="ord_2",
                             accepted_status=202))  # fmt: skip
    verdict = audit(ev)
    assert verdict.failures["lost"] == ["ord_2"]


def test_a_keyed_order_the_client_gave_up_on_fails_the_run() -> None:
    ev = _clean()
    ev.intents.append(Intent(1, "k-1", _BODY, "tok_visa", "single", gave_up=True))
    assert audit(ev).failures["keyed_orders_client_gave_up"] == ["k-1"]
