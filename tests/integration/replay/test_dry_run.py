"""`replay --dry-run` re-checks recorded orders with today's code, gateway answers as recorded."""

from __future__ import annotations

import dataclasses

from orderflow.domain.events import PlaceOrder
from orderflow.domain.order import OrderStatus, place_order
from orderflow.domain.payment import (
    DECLINE_MESSAGES,
    PaymentRecord,
    PaymentStatus,
    idempotency_key_for,
)
from orderflow.tools.replay.model import ORDER_CHANGELOG, PAYMENT_CHANGELOG
from orderflow.topics import (
    INPUT_TOPICS,
    ORDER_COMMANDS,
    ORDER_CREATED,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
)
from orderflow.wire import decode_event, order_to_bytes, payment_to_bytes
from tests.integration.replay.support import (
    AMOUNT,
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

# A real gateway's token: the sandbox's rules would decline it as invalid_token.
REAL_TOKEN = "tok_1PzRealCardFromTheGateway"


def _answer(order_id: str, code: str | None) -> Out:
    """PaymentDB's settled record: the gateway's answer (approved when ``code`` is None)."""
    record = PaymentRecord(
        order_id,
        idempotency_key_for(order_id),
        AMOUNT,
        "EUR",
        PaymentStatus.COMPLETED if code is None else PaymentStatus.FAILED,
        attempts=1,
        charge_id=f"ch_{order_id}",  # a decline has a charge id too (Stripe)
        decline=None if code is None else DECLINE_MESSAGES[code],
    )
    return Out(PAYMENT_CHANGELOG, order_id.encode(), payment_to_bytes(record))


async def _history(bootstrap: str) -> tuple[str, str, str]:
    paid, declined, odd = (new_order_id() for _ in range(3))
    command = decode_event(place(paid, REAL_TOKEN))
    assert isinstance(command, PlaceOrder)
    pending = place_order(None, command).order
    settled = dataclasses.replace(pending, status=OrderStatus.PAID, charge_id=f"ch_{paid}")
    await produce(
        bootstrap,
        [
            # Approved by a real gateway: the sandbox's rules would have declined the token.
            Out(ORDER_COMMANDS, paid.encode(), place(paid, REAL_TOKEN)),
            Out(ORDER_CHANGELOG, paid.encode(), order_to_bytes(pending)),
            Out(ORDER_CREATED, paid.encode(), created(paid, REAL_TOKEN)),
            _answer(paid, None),
            Out(PAYMENT_COMPLETED, paid.encode(), completed(paid)),
            Out(ORDER_CHANGELOG, paid.encode(), order_to_bytes(settled)),
            # Declined by a real gateway: no difference, whatever the token.
            Out(ORDER_CREATED, declined.encode(), created(declined, REAL_TOKEN)),
            _answer(declined, "card_declined"),
            Out(PAYMENT_FAILED, declined.encode(), failed(declined, "card_declined")),
            # The gateway answered insufficient_funds (PaymentDB), the event says card_declined:
            # today's outcome -> event mapping would publish another event.
            Out(ORDER_CREATED, odd.encode(), created(odd, REAL_TOKEN)),
            _answer(odd, "insufficient_funds"),
            Out(PAYMENT_FAILED, odd.encode(), failed(odd, "card_declined")),
        ],
    )
    return paid, declined, odd


async def test_dry_run_takes_gateway_answers_from_history_and_reports_only_our_differences(
    replay_bootstrap: str,
) -> None:
    paid, declined, odd = await _history(replay_bootstrap)
    only = ["--since", "10m", "--order-id", paid, "--order-id", declined, "--order-id", odd]
    produced_before = await end_offsets(replay_bootstrap, INPUT_TOPICS)

    today = await cli(replay_bootstrap, "replay", "--dry-run", *only)
    assert today.code == 0, today.err
    assert [(f["order_id"], f["kind"], f["difference"]) for f in today.lines] == [
        (odd, "payment_event", True)
    ]
    [finding] = today.lines
    assert "card_declined" in finding["recorded"] and "insufficient_funds" in finding["today"]
    assert finding["at"].startswith(f"{PAYMENT_FAILED}:")
    assert "3 order(s), 3 with a recorded outcome, 1 decided differently" in today.err

    # A dry run calls nothing and produces nothing.
    assert await end_offsets(replay_bootstrap, INPUT_TOPICS) == produced_before
