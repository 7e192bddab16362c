"""`replay --dry-run` re-decides recorded orders with today's code and reports differences."""

from __future__ import annotations

import dataclasses

from orderflow.tools.replay.model import ORDER_CHANGELOG

from orderflow.domain.events import PlaceOrder
from orderflow.domain.order import OrderStatus, place_order
from orderflow.records import decode_event, order_to_bytes
from orderflow.topics import (
    INPUT_TOPICS,
    ORDER_COMMANDS,
    ORDER_CREATED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
)
from tests.integration.replay.support import (
    Out,
    cli,
    completed,
    created,
    end_offsets,
    failed,
    new_order_id,
    place,
    produce,
)


async def _history(bootstrap: str) -> tuple[str, str, str]:
    paid, declined, odd = (new_order_id() for _ in range(3))
    command = decode_event(place(paid))
    assert isinstance(command, PlaceOrder)
    pending = place_order(None, command).order
    settled = dataclasses.replace(pending, status=OrderStatus.PAID, charge_id=f"ch_{paid}")
    await produce(
        bootstrap,
        [
            Out(ORDER_COMMANDS, paid.encode(), place(paid)),
            Out(ORDER_CHANGELOG, paid.encode(), order_to_bytes(pending)),
            Out(ORDER_CREATED, paid.encode(), created(paid)),
            Out(PAYMENT_COMPLETED, paid.encode(), completed(paid)),
            Out(ORDER_CHANGELOG, paid.encode(), order_to_bytes(settled)),
            Out(ORDER_CREATED, declined.encode(), created(declined, "tok_chargeDeclined")),
            Out(PAYMENT_FAILED, declined.encode(), failed(declined, "card_declined")),
            # Recorded with another decline code than today's rule gives this token.
            Out(ORDER_CREATED, odd.encode(), created(odd, "tok_chargeDeclinedInsufficientFunds")),
            Out(PAYMENT_FAILED, odd.encode(), failed(odd, "card_declined")),
        ],
    )
    return paid, declined, odd


async def test_dry_run_agrees_with_history_and_catches_a_changed_decision_rule(
    replay_bootstrap: str,
) -> None:
    paid, declined, odd = await _history(replay_bootstrap)
    only = ["--since", "10m", "--order-id", paid, "--order-id", declined, "--order-id", odd]
    produced_before = await end_offsets(replay_bootstrap, INPUT_TOPICS)

    today = await cli(replay_bootstrap, "replay", "--dry-run", *only)
    assert today.code == 0, today.err
    assert [(f["order_id"], f["kind"], f["recorded"], f["today"]) for f in today.lines] == [
        (
            odd,
            "decline",
            "declined (card_declined, retryable=False)",
            "declined (insufficient_funds, retryable=True)",
        ),
    ]
    assert "3 order(s), 3 with a recorded outcome, 1 decided differently" in today.err

    changed = await cli(
        replay_bootstrap,
        "replay",
        "--dry-run",
        *only,
        "--decision-rule",
        "tests.integration.replay.rules:visa_declined",
    )
    assert changed.code == 0, changed.err
    differences = {(f["order_id"], f["kind"]): f for f in changed.lines if f["difference"]}
    assert set(differences) == {(paid, "payment_decision"), (odd, "decline")}
    regression = differences[paid, "payment_decision"]
    assert regression["recorded"] == "approved"
    assert regression["today"] == "declined (card_declined, retryable=False)"
    assert regression["at"].startswith(f"{PAYMENT_COMPLETED}:")

    # A dry run calls nothing and produces nothing.
    assert await end_offsets(replay_bootstrap, INPUT_TOPICS) == produced_before
