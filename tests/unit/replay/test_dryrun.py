"""The dry-run fold: today's code against recorded history, the gateway's answers as recorded."""

from __future__ import annotations

import dataclasses

from orderflow.domain.events import (
    CancelOrder,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    RefundOrder,
)
from orderflow.domain.order import OrderRefund, OrderStatus, RefundState
from orderflow.domain.payment import DECLINE_MESSAGES, PaymentRecord, PaymentStatus
from orderflow.domain.validation import LineItem
from orderflow.tools.replay.dryrun import dry_run
from orderflow.tools.replay.model import ORDER_CHANGELOG, PAYMENT_CHANGELOG, TopicRecord
from orderflow.topics import (
    ORDER_COMMANDS,
    ORDER_CREATED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_REFUNDED,
)
from orderflow.wire import encode_event, order_to_bytes, payment_to_bytes
from tests.unit.builders import ITEMS_TOTAL, T1, TOKEN, payment_record, pending_order, place_command

ORDER = pending_order()
PAID = dataclasses.replace(ORDER, status=OrderStatus.PAID, charge_id="ch_1")
COMPLETED = PaymentCompleted("ord-1", ITEMS_TOTAL, "USD", "ch_1", T1)
SETTLED = payment_record(status=PaymentStatus.COMPLETED, charge_id="ch_1")
# A real gateway's token: the sandbox would call it invalid_token; its answers are its own.
REAL_TOKEN = "tok_1PzRealCardFromTheGateway"


def rec(topic: str, value: bytes | None, at: int, key: bytes = b"ord-1") -> TopicRecord:
    """A record at time ``at`` (ms); offsets follow time within the test's tiny history."""
    return TopicRecord(topic, 0, at, at, key, value)


def history(
    *,
    outcome: bytes = encode_event(COMPLETED),
    final: bytes = order_to_bytes(PAID),
    created: bytes = encode_event(ORDER.created_event(TOKEN)),
    payment: PaymentRecord | None = SETTLED,
) -> list[TopicRecord]:
    records = [
        rec(ORDER_COMMANDS, encode_event(place_command()), 1),
        rec(ORDER_CREATED, created, 2),
        rec(PAYMENT_COMPLETED if b"completed" in outcome else PAYMENT_FAILED, outcome, 3),
        rec(ORDER_CHANGELOG, final, 4),
    ]
    if payment is not None:
        records.insert(2, rec(PAYMENT_CHANGELOG, payment_to_bytes(payment), 3))
    return records


def declined_history(token: str, code: str) -> list[TopicRecord]:
    """An order the gateway declined with ``code``: PaymentDB, the event and OrderDB agree."""
    decline = DECLINE_MESSAGES[code]
    failed = PaymentFailed("ord-1", ITEMS_TOTAL, "USD", decline, T1)
    final = dataclasses.replace(ORDER, status=OrderStatus.PAYMENT_FAILED, decline=decline)
    return [
        rec(ORDER_COMMANDS, encode_event(place_command(payment_token=token)), 1),
        *history(
            created=encode_event(ORDER.created_event(token)),
            outcome=encode_event(failed),
            final=order_to_bytes(final),
            payment=payment_record(status=PaymentStatus.FAILED, decline=decline),
        )[1:],
    ]


def test_a_consistent_history_has_no_findings() -> None:
    report = dry_run(history())
    assert (report.orders, report.compared, report.findings) == (1, 1, [])


def test_an_order_declined_by_a_real_gateway_is_no_difference() -> None:
    # Before: the sandbox's token rule re-decided it (invalid_token), a difference against
    # every real gateway. Now the gateway's answer is taken from the history.
    report = dry_run(declined_history(REAL_TOKEN, "card_declined"))
    assert (report.orders, report.compared, report.findings) == (1, 1, [])


def test_an_order_approved_by_a_real_gateway_is_no_difference() -> None:
    created = encode_event(ORDER.created_event(REAL_TOKEN))
    command = rec(ORDER_COMMANDS, encode_event(place_command(payment_token=REAL_TOKEN)), 1)
    report = dry_run([command, *history(created=created)[1:]])
    assert (report.compared, report.findings) == (1, [])


def test_a_recorded_event_that_todays_code_would_not_publish_for_the_outcome() -> None:
    # PaymentDB holds the gateway's answer (insufficient funds); the event on the topic says
    # card_declined: today's outcome -> event mapping decides otherwise.
    records = declined_history(REAL_TOKEN, "card_declined")
    funds = DECLINE_MESSAGES["insufficient_funds"]
    answer = payment_record(status=PaymentStatus.FAILED, decline=funds)
    records = [
        rec(PAYMENT_CHANGELOG, payment_to_bytes(answer), 3) if r.topic == PAYMENT_CHANGELOG else r
        for r in records
    ]
    [finding] = dry_run(records).findings
    assert finding.kind == "payment_event" and finding.is_difference
    assert finding.at == f"{PAYMENT_FAILED}:0:3"
    assert "insufficient_funds" in finding.today and "card_declined" in finding.recorded


def test_a_completed_payment_recorded_as_failed_is_a_difference() -> None:
    failed = PaymentFailed("ord-1", ITEMS_TOTAL, "USD", DECLINE_MESSAGES["card_declined"], T1)
    final = dataclasses.replace(ORDER, status=OrderStatus.PAYMENT_FAILED, decline=failed.reason)
    report = dry_run(history(outcome=encode_event(failed), final=order_to_bytes(final)))
    [finding] = report.findings
    assert finding.kind == "payment_event"
    assert "event_type='payment.failed'" in finding.recorded
    assert "event_type='payment.completed'" in finding.today


def test_without_paymentdb_the_recorded_event_is_the_outcome() -> None:
    without = [
        r for r in declined_history(REAL_TOKEN, "card_declined") if r.topic != PAYMENT_CHANGELOG
    ]
    report = dry_run(without)
    assert (report.compared, report.findings) == (1, [])


def test_a_command_todays_validation_refuses_is_a_difference() -> None:
    # Recorded: the command was accepted (order.created); today's validation refuses it.
    refused = place_command(items=(LineItem("sku-1", 0, 1999),))
    records = [rec(ORDER_COMMANDS, encode_event(refused), 1), *history()[1:]]
    findings = dry_run(records).findings
    assert [f.kind for f in findings] == ["validation"]
    assert findings[0].recorded == "order.created"
    assert findings[0].today.startswith("refused: ")


def test_an_order_created_that_today_would_publish_differently() -> None:
    wrong = dataclasses.replace(ORDER.created_event(TOKEN), amount=ITEMS_TOTAL + 1)
    charged = dataclasses.replace(COMPLETED, amount=ITEMS_TOTAL + 1)  # what was recorded
    answer = dataclasses.replace(SETTLED, amount=ITEMS_TOTAL + 1)  # the gateway charged it
    report = dry_run(
        history(created=encode_event(wrong), outcome=encode_event(charged), payment=answer)
    )
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
    failed = payment_record(status=PaymentStatus.FAILED, decline=DECLINE_MESSAGES["card_declined"])
    answers = [
        rec(
            PAYMENT_CHANGELOG,
            payment_to_bytes(dataclasses.replace(failed, order_id=o)),
            8,
            o.encode(),
        )
        for o in ("ord-1", "ord-2")
    ]
    changed = dry_run([*mixed, *answers])
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


def _refund_history(refund_amount: int, final_status: OrderStatus) -> list[TopicRecord]:
    """The paid order, refunded ``refund_amount`` (its command, the gateway's answer, OrderDB)."""
    command = RefundOrder("ord-1", "rf_1", refund_amount, "USD", "req-r", "fp-r", "", T1)
    done = PaymentRefunded("ord-1", "rf_1", refund_amount, "USD", "re_1", T1, False, "ch_1")
    refunded = dataclasses.replace(
        PAID,
        status=final_status,
        captured=ITEMS_TOTAL,
        refunded=refund_amount,
        refunds=(OrderRefund("rf_1", refund_amount, RefundState.COMPLETED, "", T1),),
    )
    return [
        *history(),
        rec(ORDER_COMMANDS, encode_event(command), 5),
        rec(PAYMENT_REFUNDED, encode_event(done), 6),
        rec(ORDER_CHANGELOG, order_to_bytes(refunded), 7),
    ]


def test_refunds_are_folded_through_today_s_state_machine() -> None:
    assert dry_run(_refund_history(100, OrderStatus.PARTIALLY_REFUNDED)).findings == []
    assert dry_run(_refund_history(ITEMS_TOTAL, OrderStatus.REFUNDED)).findings == []


def test_a_recorded_refund_state_today_s_code_does_not_reach_is_a_difference() -> None:
    report = dry_run(_refund_history(100, OrderStatus.REFUNDED))  # only 100 of it given back

    assert [(f.kind, f.recorded, f.today) for f in report.differences] == [
        ("final_status", "OrderDB REFUNDED", "state machine PARTIALLY_REFUNDED")
    ]


def test_a_cancel_is_folded_and_a_charge_that_raced_it_stays_cancelled() -> None:
    cancel = CancelOrder("ord-1", "req-c", "", T1)
    cancelled = dataclasses.replace(ORDER, status=OrderStatus.CANCELLED, captured=ITEMS_TOTAL)
    records = [
        rec(ORDER_COMMANDS, encode_event(place_command()), 1),
        rec(ORDER_CREATED, encode_event(ORDER.created_event(TOKEN)), 2),
        rec(ORDER_COMMANDS, encode_event(cancel), 3),
        rec(PAYMENT_COMPLETED, encode_event(COMPLETED), 4),
        rec(ORDER_CHANGELOG, order_to_bytes(cancelled), 5),
    ]

    assert dry_run(records).differences == []
