"""The dry-run fold: today's decision rule and state machine against recorded history."""

from __future__ import annotations

import dataclasses

from orderflow.tools.replay.dryrun import dry_run
from orderflow.tools.replay.model import ORDER_CHANGELOG, TopicRecord

from orderflow.domain.events import PaymentCompleted, PaymentFailed
from orderflow.domain.order import OrderStatus
from orderflow.domain.payment import DECLINE_MESSAGES, Approved, Decline
from orderflow.records import encode_event, order_to_bytes
from orderflow.tools.sandbox.rules import sandbox_decision
from orderflow.topics import ORDER_COMMANDS, ORDER_CREATED, PAYMENT_COMPLETED, PAYMENT_FAILED
from tests.unit.builders import ITEMS_TOTAL, T1, TOKEN, pending_order, place_command

ORDER = pending_order()
PAID = dataclasses.replace(ORDER, status=OrderStatus.PAID, charge_id="ch_1")
COMPLETED = PaymentCompleted("ord-1", ITEMS_TOTAL, "USD", "ch_1", T1)


def rec(topic: str, value: bytes | None, at: int, key: bytes = b"ord-1") -> TopicRecord:
    """A record at time ``at`` (ms); offsets follow time within the test's tiny history."""
    return TopicRecord(topic, 0, at, at, key, value)


def history(
    *,
    outcome: bytes = encode_event(COMPLETED),
    final: bytes = order_to_bytes(PAID),
    created: bytes = encode_event(ORDER.created_event(TOKEN)),
) -> list[TopicRecord]:
    return [
        rec(ORDER_COMMANDS, encode_event(place_command()), 1),
        rec(ORDER_CREATED, created, 2),
        rec(PAYMENT_COMPLETED if b"completed" in outcome else PAYMENT_FAILED, outcome, 3),
        rec(ORDER_CHANGELOG, final, 4),
    ]


def declines_everything(token: str) -> Approved | Decline:
    return DECLINE_MESSAGES["card_declined"]


def test_a_consistent_history_has_no_findings() -> None:
    report = dry_run(history())
    assert (report.orders, report.compared, report.findings) == (1, 1, [])


def test_a_changed_decision_rule_is_reported_where_it_decides_differently() -> None:
    report = dry_run(history(), declines_everything)
    [finding] = report.findings
    assert (finding.kind, finding.recorded, finding.today, finding.at) == (
        "payment_decision",
        "approved",
        "declined (card_declined, retryable=False)",
        f"{PAYMENT_COMPLETED}:0:3",
    )
    assert finding.is_difference and report.differing_orders == 1


def test_the_default_rule_is_the_sandbox_rule() -> None:
    assert dry_run(history()).findings == dry_run(history(), sandbox_decision).findings


def test_another_decline_code_is_a_difference() -> None:
    failed = PaymentFailed("ord-1", ITEMS_TOTAL, "USD", DECLINE_MESSAGES["expired_card"], T1)
    final = dataclasses.replace(ORDER, status=OrderStatus.PAYMENT_FAILED, decline=failed.reason)
    report = dry_run(
        history(outcome=encode_event(failed), final=order_to_bytes(final)), declines_everything
    )
    assert [(f.kind, f.recorded, f.today) for f in report.findings] == [
        (
            "decline",
            "declined (expired_card, retryable=False)",
            "declined (card_declined, retryable=False)",
        ),
    ]


def test_an_order_created_that_today_would_publish_differently() -> None:
    wrong = dataclasses.replace(ORDER.created_event(TOKEN), amount=ITEMS_TOTAL + 1)
    charged = dataclasses.replace(COMPLETED, amount=ITEMS_TOTAL + 1)  # what was recorded
    report = dry_run(history(created=encode_event(wrong), outcome=encode_event(charged)))
    kinds = [f.kind for f in report.findings]
    assert kinds[0] == "order_created"
    assert report.findings[0].recorded == f"amount={ITEMS_TOTAL + 1}"
    assert report.findings[0].today == f"amount={ITEMS_TOTAL}"
    # The recorded payment does not match today's order amount: apply_payment refuses it,
    # and the state machine ends elsewhere than OrderDB did.
    assert kinds[1:] == ["refused", "final_status"]


def test_a_final_status_that_the_state_machine_does_not_reach() -> None:
    failed_in_db = dataclasses.replace(ORDER, status=OrderStatus.PAYMENT_FAILED)
    [finding] = dry_run(history(final=order_to_bytes(failed_in_db))).findings
    assert (finding.kind, finding.recorded, finding.today) == (
        "final_status",
        "OrderDB PAYMENT_FAILED",
        "state machine PAID",
    )


def test_undecodable_events_are_reported_but_are_not_differences() -> None:
    records = [*history(), rec(ORDER_CREATED, b"{not json", 5)]
    report = dry_run(records)
    [finding] = report.findings
    assert finding.kind == "undecodable" and not finding.is_difference
    assert report.differences == []


def test_orders_are_folded_separately_and_in_time_order_whatever_the_input_order() -> None:
    other = dataclasses.replace(ORDER, order_id="ord-2")
    other_history = [
        rec(ORDER_CREATED, encode_event(other.created_event(TOKEN)), 2, key=b"ord-2"),
        rec(
            PAYMENT_COMPLETED,
            encode_event(dataclasses.replace(COMPLETED, order_id="ord-2")),
            3,
            key=b"ord-2",
        ),
    ]
    # Republished copies (same event again) are normal: decided once, applied once.
    duplicates = [
        rec(ORDER_CREATED, encode_event(ORDER.created_event(TOKEN)), 6),
        rec(PAYMENT_COMPLETED, encode_event(COMPLETED), 7),
    ]
    mixed = list(reversed(history() + other_history + duplicates))
    report = dry_run(mixed)
    assert (report.orders, report.compared, report.findings) == (2, 2, [])
    changed = dry_run(mixed, declines_everything)
    assert sorted(f.order_id for f in changed.differences) == ["ord-1", "ord-2"]


def test_a_tokenless_nudge_copy_is_not_re_decided_nor_a_changed_body() -> None:
    # The command past retention: the only order.created on record is a stall nudge's copy
    # without a token (settled from PaymentDB); and after the first one, a copy changes nothing.
    tokenless = encode_event(ORDER.created_event(""))
    only_copy = [r for r in history(created=tokenless) if r.topic != ORDER_COMMANDS]
    assert dry_run(only_copy).findings == []
    first, *rest = history()
    with_copy = [first, rest[0], rec(ORDER_CREATED, tokenless, 2), *rest[1:]]
    assert dry_run(with_copy).findings == []
