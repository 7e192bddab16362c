"""The audit can fail: each check is shown to catch a made-up broken run."""

from __future__ import annotations

from typing import Any

from tests.chaos.audit import Evidence, audit
from tests.chaos.availability import (
    SETTLE_CAP_S,
    FaultWindow,
    availability,
    is_failure,
    render_availability,
)
from tests.chaos.load import Attempt, Intent

_BODY = {
    "customer_id": "c-1",
    "currency": "EUR",
    "items": [{"sku": "S", "quantity": 2, "unit_amount": 500}],
    "payment": {"token": "tok_visa"},
}
_ORDER = "ord_1"


def _clean() -> Evidence:
    intent = Intent(0, "k-0", _BODY, "tok_visa", "single", order_id=_ORDER, accepted_status=201)
    order = {"order_id": _ORDER, "amount": 1000, "currency": "EUR"}
    return Evidence(
        intents=[intent],
        orderdb={
            _ORDER: [
                {**order, "status": "PENDING"},
                {**order, "status": "PAID", "charge_id": "ch_1"},
            ]
        },
        paymentdb={
            _ORDER: [{"status": "ATTEMPTING"}, {"status": "COMPLETED", "charge_id": "ch_1"}]
        },
        completed={_ORDER: [{"charge_id": "ch_1"}]},
        failed={},
        dead_letters=[],
        ledger=[
            {
                "id": "ch_1",
                "order_id": _ORDER,
                "status": "succeeded",
                "amount": 1000,
                "currency": "EUR",
            }
        ],
        api={_ORDER: {"status": "PAID"}},
    )


def _charge(charge_id: str, amount: int = 1000) -> dict[str, Any]:
    return {
        "id": charge_id,
        "order_id": _ORDER,
        "status": "succeeded",
        "amount": amount,
        "currency": "EUR",
    }


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
    ev.intents.append(
        Intent(1, "k-1", _BODY, "tok_visa", "no_key", order_id="ord_2", accepted_status=202)
    )
    verdict = audit(ev)
    assert verdict.failures["lost"] == ["ord_2"]


def test_a_keyed_order_the_client_gave_up_on_fails_the_run() -> None:
    ev = _clean()
    ev.intents.append(Intent(1, "k-1", _BODY, "tok_visa", "single", gave_up=True))
    assert audit(ev).failures["keyed_orders_client_gave_up"] == ["k-1"]


# The availability figures (tests/chaos/availability.py), on made-up attempts. Monotonic times
# are small numbers; the wall clock is monotonic + 1000, so second 1010 is [10.0, 11.0).
_WALL = 1000.0
_ATTEMPTS = [
    # start, duration, outcome, order, first attempt, order's first attempt
    Attempt(9.0, 0.1, 201, 0, True, 9.0),  # before the fault
    Attempt(9.5, 0.1, "ServerDisconnectedError", 5, True, 9.5),  # never gets a 2xx
    Attempt(10.2, 0.1, 503, 1, True, 10.2),  # answered in second 1010
    Attempt(10.6, 0.2, "ClientConnectorError", 1, False, 10.2),  # 1010 again
    Attempt(10.9, 0.05, 503, 2, True, 10.9),  # 1010 again; nothing fails in 1011
    Attempt(11.5, 2.0, "TimeoutError", 1, False, 10.2),  # sent in 1011, times out in 1013
    Attempt(12.6, 0.2, 202, 1, False, 10.2),  # order 1: 2xx at 12.8, 2600 ms after 10.2
    Attempt(12.7, 0.1, 503, 2, False, 10.9),  # 1012 fails: not a fully successful second
    Attempt(13.2, 0.1, 201, 2, False, 10.9),  # order 2: 2400 ms; 1013 is fully successful
    Attempt(13.4, 0.2, 201, 3, True, 13.4),  # order 3: 200 ms
    Attempt(14.5, 0.1, 503, 4, True, 14.5),  # after the first window; in the second fault's
    Attempt(14.7, 0.1, 201, 4, False, 14.5),  # order 4: 300 ms
]


def test_availability_of_one_fault_counts_failing_seconds_attempts_and_latencies() -> None:
    figures = availability(_ATTEMPTS, [FaultWindow("broker_restart", 10.0, 12.5)], _WALL)

    [occurrence] = figures["occurrences"]
    # Settled at the end of second 1013, the first after the fault's end (1012) whose attempts
    # all succeeded: the window is [10.0, 14.0).
    assert occurrence["window_s"] == [10.0, 14.0]
    assert (occurrence["ended_by"], occurrence["other_faults"]) == ("settled", [])
    assert occurrence["failed_attempts"] == 5  # answered at 10.3, 10.8, 10.95, 12.8, 13.5
    assert occurrence["failed_by_outcome"] == {
        "503": 3,
        "ClientConnectorError": 1,
        "TimeoutError": 1,
    }
    assert occurrence["unavailable_s"] == 3  # seconds 1010, 1012, 1013
    assert occurrence["longest_failing_run_s"] == 2  # 1012-1013
    # Orders 1, 2, 3 first tried in the window: 2600, 2400, 200 ms (nearest rank).
    assert occurrence["orders"] == 3
    assert occurrence["orders_without_2xx"] == 0
    assert (occurrence["post_p50_ms"], occurrence["post_p99_ms"], occurrence["post_max_ms"]) == (
        2400,
        2600,
        2600,
    )


def test_availability_aggregates_occurrences_per_fault_type_and_the_whole_run() -> None:
    faults = [
        FaultWindow("worker_kill", 10.0, 12.5),
        FaultWindow("worker_kill", 14.4, 14.6),
        FaultWindow("gateway_5xx", 9.0, 9.05),
    ]
    figures = availability(_ATTEMPTS, faults, _WALL)

    # The second kill never settles (second 1014 has a failure, then no attempt): capped.
    assert figures["occurrences"][1]["window_s"] == [14.4, 14.6 + SETTLE_CAP_S]
    assert figures["occurrences"][1]["failed_attempts"] == 1
    assert figures["by_fault"]["worker_kill"] == {
        "n": 2,
        "unavailable_s_max": 3,
        "unavailable_s_sum": 4,
        "longest_failing_run_s_max": 2,
        "failed_attempts": 6,
        "cut": 0,
        "overlap": 0,
        "orders": 4,
        "orders_without_2xx": 0,
        # Orders 1-4 over both windows: 200, 300, 2400, 2600 ms.
        "post_p50_ms": 300,
        "post_p99_ms": 2600,
        "post_max_ms": 2600,
    }
    # The kill at 10.0 cuts the gateway fault's window short: [9.0, 10.0), orders 0 and 5.
    assert figures["occurrences"][2]["window_s"] == [9.0, 10.0]
    assert figures["occurrences"][2]["ended_by"] == "next_fault"
    gateway = figures["by_fault"]["gateway_5xx"]
    assert (gateway["unavailable_s_max"], gateway["failed_attempts"]) == (1, 1)
    assert (gateway["orders"], gateway["orders_without_2xx"], gateway["post_max_ms"]) == (2, 1, 100)
    assert (gateway["cut"], gateway["overlap"]) == (1, 0)

    whole = figures["whole_run"]
    assert whole["failed_attempts"] == 7
    assert whole["unavailable_s"] == 5  # 1009, 1010, 1012, 1013, 1014
    assert whole["longest_failing_run_s"] == 3  # 1012-1014
    assert (whole["orders"], whole["orders_without_2xx"]) == (6, 1)
    # 100, 200, 300, 2400, 2600 ms
    assert (whole["post_p50_ms"], whole["post_p99_ms"], whole["post_max_ms"]) == (300, 2600, 2600)

    table = render_availability(figures)
    assert "worker_kill     2  3/4" in table
    assert table.splitlines()[-1].split()[:7] == ["whole_run", "-", "5", "3", "7", "-", "-"]


def test_the_next_fault_cuts_a_window_and_concurrent_faults_are_named() -> None:
    cut = availability(
        _ATTEMPTS,
        [FaultWindow("worker_kill", 10.0, 12.5), FaultWindow("broker_restart", 13.0, 13.1)],
        _WALL,
    )
    kill = cut["occurrences"][0]
    assert (kill["window_s"], kill["ended_by"]) == ([10.0, 13.0], "next_fault")
    assert (kill["failed_attempts"], kill["unavailable_s"]) == (4, 2)  # 1010, 1012; not 13.5

    shared = availability(
        _ATTEMPTS,
        [FaultWindow("worker_kill", 10.0, 12.5), FaultWindow("gateway_5xx", 11.0, 11.5)],
        _WALL,
    )
    kill, gateway = shared["occurrences"]
    assert (kill["window_s"], kill["other_faults"]) == ([10.0, 14.0], ["gateway_5xx"])
    # Started during the kill: settles with it, at the end of second 1013.
    assert (gateway["window_s"], gateway["other_faults"]) == ([11.0, 14.0], ["worker_kill"])
    assert gateway["failed_attempts"] == 2  # answered at 12.8 and 13.5
    assert shared["by_fault"]["gateway_5xx"]["overlap"] == 1


def test_a_429_or_a_4xx_is_not_a_failed_attempt() -> None:
    assert not is_failure(429) and not is_failure(422) and not is_failure(201)
    assert is_failure(503) and is_failure(500) and is_failure("TimeoutError")


def _refunded(amount: int, refund_id: str = "re_1") -> dict[str, Any]:
    return {"id": refund_id, "order_id": _ORDER, "status": "succeeded", "amount": amount}


def _with_refunds(ev: Evidence, refunded: int, status: str) -> Evidence:
    """The clean run's order, refunded ``refunded`` after its charge (the client asked it)."""
    last = ev.orderdb[_ORDER][-1]
    ev.orderdb[_ORDER].append(
        {**last, "status": status, "captured": 1000, "refunded": refunded, "refunds": []}
    )
    ev.refunds.append(_refunded(refunded))
    ev.api[_ORDER] = {"status": status}
    intent = ev.intents[0]
    intent.follow_up = "refund"
    intent.refunds = {"k-0-r1": (refunded, [201, 200], {"rf_1"})}
    return ev


def _cancelled_after_its_charge(ev: Evidence, given_back: int) -> Evidence:
    order = {"order_id": _ORDER, "amount": 1000, "currency": "EUR"}
    ev.orderdb[_ORDER] = [
        {**order, "status": "PENDING"},
        {**order, "status": "CANCELLED", "cancellation": {"reason": "", "at": "t"}},
        {**order, "status": "CANCELLED", "captured": 1000, "charge_id": "ch_1"},
        {**order, "status": "CANCELLED", "captured": 1000, "refunded": 1000, "charge_id": "ch_1"},
    ]
    ev.refunds.append(_refunded(given_back))
    ev.api[_ORDER] = {"status": "CANCELLED"}
    ev.intents[0].follow_up, ev.intents[0].cancel_status = "cancel", 200
    return ev


def test_refunds_and_a_compensated_cancel_pass() -> None:
    assert audit(_with_refunds(_clean(), 400, "PARTIALLY_REFUNDED")).ok
    assert audit(_with_refunds(_clean(), 1000, "REFUNDED")).ok
    verdict = audit(_cancelled_after_its_charge(_clean(), 1000))
    assert verdict.ok, verdict.failures
    assert verdict.figures["orders_cancelled_after_a_charge"] == 1


def test_a_cancelled_order_whose_charge_was_not_given_back_kept_money() -> None:
    failures = audit(_cancelled_after_its_charge(_clean(), 600)).failures
    assert "cancelled_kept_money" in failures
    assert "orderdb_money_vs_ledger" in failures


def test_money_given_back_beyond_the_charge_is_caught() -> None:
    ev = _with_refunds(_clean(), 1000, "REFUNDED")
    ev.refunds.append(_refunded(1, "re_2"))
    failures = audit(ev).failures
    assert "refunded_beyond_the_charge" in failures
    assert "orderdb_money_vs_ledger" in failures


def test_an_accepted_refund_the_order_never_got_back_is_caught() -> None:
    ev = _with_refunds(_clean(), 400, "PARTIALLY_REFUNDED")
    ev.intents[0].refunds["k-0-r2"] = (100, [201], {"rf_2"})
    assert "accepted_refunds_not_given_back" in audit(ev).failures


def test_a_refund_the_client_gave_up_on_after_a_202_must_come_back() -> None:
    ev = _with_refunds(_clean(), 400, "PARTIALLY_REFUNDED")
    ev.intents[0].refunds["k-0-r2"] = (600, [0], set())
    ev.intents[0].durable.add("k-0-r2")  # answered 202: in Kafka, so decided
    verdict = audit(ev)
    assert verdict.figures["refunds_answered"] == {"200": 1, "gave up after a 202": 1}
    failures = verdict.failures
    assert "accepted_refunds_not_given_back" in failures
    assert "wrong_outcome" in failures


def test_a_refund_the_client_gave_up_on_unheard_may_or_may_not_come_back() -> None:
    for given_back, status in ((400, "PARTIALLY_REFUNDED"), (1000, "REFUNDED")):
        ev = _with_refunds(_clean(), given_back, status)
        ev.intents[0].refunds = {
            "k-0-r1": (400, [201, 200], {"rf_1"}),
            "k-0-r2": (600, [0], set()),  # only 503s and timeouts: maybe written, maybe not
        }
        verdict = audit(ev)
        assert verdict.ok, (given_back, verdict.failures)
    ev = _with_refunds(_clean(), 300, "PARTIALLY_REFUNDED")  # neither sum: caught
    ev.intents[0].refunds = {"k-0-r1": (400, [201], {"rf_1"}), "k-0-r2": (600, [0], set())}
    assert "accepted_refunds_not_given_back" in audit(ev).failures


def test_a_refund_retry_naming_another_refund_is_caught() -> None:
    ev = _with_refunds(_clean(), 400, "PARTIALLY_REFUNDED")
    ev.intents[0].refunds["k-0-r1"] = (400, [201, 200], {"rf_1", "rf_9"})
    assert "refund_retry_other_refund" in audit(ev).failures


def test_a_refunded_order_paid_again_is_contradictory() -> None:
    ev = _with_refunds(_clean(), 1000, "REFUNDED")
    last = ev.orderdb[_ORDER][-1]
    ev.orderdb[_ORDER].append({**last, "status": "PAID"})
    ev.orderdb[_ORDER].append(last)
    assert "contradictory_orderdb_states" in audit(ev).failures


def test_an_accepted_cancel_of_an_order_that_ended_paid_is_the_wrong_outcome() -> None:
    ev = _clean()
    ev.intents[0].follow_up, ev.intents[0].cancel_status = "cancel", 200
    assert "wrong_outcome" in audit(ev).failures


def test_an_order_still_owed_a_refund_is_not_settled() -> None:
    ev = _with_refunds(_clean(), 400, "PARTIALLY_REFUNDED")
    ev.orderdb[_ORDER][-1]["refunds"] = [{"refund_id": "rf_2", "state": "REQUESTED"}]
    assert "lost" in audit(ev).failures
