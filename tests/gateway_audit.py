"""What the service did at the gateway, for a set of orders: an audit over HTTP and topic records.

The sandbox's ledger alone proves little (one key, one charge, whatever the service does). This
audit reads the sandbox's request log and ledger and the service's own records (OrderDB and
PaymentDB changelogs) and asserts, for the given orders:

- at most one successful charge per order (meaningful with expiring keys on);
- successful charges == PAID orders, and each PAID order's charge id and amount are its ledger
  row's (no PAID without money, no money without PAID);
- no charge request after PaymentDB recorded the payment settled (COMPLETED or FAILED): the
  service knew the answer and asked again. Strict-mode violations that came *before* PaymentDB
  recorded the answer (the worker heard it, then crashed before writing it) are re-asks after a
  crash: allowed, but counted.

It returns the counts (requests and lookups per order, dropped responses, payments that went
UNKNOWN, violations by class) so a fault test can assert that its fault really happened. Plain
functions over HTTP and Kafka records, so the chaos suite can call it too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from orderflow.domain.payment import idempotency_key_for
from orderflow.topics import changelog_topic
from tests.kafka_helpers import Record, read_topic
from tests.orders_client import gateway_ledger, gateway_requests

__all__ = ["GatewayAudit", "audit_gateway", "check_gateway", "judge_gateway"]

# Kafka timestamps are whole milliseconds (truncated): a request that arrived up to 1 ms after
# the record's timestamp may still have come before the settle itself.
_CLOCK_GRAIN_S = 0.001


@dataclass
class GatewayAudit:
    """What the gateway saw of a set of orders, and what in it is a service fault."""

    charge_requests: dict[str, int] = field(default_factory=dict)  # per order
    lookups: dict[str, int] = field(default_factory=dict)  # per order
    succeeded: dict[str, int] = field(default_factory=dict)  # successful charges per order
    outcomes: Counter[str] = field(default_factory=Counter)  # request outcomes, all kinds
    dropped_responses: int = 0  # charged, then the answer was dropped on purpose
    undelivered: int = 0  # answers that never reached an open connection (incl. dropped)
    dropped_orders: set[str] = field(default_factory=set)  # orders with a dropped answer
    went_unknown: set[str] = field(default_factory=set)  # PaymentDB said UNKNOWN at some point
    paid: set[str] = field(default_factory=set)
    # Strict-mode violations, by class: re-asks before PaymentDB recorded the answer (a crash
    # between hearing and writing: allowed) and after it (a service fault).
    reasks_after_crash: list[dict[str, Any]] = field(default_factory=list)
    violations_after_settled: list[dict[str, Any]] = field(default_factory=list)
    # Charge requests that arrived after PaymentDB recorded the payment settled (strict or not).
    late_charge_requests: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """The counts, for a test's failure message or a report."""
        requests = Counter(self.charge_requests.values())
        return {
            "orders_by_charge_requests": dict(sorted(requests.items())),
            "charge_requests": sum(self.charge_requests.values()),
            "lookups": sum(self.lookups.values()),
            "dropped_responses": self.dropped_responses,
            "undelivered": self.undelivered,
            "went_unknown": len(self.went_unknown),
            "reasks_after_crash": len(self.reasks_after_crash),
            "violations_after_settled": len(self.violations_after_settled),
            "late_charge_requests": len(self.late_charge_requests),
            "outcomes": dict(self.outcomes),
        }


def _by_order(records: list[Record], order_ids: set[str]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        key = (record.key or b"").decode(errors="replace")
        if key in order_ids and record.value:
            out[key].append(record)
    return out


def audit_gateway(bootstrap: str, gateway_url: str, order_ids: Iterable[str]) -> GatewayAudit:
    """Collect the audit for ``order_ids``; ``problems`` lists every service fault found."""
    return judge_gateway(
        set(order_ids),
        requests=gateway_requests(gateway_url),
        ledger=gateway_ledger(gateway_url),
        order_changelog=read_topic(bootstrap, changelog_topic("OrderDB")),
        payment_changelog=read_topic(bootstrap, changelog_topic("PaymentDB")),
    )


def judge_gateway(
    ids: set[str],
    *,
    requests: list[dict[str, Any]],
    ledger: list[dict[str, Any]],
    order_changelog: list[Record],
    payment_changelog: list[Record],
) -> GatewayAudit:
    """The audit from what was read: the sandbox's request log and ledger, the two changelogs."""
    by_key = {idempotency_key_for(o): o for o in ids}
    orders = _by_order(order_changelog, ids)
    payments = _by_order(payment_changelog, ids)
    requests = [
        r for r in requests if r["order_id"] in ids or by_key.get(r["idempotency_key"] or "") in ids
    ]
    ledger = [row for row in ledger if row["order_id"] in ids]
    audit = GatewayAudit()

    settled_at: dict[str, float] = {}  # order -> when PaymentDB first recorded the answer (s)
    for order_id, history in payments.items():
        for record in history:
            status = orjson.loads(record.value or b"{}").get("status")
            if status == "UNKNOWN":
                audit.went_unknown.add(order_id)
            if status in ("COMPLETED", "FAILED") and order_id not in settled_at:
                settled_at[order_id] = record.timestamp / 1000

    charges: dict[str, Counter[str]] = defaultdict(Counter)
    for r in requests:
        order_id = r["order_id"] if r["order_id"] in ids else by_key[r["idempotency_key"]]
        audit.outcomes[r["outcome"]] += 1
        if r["outcome"] == "dropped_response":
            audit.dropped_responses += 1
            audit.dropped_orders.add(order_id)
        audit.undelivered += not r["delivered"]
        if r["kind"] == "lookup":
            charges[order_id]["lookup"] += 1
        if r["kind"] != "charge":
            continue
        charges[order_id]["charge"] += 1
        settled = settled_at.get(order_id)
        late = settled is not None and r["at"] >= settled + _CLOCK_GRAIN_S
        if late:
            audit.late_charge_requests.append(r)
        if r["violation"] is not None:
            (audit.violations_after_settled if late else audit.reasks_after_crash).append(r)
    audit.charge_requests = {o: c["charge"] for o, c in charges.items() if c["charge"]}
    audit.lookups = {o: c["lookup"] for o, c in charges.items() if c["lookup"]}

    succeeded = [row for row in ledger if row["status"] == "succeeded"]
    audit.succeeded = dict(Counter(row["order_id"] for row in succeeded))
    twice = {o: n for o, n in audit.succeeded.items() if n > 1}
    if twice:
        audit.problems.append(f"orders charged more than once: {twice}")
    if audit.late_charge_requests:
        late = [(r["order_id"], r["outcome"]) for r in audit.late_charge_requests]
        audit.problems.append(f"charge requests after the payment was settled: {late[:10]}")

    for order_id in ids:
        if not orders.get(order_id):
            continue  # never stored: assert_orders_settled_once reports it
        final = orjson.loads(orders[order_id][-1].value or b"{}")
        rows = [row for row in succeeded if row["order_id"] == order_id]
        if final.get("status") == "PAID":
            audit.paid.add(order_id)
            if not rows:
                audit.problems.append(f"{order_id}: PAID without a successful charge")
            elif (rows[-1]["id"], rows[-1]["amount"]) != (final["charge_id"], final["amount"]):
                audit.problems.append(
                    f"{order_id}: PAID with charge {final['charge_id']} of {final['amount']},"
                    f" the ledger has {rows[-1]['id']} of {rows[-1]['amount']}"
                )
    if len(succeeded) != len(audit.paid):
        audit.problems.append(
            f"{len(succeeded)} successful charge(s) for {len(audit.paid)} PAID order(s)"
        )
    return audit


def check_gateway(bootstrap: str, gateway_url: str, order_ids: Iterable[str]) -> GatewayAudit:
    """``audit_gateway``, failing the test on any service fault; returns the audit."""
    audit = audit_gateway(bootstrap, gateway_url, order_ids)
    assert not audit.problems, f"{audit.problems}\n{audit.summary()}"
    return audit
