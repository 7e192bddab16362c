"""`dlq list | show | redrive` on synthetic dead letters (redrive with a worker: elsewhere)."""

from __future__ import annotations

import asyncio

from orderflow.tools.replay.model import REDRIVEN_FROM_HEADER
from orderflow.topics import INPUT_TOPICS, ORDER_CREATED, PAYMENT_COMPLETED
from tests.integration.replay.support import (
    cli,
    completed,
    created,
    dead_letter,
    end_offsets,
    new_order_id,
    produce,
)
from tests.kafka_helpers import read_topic


async def _ends(bootstrap: str) -> dict[str, int]:
    return await end_offsets(bootstrap, INPUT_TOPICS)


async def test_dlq_list_and_show_read_reason_and_source_from_the_headers(
    replay_bootstrap: str,
) -> None:
    order_id, other = new_order_id(), new_order_id()
    letters = await produce(
        replay_bootstrap,
        [
            dead_letter(
                order_id,
                b"{broken",
                ORDER_CREATED,
                "malformed: value: not JSON",
                source_offset=41,
                error_type="EventDecodeError",
            ),
            dead_letter(
                order_id,
                completed(order_id),
                PAYMENT_COMPLETED,
                "refused: order already PAYMENT_FAILED",
                source_offset=42,
            ),
            dead_letter(other, created(other), ORDER_CREATED, "unexpected: RuntimeError('bug')"),
        ],
    )

    listed = await cli(replay_bootstrap, "dlq", "list", "--order-id", order_id)
    assert listed.code == 0, listed.err
    assert [
        (d["dead_letter"], d["reason"], d["source_topic"], d["source_offset"], d["error_type"])
        for d in listed.lines
    ] == [
        (
            f"{letters[0].partition}:{letters[0].offset}",
            "malformed: value: not JSON",
            ORDER_CREATED,
            41,
            "EventDecodeError",
        ),
        (
            f"{letters[1].partition}:{letters[1].offset}",
            "refused: order already PAYMENT_FAILED",
            PAYMENT_COMPLETED,
            42,
            None,
        ),
    ]
    by_reason = await cli(
        replay_bootstrap,
        "dlq",
        "list",
        "--order-id",
        order_id,
        "--order-id",
        other,
        "--reason",
        "REFUSED",
    )
    assert [d["order_id"] for d in by_reason.lines] == [order_id]
    by_source = await cli(
        replay_bootstrap,
        "dlq",
        "list",
        "--since",
        "10m",
        "--source-topic",
        ORDER_CREATED,
        "--order-id",
        order_id,
        "--order-id",
        other,
    )
    assert sorted(d["order_id"] for d in by_source.lines) == sorted([order_id, other])

    shown = await cli(
        replay_bootstrap, "dlq", "show", f"{letters[0].partition}:{letters[0].offset}"
    )
    [letter] = shown.lines
    assert letter["record"]["value_raw"] == "{broken"
    assert letter["record"]["key"] == order_id
    by_order = await cli(replay_bootstrap, "dlq", "show", "--order-id", other)
    assert [d["record"]["value"]["order_id"] for d in by_order.lines] == [other]
    missing = await cli(replay_bootstrap, "dlq", "show", f"{letters[0].partition}:999999")
    assert (missing.code, "no such dead letter" in missing.err) == (1, True)


async def test_redrive_sends_original_bytes_back_once_and_dry_run_sends_nothing(
    replay_bootstrap: str,
) -> None:
    order_id = new_order_id()
    originals = ((("trace-id", b"t-7"),), ())
    letters = await produce(
        replay_bootstrap,
        [
            dead_letter(
                order_id,
                created(order_id),
                ORDER_CREATED,
                "unexpected: bug",
                original_headers=originals[0],
            ),
            dead_letter(order_id, completed(order_id), PAYMENT_COMPLETED, "unexpected: bug"),
            dead_letter(order_id, b"{}", "orderflow-OrderDB-changelog", "unexpected: bug"),
        ],
    )
    select = ["dlq", "redrive", "--order-id", order_id]

    unfiltered = await cli(replay_bootstrap, "dlq", "redrive")
    assert unfiltered.code == 2 and "--all" in unfiltered.err

    before = await _ends(replay_bootstrap)
    planned = await cli(replay_bootstrap, *select, "--dry-run")
    assert [a["action"] for a in planned.lines] == ["would_redrive", "would_redrive", "skipped"]
    assert await _ends(replay_bootstrap) == before

    done = await cli(replay_bootstrap, *select)
    assert [(a["action"], a["to_topic"]) for a in done.lines] == [
        ("redriven", ORDER_CREATED),
        ("redriven", PAYMENT_COMPLETED),
        ("skipped", "orderflow-OrderDB-changelog"),
    ]
    for letter, topic, headers in zip(
        letters, (ORDER_CREATED, PAYMENT_COMPLETED), originals, strict=False
    ):
        marker = f"dead-letters:{letter.partition}:{letter.offset}".encode()
        copies = [
            r
            for r in await asyncio.to_thread(read_topic, replay_bootstrap, topic)
            if r.key == order_id.encode()
        ]
        assert [(c.value, c.headers) for c in copies] == [
            (letter.value, (*headers, (REDRIVEN_FROM_HEADER, marker)))
        ]

    after_first = await _ends(replay_bootstrap)
    again = await cli(replay_bootstrap, *select)
    assert [a["action"] for a in again.lines] == ["already_redriven", "already_redriven", "skipped"]
    assert await _ends(replay_bootstrap) == after_first
