"""Cancels and refunds against the real broker, with faults: SIGKILL during a refund, a refund
whose gateway answer is lost, a cancel racing a successful charge. Each ends exactly once, and
the gateway's ledger (outside the worker) is the judge: charges, refunds, and their amounts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness import ManagedProcess, poll_until, start_sandbox, start_worker
from tests.orders_client import (
    cancel,
    gateway_ledger,
    gateway_refunds,
    gateway_requests,
    get_terminal,
    get_until,
    ledger_stats,
    order_body,
    place,
    refund,
    set_faults,
)

# Short gateway deadlines, reconciliation and stall detection, so faults play out in seconds.
_FAST = {
    "ORDERFLOW_GATEWAY_DEADLINE": "3",
    "ORDERFLOW_GATEWAY_TIMEOUT": "1",
    "ORDERFLOW_STALL_AFTER": "4",
}
AMOUNT = 2 * 1999  # order_body()'s total


def _worker(tmp: Path, bootstrap: str, gateway: str, name: str = "w1") -> ManagedProcess:
    return start_worker(tmp, bootstrap, gateway, name=name, extra=_FAST)


@dataclass
class System:
    """One worker and its sandbox gateway."""

    url: str
    gateway: str
    worker: ManagedProcess

    def paid_order(self) -> str:
        order_id = str(place(self.url, order_body())["order_id"])
        assert get_terminal(self.url, order_id)["status"] == "PAID"
        return order_id


@contextlib.contextmanager
def _system(tmp: Path, bootstrap: str, **extra: str) -> Iterator[System]:
    sandbox = start_sandbox(tmp)
    gateway = sandbox.meta["url"]
    worker = start_worker(tmp, bootstrap, gateway, extra={**_FAST, **extra})
    try:
        yield System(worker.meta["url"], gateway, worker)
    finally:
        worker.stop()
        sandbox.stop()


def _succeeded_refunds(gateway: str, order_id: str) -> list[int]:
    return [r["amount"] for r in gateway_refunds(gateway, order_id) if r["status"] == "succeeded"]


def _charges(gateway: str, order_id: str) -> list[dict[str, object]]:
    return [c for c in gateway_ledger(gateway) if c["order_id"] == order_id]


def test_partial_refunds_up_to_the_charge_then_refused_and_cancel_of_a_paid_order_is_409(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with _system(tmp_path, kafka_bootstrap) as system:
        url, gateway = system.url, system.gateway
        order_id = system.paid_order()

        assert cancel(url, order_id)[0] == 409
        first = refund(url, order_id, 1000, "r-1", "one item back")
        again = refund(url, order_id, 1000, "r-1", "one item back")
        over = refund(url, order_id, AMOUNT, "r-2")
        assert first[0] == 201, first
        assert again[0] == 200, again
        assert again[1]["refund"]["refund_id"] == first[1]["refund"]["refund_id"]
        assert over[0] == 422 and over[1]["problems"][0]["field"] == "amount"
        partly = get_until(url, order_id, lambda o: o["refunded"] == 1000, what="the refund")
        assert partly["status"] == "PARTIALLY_REFUNDED"

        rest = refund(url, order_id, AMOUNT - 1000, "r-3")
        assert rest[0] == 201, rest
        done = get_until(url, order_id, lambda o: o["status"] == "REFUNDED", what="REFUNDED")

        assert (done["captured"], done["refunded"]) == (AMOUNT, AMOUNT)
        assert sorted(_succeeded_refunds(gateway, order_id)) == sorted([1000, AMOUNT - 1000])


def test_a_cancel_racing_a_successful_charge_ends_cancelled_with_exactly_one_refund(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with _system(tmp_path, kafka_bootstrap) as system:
        url, gateway = system.url, system.gateway
        # The charge is at the gateway when the cancel comes (under the 1 s client timeout).
        set_faults(gateway, latency_ms=600)
        order_id = place(url, order_body())["order_id"]
        poll_until(lambda: ledger_stats(gateway)["charge_requests"] >= 1, 30, what="the charge")

        status, cancelled = cancel(url, order_id, "changed my mind")

        assert status == 200 and cancelled["status"] == "CANCELLED", cancelled
        final = get_until(
            url,
            order_id,
            lambda o: o["captured"] > 0 and o["refunded"] == o["captured"],
            what="the compensation refund",
        )
        assert final["status"] == "CANCELLED"  # never PAID-and-cancelled
        assert [r["compensation"] for r in final["refunds"]] == [True]
        assert [c["status"] for c in _charges(gateway, order_id)] == ["succeeded"]
        assert _succeeded_refunds(gateway, order_id) == [AMOUNT]
        assert len(gateway_refunds(gateway, order_id)) == 1


def test_a_charge_the_gateway_holds_past_the_deadline_is_refunded_after_a_cancel(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with _system(tmp_path, kafka_bootstrap, ORDERFLOW_CANCEL_WATCH="60") as system:
        url, gateway = system.url, system.gateway
        # The gateway holds every charge request 6 s, then charges anyway: past the client's
        # 3 s deadline, so the payment is UNKNOWN when the cancel comes, and the charge lands
        # after the first lookup found nothing.
        set_faults(gateway, timeout_rate=1.0, hang_s=6)
        order_id = place(url, order_body())["order_id"]
        poll_until(lambda: ledger_stats(gateway)["charge_requests"] >= 1, 30, what="the charge")
        status, cancelled = cancel(url, order_id)
        assert status == 200 and cancelled["status"] == "CANCELLED", cancelled
        set_faults(gateway)

        poll_until(
            lambda: [c for c in _charges(gateway, order_id) if c["status"] == "succeeded"],
            60,
            what="the held charge to land",
        )
        final = get_until(
            url,
            order_id,
            lambda o: o["captured"] == AMOUNT and o["refunded"] == AMOUNT,
            timeout=90,
            what="the late charge's compensation",
        )

        assert final["status"] == "CANCELLED"
        assert _succeeded_refunds(gateway, order_id) == [AMOUNT]
        assert len([c for c in _charges(gateway, order_id) if c["status"] == "succeeded"]) == 1


def test_a_refund_whose_gateway_answer_is_lost_ends_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with _system(tmp_path, kafka_bootstrap) as system:
        url, gateway, worker = system.url, system.gateway, system.worker
        order_id = system.paid_order()
        # Every answer comes after the client's 1 s timeout (its deadline: 3 s): the refund is
        # made at the gateway, and the payment service never hears it (UNKNOWN), then asks.
        set_faults(gateway, latency_ms=2000)
        assert refund(url, order_id, 700, "lost-1")[0] == 201
        poll_until(
            lambda: f"of {order_id} UNKNOWN" in worker.log_tail(20000),
            30,
            what="the refund to be UNKNOWN",
        )
        poll_until(  # made at the gateway all the same: its answer was never heard
            lambda: _succeeded_refunds(gateway, order_id) == [700], 30, what="the refund made"
        )
        set_faults(gateway)

        final = get_until(url, order_id, lambda o: o["refunded"] == 700, what="the refund")

        assert final["status"] == "PARTIALLY_REFUNDED"
        assert [r["status"] for r in final["refunds"]] == ["COMPLETED"]
        assert _succeeded_refunds(gateway, order_id) == [700]
        assert len(gateway_refunds(gateway, order_id)) == 1


def test_sigkill_during_a_refund_then_restart_refunds_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    first = _worker(tmp_path, kafka_bootstrap, gateway, "victim")
    second: ManagedProcess | None = None
    try:
        url = first.meta["url"]
        order_id = place(url, order_body())["order_id"]
        assert get_terminal(url, order_id)["status"] == "PAID"
        set_faults(gateway, latency_ms=2000)  # the refund is in flight when the worker dies
        assert refund(url, order_id, 1234, "kill-1")[0] == 201
        poll_until(
            lambda: any(
                r["kind"] == "refund" for r in gateway_requests(gateway, order_id=order_id)
            ),
            30,
            what="the refund request at the gateway",
        )

        first.kill()
        set_faults(gateway)
        # A fresh data dir: OrderDB and PaymentDB rebuilt from their changelogs.
        second = _worker(tmp_path, kafka_bootstrap, gateway, "survivor")

        final = get_until(
            second.meta["url"], order_id, lambda o: o["refunded"] == 1234, what="the refund"
        )
        assert final["status"] == "PARTIALLY_REFUNDED"
        assert _succeeded_refunds(gateway, order_id) == [1234]
        assert len(gateway_refunds(gateway, order_id)) == 1
        assert ledger_stats(gateway)["refunded_per_order"] == {order_id: 1234}
    finally:
        for proc in (second, first):
            if proc is not None:
                proc.stop()
        sandbox.stop()
