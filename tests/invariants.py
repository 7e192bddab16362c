"""What must hold on the topics for a set of orders, whatever faults happened.

The gateway ledger counts charges, but the sandbox refuses a second charge for one idempotency
key, so the ledger alone cannot show every kind of double processing. These checks read what the
services themselves wrote.
"""

from __future__ import annotations

import re
from collections import defaultdict

import orjson

from orderflow.topics import (
    DEAD_LETTERS,
    ORDER_CREATED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    changelog_topic,
)
from orderflow.wire.dead_letters import DLQ_HEADER_REASON
from tests.kafka_helpers import Record, read_topic

__all__ = ["assert_not_nudged", "assert_orders_settled_once", "nudged_orders"]

_TERMINAL = {"PAID", "PAYMENT_FAILED"}


def _by_order(records: list[Record], order_ids: set[str]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        key = (record.key or b"").decode(errors="replace")
        if key in order_ids:
            out[key].append(record)
    return out


def assert_orders_settled_once(
    bootstrap: str, order_ids: set[str], expected_dead_letters: tuple[str, ...] = ()
) -> None:
    """Every order: one terminal state reached once, never left; one outcome; tables agree.

    No event of these orders may have been dead-lettered, except with a reason starting with one
    of ``expected_dead_letters`` (a test that sends poison says which).
    """
    orders = _by_order(read_topic(bootstrap, changelog_topic("OrderDB")), order_ids)
    payments = _by_order(read_topic(bootstrap, changelog_topic("PaymentDB")), order_ids)
    created = _by_order(read_topic(bootstrap, ORDER_CREATED), order_ids)
    completed = _by_order(read_topic(bootstrap, PAYMENT_COMPLETED), order_ids)
    failed = _by_order(read_topic(bootstrap, PAYMENT_FAILED), order_ids)
    for order_id in order_ids:
        statuses = [orjson.loads(r.value or b"{}")["status"] for r in orders[order_id]]
        assert statuses, f"{order_id}: never stored in OrderDB"
        first_terminal = next((i for i, s in enumerate(statuses) if s in _TERMINAL), None)
        assert first_terminal is not None, f"{order_id}: never terminal: {statuses}"
        assert set(statuses[:first_terminal]) == {"PENDING"}, (order_id, statuses)
        assert set(statuses[first_terminal:]) == {statuses[first_terminal]}, (order_id, statuses)
        final = statuses[first_terminal]
        # One outcome: never both a completion and a failure for one order.
        assert not (completed[order_id] and failed[order_id]), f"{order_id}: paid and failed"
        assert (final == "PAID") == bool(completed[order_id]), (order_id, final)
        payment = orjson.loads(payments[order_id][-1].value or b"{}")
        expected = "COMPLETED" if final == "PAID" else "FAILED"
        assert payment["status"] == expected, (order_id, payment["status"], final)
        # Every write for the order landed on its partition (bind_event in batched agents).
        partitions = {
            r.partition for r in orders[order_id] + payments[order_id] + created[order_id]
        }
        assert len(partitions) == 1, (order_id, partitions)
    dead = [
        (r.key, dict(r.headers).get(DLQ_HEADER_REASON, b"").decode(errors="replace"))
        for r in read_topic(bootstrap, DEAD_LETTERS)
        if (r.key or b"").decode(errors="replace") in order_ids
    ]
    unexpected = [
        (key, why)
        for key, why in dead
        if not (expected_dead_letters and why.startswith(expected_dead_letters))
    ]
    assert not unexpected, f"events of these orders were dead-lettered: {unexpected[:5]}"


_NUDGE = re.compile(r"order (ord_[0-9a-f]{32}) still PENDING")


def nudged_orders(worker_log: str) -> set[str]:
    """The orders a worker's stall watchdog had to publish again (from its log)."""
    return set(_NUDGE.findall(worker_log))


def assert_not_nudged(worker_logs: list[str], order_ids: set[str]) -> None:
    """No order finished only thanks to the stall watchdog: the normal path carried each one."""
    nudged = set().union(*(nudged_orders(log) for log in worker_logs)) & order_ids
    assert not nudged, f"orders needed the stall nudge to finish: {sorted(nudged)[:5]}"
