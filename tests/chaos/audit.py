"""The audit of a run, from the outside: topics, the gateway's ledger and the HTTP API.

``collect`` reads the evidence (topics with a plain consumer in no group, the sandbox's admin
endpoints, GET /orders/{id}); ``audit`` is a pure function over that evidence, so each check can
be shown to fail on made-up evidence (tests/chaos/test_audit.py).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from orderflow.topics import (
    DEAD_LETTERS,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    changelog_topic,
)
from orderflow.wire.dead_letters import DLQ_HEADER_REASON
from tests.chaos.load import Intent
from tests.harness import auth_headers
from tests.kafka_helpers import Record, read_topic

__all__ = [
    "Evidence",
    "Verdict",
    "audit",
    "collect",
    "order_states",
    "payment_states",
    "settled",
]

_TERMINAL = ("PAID", "PAYMENT_FAILED", "CANCELLED", "PARTIALLY_REFUNDED", "REFUNDED")
_CHARGED = ("PAID", "PARTIALLY_REFUNDED", "REFUNDED")  # the charge was kept (or refunded)
# The statuses an order may move to from each terminal one (refunds move PAID on).
_LATER = {
    "PAID": {"PAID", "PARTIALLY_REFUNDED", "REFUNDED"},
    "PARTIALLY_REFUNDED": {"PARTIALLY_REFUNDED", "REFUNDED"},
    "REFUNDED": {"REFUNDED"},
    "PAYMENT_FAILED": {"PAYMENT_FAILED"},
    "CANCELLED": {"CANCELLED"},
}
_EXAMPLES = 10  # order ids kept per failed check in the result file


@dataclass
class Evidence:
    """Everything the audit looks at."""

    intents: list[Intent]
    orderdb: dict[str, list[dict[str, Any]]]  # order id -> every changelog value, in order
    paymentdb: dict[str, list[dict[str, Any]]]
    completed: dict[str, list[dict[str, Any]]]  # payment.completed events per order
    failed: dict[str, list[dict[str, Any]]]
    dead_letters: list[tuple[str, str]]  # (order id, reason)
    ledger: list[dict[str, Any]]  # the sandbox's rows
    api: dict[str, dict[str, Any] | None]  # order id -> GET /orders/{id} body (None: no answer)
    statuses: Counter[str] = field(default_factory=Counter)
    bare_5xx: list[dict[str, Any]] = field(default_factory=list)
    gateway_stats: dict[str, Any] = field(default_factory=dict)
    gateway_requests: list[dict[str, Any]] | None = None  # None: the sandbox has no request log
    refunds: list[dict[str, Any]] = field(default_factory=list)  # the sandbox's refund rows


def settled(state: dict[str, Any]) -> bool:
    """An OrderDB value that ends the order's story: terminal, and owed nothing (no refund
    REQUESTED, no charge of a cancelled order left to give back)."""
    if state.get("status") not in _TERMINAL:
        return False
    if any(r.get("state") == "REQUESTED" for r in state.get("refunds") or ()):
        return False
    owed = state.get("status") == "CANCELLED" and state.get("refunded", 0) < state.get(
        "captured", 0
    )
    refused = any(
        r.get("compensation") and r.get("state") == "FAILED" for r in state.get("refunds") or ()
    )
    return not owed or refused


@dataclass
class Verdict:
    """The figures of the table, and the checks that failed (with example order ids)."""

    figures: dict[str, Any]
    failures: dict[str, list[str]]
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # order id -> its story

    @property
    def ok(self) -> bool:
        return not self.failures


def _group(records: list[Record]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.value is None or r.key is None:
            continue  # a tombstone, or a record no producer of ours writes
        try:
            value = orjson.loads(r.value)
        except orjson.JSONDecodeError:
            value = {"undecodable": r.value[:100].decode(errors="replace")}
        out[r.key.decode(errors="replace")].append(value)
    return out


async def _get_orders(urls: list[str], order_ids: list[str]) -> dict[str, dict[str, Any] | None]:
    """GET every order (any worker; 503 retried a few times); None when no 200 came."""
    out: dict[str, dict[str, Any] | None] = {}
    rng = random.Random(0)
    sem = asyncio.Semaphore(16)
    timeout = aiohttp.ClientTimeout(total=10)

    async def one(session: aiohttp.ClientSession, order_id: str) -> None:
        async with sem:
            for attempt in range(8):
                try:
                    url = rng.choice(urls)
                    async with session.get(f"{url}/orders/{order_id}", timeout=timeout) as resp:
                        if resp.status == 200:
                            out[order_id] = await resp.json()
                            return
                        if resp.status == 404:
                            out[order_id] = {"status": "404"}
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.3 * (attempt + 1))
            out[order_id] = None

    async with aiohttp.ClientSession(headers=auth_headers()) as session:
        await asyncio.gather(*(one(session, o) for o in order_ids))
    return out


async def _get_json(url: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=60)) as resp,
    ):
        return resp.status, (await resp.json() if resp.status == 200 else None)


def order_states(bootstrap: str) -> dict[str, list[dict[str, Any]]]:
    """OrderDB's changelog grouped by order (what drain polls)."""
    return _group(read_topic(bootstrap, changelog_topic("OrderDB")))


def payment_states(bootstrap: str) -> dict[str, list[dict[str, Any]]]:
    """PaymentDB's changelog grouped by order (drain: is a cancelled payment decided?)."""
    return _group(read_topic(bootstrap, changelog_topic("PaymentDB")))


async def collect(
    bootstrap: str,
    gateway_url: str,
    worker_urls: list[str],
    intents: list[Intent],
    statuses: Counter[str],
    bare_5xx: list[dict[str, Any]],
) -> Evidence:
    """Read the evidence once the pipeline has drained."""
    topics = [
        changelog_topic("OrderDB"),
        changelog_topic("PaymentDB"),
        PAYMENT_COMPLETED,
        PAYMENT_FAILED,
        DEAD_LETTERS,
    ]
    records = await asyncio.gather(*(asyncio.to_thread(read_topic, bootstrap, t) for t in topics))
    dead = [
        (
            (r.key or b"").decode(errors="replace"),
            dict(r.headers).get(DLQ_HEADER_REASON, b"?").decode(errors="replace"),
        )
        for r in records[4]
    ]
    _, ledger = await _get_json(f"{gateway_url}/_admin/ledger")
    _, refunds = await _get_json(f"{gateway_url}/_admin/refunds")
    _, stats = await _get_json(f"{gateway_url}/_admin/stats")
    status, requests = await _get_json(f"{gateway_url}/_admin/requests")
    if isinstance(requests, dict):
        requests = requests.get("data", requests.get("requests"))
    accepted = [i.order_id for i in intents if i.order_id is not None]
    api = await _get_orders(worker_urls, accepted)
    return Evidence(
        intents=intents,
        orderdb=_group(records[0]),
        paymentdb=_group(records[1]),
        completed=_group(records[2]),
        failed=_group(records[3]),
        dead_letters=dead,
        ledger=list((ledger or {}).get("data", [])),
        api=api,
        statuses=statuses,
        bare_5xx=bare_5xx,
        gateway_stats=dict(stats or {}),
        gateway_requests=list(requests) if status == 200 and isinstance(requests, list) else None,
        refunds=list((refunds or {}).get("data", [])),
    )


def _reason_class(reason: str) -> str:
    # "malformed: value: not JSON (...)" -> "malformed: value"; keeps the table short.
    return ":".join(reason.split(":")[:2]).strip()[:60]


def _per_order_counts(raw: Any) -> dict[str, int]:
    """A per-order count from the sandbox's stats, whatever its exact shape (dict or rows)."""
    if isinstance(raw, dict):
        return {str(k): int(v) for k, v in raw.items() if isinstance(v, int | float)}
    if isinstance(raw, list):
        out = {}
        for row in raw:
            if isinstance(row, dict) and "order_id" in row:
                value = row.get("count", row.get("requests", row.get("n"))) or 0
                out[str(row["order_id"])] = int(value)
        return out
    return {}


def audit(ev: Evidence, fail_on_violations: bool = False) -> Verdict:
    """Every check of the table; ``failures`` names each broken one with example order ids."""
    fail: dict[str, list[str]] = defaultdict(list)
    accepted = {i.order_id: i for i in ev.intents if i.order_id is not None}
    succeeded: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ledger_by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in ev.ledger:
        ledger_by_order[str(row["order_id"])].append(row)
        if row["status"] == "succeeded":
            succeeded[str(row["order_id"])].append(row)

    given_back: dict[str, int] = defaultdict(int)  # order id -> money the gateway refunded
    for row in ev.refunds:
        if row.get("status") == "succeeded":
            given_back[str(row.get("order_id"))] += int(row.get("amount", 0))

    terminal = lost = paid = declined = duplicates = 0
    for order_id, intent in accepted.items():
        states = ev.orderdb.get(order_id, [])
        statuses = [s.get("status") for s in states]
        final = states[-1] if states else None
        if final is None or not settled(final):
            lost += 1
            fail["lost"].append(order_id)
            continue
        terminal += 1
        status = final["status"]
        paid += status in _CHARGED
        declined += status == "PAYMENT_FAILED"
        first = next(i for i, s in enumerate(statuses) if s in _TERMINAL)
        moves = zip(statuses[first:], statuses[first + 1 :], strict=False)
        if set(statuses[:first]) - {"PENDING"} or any(
            after not in _LATER.get(str(before), ()) for before, after in moves
        ):
            fail["contradictory_orderdb_states"].append(order_id)
        if status not in _expected(intent):
            fail["wrong_outcome"].append(order_id)
        if final.get("amount") != intent.amount:
            fail["wrong_amount"].append(order_id)

        completed, failed = ev.completed.get(order_id, []), ev.failed.get(order_id, [])
        if len(completed) > 1 or len(failed) > 1:
            duplicates += 1
        charge_ids = {e.get("charge_id") for e in completed}
        if (completed and failed) or len(charge_ids) > 1:
            fail["contradictory_terminal_events"].append(order_id)
        last_event = "PAID" if completed and not failed else "PAYMENT_FAILED" if failed else None
        if status == "CANCELLED":  # a racing charge's outcome, or none: both are fine
            pass
        elif last_event != ("PAID" if status in _CHARGED else status) or (
            status in _CHARGED and final.get("charge_id") not in charge_ids
        ):
            fail["orderdb_vs_payment_event"].append(order_id)

        charges = succeeded.get(order_id, [])
        if status in _CHARGED:
            good = [
                c
                for c in charges
                if c.get("id") == final.get("charge_id")
                and c.get("amount") == final.get("amount")
                and str(c.get("currency", "")).upper() == str(final.get("currency", "")).upper()
            ]
            if len(charges) != 1 or len(good) != 1:
                fail["paid_without_exactly_one_matching_charge"].append(order_id)
        elif status == "PAYMENT_FAILED" and charges:
            fail["charged_but_not_paid"].append(order_id)
        # The order's money is the ledger's money: what was taken, what came back.
        charged = sum(int(c.get("amount", 0)) for c in charges)
        if given_back[order_id] > charged:
            fail["refunded_beyond_the_charge"].append(order_id)
        # (A PAID value leaves ``captured`` out: it is the order's amount.)
        captured = final.get("captured", final.get("amount") if status == "PAID" else 0)
        if (captured, final.get("refunded", 0)) != (charged, given_back[order_id]):
            fail["orderdb_money_vs_ledger"].append(order_id)
        if status == "CANCELLED" and charged != given_back[order_id]:
            fail["cancelled_kept_money"].append(order_id)
        if final.get("refunded", 0) not in intent.refunded_possible() and status != "CANCELLED":
            fail["accepted_refunds_not_given_back"].append(order_id)
        if any(len(ids) > 1 for _, _, ids in intent.refunds.values()):
            fail["refund_retry_other_refund"].append(order_id)

        payments = ev.paymentdb.get(order_id) or [{}]
        payment = payments[-1]
        # Once settled, PaymentDB never changes again: a later write is a second writer (a
        # revoked batch still writing) or a re-decision. (Refunds add to it: not a change.)
        outcomes = [(p.get("status"), p.get("charge_id")) for p in payments]
        settled_at = next((o for o in outcomes if o[0] in ("COMPLETED", "FAILED")), None)
        if settled_at is not None and set(outcomes[outcomes.index(settled_at) :]) != {settled_at}:
            fail["paymentdb_changed_after_settled"].append(order_id)
        want = {"COMPLETED"} if status in _CHARGED else {"FAILED"}
        if status == "CANCELLED":
            want = {"COMPLETED"} if charged else {"VOIDED", "FAILED"}
        if payment.get("status") not in want:
            fail["orderdb_vs_paymentdb"].append(order_id)
        pay_charges = {c.get("id") for c in charges}
        if payment.get("status") == "COMPLETED" and payment.get("charge_id") not in pay_charges:
            fail["paymentdb_vs_ledger"].append(order_id)
        if payment.get("status") in ("FAILED", "VOIDED") and charges:
            fail["paymentdb_vs_ledger"].append(order_id)

        answer = ev.api.get(order_id)
        if answer is not None and answer.get("status") != status:
            fail["api_vs_orderdb"].append(order_id)
        elif answer is None and order_id in ev.api:
            fail["api_no_answer"].append(order_id)

        # Retries with the same key must name the same order; another body must be refused.
        if any(rid != order_id for rid in intent.replay_ids):
            fail["idempotent_retry_other_order"].append(order_id)
        if intent.mode == "reuse_key" and intent.reuse_status not in (422, 0):
            fail["reused_key_not_422"].append(order_id)

    # A careful client with a key retries 5xx for minutes: giving up means the service could
    # not take the order for that long (e.g. a partition stuck in recovery).
    for intent in ev.intents:
        if intent.gave_up and intent.mode != "no_key":
            fail["keyed_orders_client_gave_up"].append(intent.key)
        if intent.mode == "reuse_key" and intent.reuse_status == 0:
            fail["keyed_orders_client_gave_up"].append(intent.key + " (reused key)")

    # Orders the service stored that no client heard of (the client gave up): still one end.
    unacknowledged = [o for o in ev.orderdb if o not in accepted and o.startswith("ord_")]
    # Which answers the client got for orders that were stored after all (unkeyed: a client that
    # believes a 503 and orders again pays twice).
    unacked_answers = Counter(
        f"{i.mode} {i.final_status}" for i in ev.intents if i.order_id is None and i.final_status
    )
    for order_id in unacknowledged:
        if not settled(ev.orderdb[order_id][-1]):
            fail["stored_unacknowledged_not_terminal"].append(order_id)
    known = set(ev.orderdb)
    for order_id in succeeded:
        if order_id not in known:
            fail["charge_for_unknown_order"].append(order_id)

    per_order = Counter({o: len(c) for o, c in succeeded.items()})
    per_order_stats = _per_order_counts(ev.gateway_stats.get("succeeded_per_order"))
    max_charges = max([*per_order.values(), *per_order_stats.values(), 0])
    if max_charges > 1:
        fail["double_charged"].extend(
            o for o, n in {**per_order, **per_order_stats}.items() if n > 1
        )
    # Every successful charge is an order that kept it or gave it back: PAID (refunded or not),
    # or CANCELLED after a racing charge.
    paid_all = sum(
        1
        for s in ev.orderdb.values()
        if s and (s[-1].get("status") in _CHARGED or s[-1].get("captured", 0) > 0)
    )
    total_succeeded = sum(per_order.values())
    if total_succeeded != paid_all:
        fail["successful_charges_ne_paid_orders"].append(f"{total_succeeded} != {paid_all}")

    requests_per_order = _per_order_counts(ev.gateway_stats.get("charge_requests_per_order"))
    if not requests_per_order and ev.gateway_requests is not None:
        requests_per_order = dict(
            Counter(
                str(r.get("order_id", r.get("order_ref", "")))
                for r in ev.gateway_requests
                if r.get("kind") == "charge"
            )
        )
    raw_violations = ev.gateway_stats.get("violations")
    if ev.gateway_requests is not None:
        violations = [
            str(r.get("order_id", r.get("order_ref", "?")))
            for r in ev.gateway_requests
            if r.get("violation")
        ]
    elif isinstance(raw_violations, list):
        violations = [str(v) for v in raw_violations]
    else:
        violations = ["?"] * int(raw_violations or 0)
    if violations and fail_on_violations:
        fail["gateway_violations"].extend(violations)

    if ev.bare_5xx:
        fail["bare_5xx"].extend(f"{b['status']} {b['key']}" for b in ev.bare_5xx)

    reuse = [i for i in accepted.values() if i.mode == "reuse_key"]
    figures: dict[str, Any] = {
        "orders_planned": len(ev.intents),
        "orders_accepted": len(accepted),
        "orders_never_accepted": sum(1 for i in ev.intents if i.order_id is None),
        "orders_unkeyed_tried": sum(1 for i in ev.intents if i.mode == "no_key"),
        "orders_unkeyed_accepted": sum(1 for i in accepted.values() if i.mode == "no_key"),
        "orders_terminal": terminal,
        "orders_paid": paid,
        "orders_payment_failed": declined,
        "orders_cancelled": _count_final(ev, accepted, "CANCELLED"),
        "orders_cancelled_after_a_charge": sum(
            1
            for o in accepted
            if ev.orderdb.get(o)
            and ev.orderdb[o][-1].get("status") == "CANCELLED"
            and ev.orderdb[o][-1].get("captured", 0) > 0
        ),
        "cancels_answered": dict(
            sorted(
                Counter(
                    str(i.cancel_status) for i in accepted.values() if i.follow_up == "cancel"
                ).items()
            )
        ),
        "refunds_answered": dict(
            sorted(
                Counter(
                    _refund_answer(answers, key in i.durable)
                    for i in accepted.values()
                    for key, (_, answers, _) in i.refunds.items()
                ).items()
            )
        ),
        "orders_partially_refunded": _count_final(ev, accepted, "PARTIALLY_REFUNDED"),
        "orders_refunded": _count_final(ev, accepted, "REFUNDED"),
        "refunds_at_the_gateway": len([r for r in ev.refunds if r.get("status") == "succeeded"]),
        "compensations_at_the_gateway": len(
            [r for r in ev.refunds if str(r.get("refund_ref", "")).startswith("cancel_")]
        ),
        "refunded_beyond_the_charge": len(fail.get("refunded_beyond_the_charge", [])),
        "orderdb_money_vs_ledger": len(fail.get("orderdb_money_vs_ledger", [])),
        "cancelled_kept_money": len(fail.get("cancelled_kept_money", [])),
        "orders_lost": lost,
        "max_successful_charges_per_order": max_charges,
        "paid_without_exactly_one_matching_charge": len(
            fail.get("paid_without_exactly_one_matching_charge", [])
        ),
        "charged_but_not_paid": len(fail.get("charged_but_not_paid", [])),
        "successful_charges_total": total_succeeded,
        "paid_orders_total": paid_all,
        "orders_with_duplicate_terminal_events": duplicates,
        "contradictory_terminal_events": len(fail.get("contradictory_terminal_events", [])),
        "contradictory_orderdb_states": len(fail.get("contradictory_orderdb_states", [])),
        "orderdb_vs_last_payment_event": len(fail.get("orderdb_vs_payment_event", [])),
        "orderdb_vs_paymentdb": len(fail.get("orderdb_vs_paymentdb", [])),
        "paymentdb_changed_after_settled": len(fail.get("paymentdb_changed_after_settled", [])),
        "paymentdb_vs_ledger": len(fail.get("paymentdb_vs_ledger", [])),
        "api_vs_orderdb": len(fail.get("api_vs_orderdb", [])),
        "wrong_outcome_for_token": len(fail.get("wrong_outcome", [])),
        "stored_but_unacknowledged": len(unacknowledged),
        "client_answers_of_unaccepted_orders": dict(unacked_answers),
        "dead_letters_by_reason": dict(Counter(_reason_class(r) for _, r in ev.dead_letters)),
        "http_answers": dict(sorted(ev.statuses.items())),
        "bare_5xx": len(ev.bare_5xx),
        "reused_keys_422": f"{sum(1 for i in reuse if i.reuse_status == 422)}/{len(reuse)}",
        "idempotent_retries_same_order": sum(len(i.replay_ids) for i in accepted.values()),
        "gateway_charge_requests": ev.gateway_stats.get("charge_requests"),
        "gateway_request_log": ev.gateway_requests is not None,
        "charge_requests_per_order_max": max(requests_per_order.values(), default=None),
        "charge_requests_per_order_distribution": dict(
            sorted(Counter(requests_per_order.values()).items())
        ),
        "gateway_violations": len(violations),
    }
    details = {o: _order_story(ev, o) for v in fail.values() for o in v[:3] if o.startswith("ord_")}
    for o in violations[:3]:
        details.setdefault(o, _order_story(ev, o))
    failures = {
        k: v[:_EXAMPLES] + ([f"... {len(v)} in all"] if len(v) > _EXAMPLES else [])
        for k, v in fail.items()
    }
    return Verdict(figures, failures, details)


def _expected(intent: Intent) -> set[str]:
    """The statuses the client's own actions call for: the token's outcome; CANCELLED once its
    cancel was accepted (either, when the client gave up before the answer); PARTIALLY_REFUNDED
    or REFUNDED by the money its refunds may have given back (``Intent.refunded_possible``)."""
    if intent.cancel_status == 200:
        return {"CANCELLED"}
    if intent.follow_up == "cancel" and intent.cancel_status in (0, None):
        return {"CANCELLED", intent.expected}
    if intent.expected != "PAID":
        return {intent.expected}
    return {
        "PAID"
        if not refunded
        else "REFUNDED"
        if refunded >= intent.amount
        else "PARTIALLY_REFUNDED"
        for refunded in intent.refunded_possible()
    }


def _refund_answer(answers: list[int], durable: bool) -> str:
    """A refund request's last decided answer; for one given up on, whether Kafka had it."""
    last = answers[-1] if answers else 0
    if last == 0:
        return "gave up after a 202" if durable else "gave up"
    return str(last)


def _count_final(ev: Evidence, accepted: Mapping[str, Intent], status: str) -> int:
    return sum(
        1
        for o in accepted
        if ev.orderdb.get(str(o)) and ev.orderdb[str(o)][-1].get("status") == status
    )


def _order_story(ev: Evidence, order_id: str) -> dict[str, Any]:
    """What every source says about one order, for the result file's examples."""

    def brief(values: list[dict[str, Any]]) -> list[str]:
        return [
            " ".join(
                str(v.get(k)) for k in ("status", "attempts", "charge_id") if v.get(k) is not None
            )
            for v in values
        ]

    return {
        "orderdb": brief(ev.orderdb.get(order_id, [])),
        "paymentdb": brief(ev.paymentdb.get(order_id, [])),
        "payment_completed": [e.get("charge_id") for e in ev.completed.get(order_id, [])],
        "payment_failed": len(ev.failed.get(order_id, [])),
        "ledger": [
            f"{r.get('id')} {r.get('status')} {r.get('amount')}"
            for r in ev.ledger
            if r.get("order_id") == order_id
        ],
        "gateway_refunds": [
            f"{r.get('id')} {r.get('status')} {r.get('amount')}"
            for r in ev.refunds
            if r.get("order_id") == order_id
        ],
        "gateway_requests": [
            f"{r.get('kind')} {r.get('outcome')} delivered={r.get('delivered')}"
            + (f" VIOLATION {r['violation']}" if r.get("violation") else "")
            for r in ev.gateway_requests or []
            if r.get("order_id") == order_id
        ],
        "api": (ev.api.get(order_id) or {}).get("status"),
        "client": next(
            (
                {
                    "refunds": {k: [a, s, k in i.durable] for k, (a, s, _) in i.refunds.items()},
                    "changes": i.change_trail,
                }
                for i in ev.intents
                if i.order_id == order_id
            ),
            {},
        ),
    }


def render_table(figures: Mapping[str, Any], failures: Mapping[str, Sequence[str]]) -> str:
    """The result as a two-column text table, failed checks last."""
    lines = ["", f"{'check':<44} value", "-" * 78]
    for name, value in figures.items():
        if isinstance(value, dict):
            text = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        else:
            text = "-" if value is None else str(value)
        lines.append(f"{name:<44} {text}")
    lines.append("-" * 78)
    if failures:
        for name, examples in failures.items():
            lines.append(f"FAILED {name}: {', '.join(examples[:3])}")
    else:
        lines.append("VERDICT: OK (nothing lost, nothing charged twice, nothing inconsistent)")
    return "\n".join(lines)
