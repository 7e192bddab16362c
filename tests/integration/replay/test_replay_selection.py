"""`replay` selects exactly what it is asked for, and never moves a consumer group's offsets."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from orderflow.tools.replay.window import ms_to_rfc3339
from orderflow.topics import APP_ID, ORDER_CREATED, PAYMENT_COMPLETED, PAYMENT_FAILED
from tests.integration.replay.support import (
    Out,
    Produced,
    cli,
    completed,
    created,
    ensure_topics,
    failed,
    new_order_id,
    produce,
)


def _idents(lines: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return sorted((r["topic"], r["partition"], r["offset"]) for r in lines)


def _expected(records: list[Produced]) -> list[tuple[object, object, object]]:
    return sorted(r.ident for r in records)


async def test_replay_by_time_window_returns_exactly_the_records_inside_it(
    replay_bootstrap: str,
) -> None:
    ids = [new_order_id() for _ in range(3)]
    base = int(time.time() * 1000)
    # Three batches 10 ms apart, timestamps set explicitly so the window edges are exact.
    batches = [
        await produce(
            replay_bootstrap,
            [
                Out(ORDER_CREATED, ids[i].encode(), created(ids[i]), timestamp_ms=base + 10 * i),
                Out(
                    PAYMENT_COMPLETED,
                    ids[i].encode(),
                    completed(ids[i]),
                    timestamp_ms=base + 10 * i,
                ),
            ],
        )
        for i in range(3)
    ]
    filters = [arg for order_id in ids for arg in ("--order-id", order_id)]

    middle = await cli(
        replay_bootstrap,
        "replay",
        "--since",
        ms_to_rfc3339(base + 10),
        "--until",
        ms_to_rfc3339(base + 20),
        *filters,
    )
    assert middle.code == 0, middle.err
    assert _idents(middle.lines) == _expected(batches[1])
    assert {r["key"] for r in middle.lines} == {ids[1]}

    # `--until` is exclusive and `--since` inclusive: [base, base + 20) holds the first two.
    first_two = await cli(
        replay_bootstrap,
        "replay",
        "--since",
        ms_to_rfc3339(base),
        "--until",
        ms_to_rfc3339(base + 20),
        *filters,
    )
    assert _idents(first_two.lines) == _expected(batches[0] + batches[1])

    # Relative windows: everything of the last hour, nothing before an hour ago.
    recent = await cli(replay_bootstrap, "replay", "--since", "1h", *filters)
    assert _idents(recent.lines) == _expected(batches[0] + batches[1] + batches[2])
    old = await cli(replay_bootstrap, "replay", "--until", "1h", *filters)
    assert (old.code, old.lines) == (0, [])


async def test_replay_by_partition_and_offsets_is_inclusive_on_both_ends(
    replay_bootstrap: str,
) -> None:
    order_id = new_order_id()
    # One key: one partition, consecutive offsets.
    produced = await produce(
        replay_bootstrap,
        [
            Out(
                ORDER_CREATED,
                order_id.encode(),
                created(order_id, amount=100 + i),
                headers=(("n", str(i).encode()),),
            )
            for i in range(5)
        ],
    )
    partition, first = produced[0].partition, produced[0].offset
    assert [p.offset for p in produced] == list(range(first, first + 5))

    offsets = ["--from-offset", str(first + 1), "--to-offset", str(first + 3)]
    result = await cli(
        replay_bootstrap,
        "replay",
        "--topic",
        ORDER_CREATED,
        "--partition",
        str(partition),
        *offsets,
    )
    assert result.code == 0, result.err
    assert [
        (r["partition"], r["offset"], r["key"], r["value"]["amount"], r["headers"])
        for r in result.lines
    ] == [(partition, first + i, order_id, 100 + i, {"n": str(i)}) for i in (1, 2, 3)]

    no_partition = await cli(
        replay_bootstrap, "replay", "--topic", ORDER_CREATED, "--from-offset", "1"
    )
    assert no_partition.code == 2
    assert "need --partition" in no_partition.err


async def test_order_id_and_event_type_filters_select_only_matching_events(
    replay_bootstrap: str,
) -> None:
    paid, declined = new_order_id(), new_order_id()
    produced = await produce(
        replay_bootstrap,
        [
            Out(ORDER_CREATED, paid.encode(), created(paid)),
            Out(PAYMENT_COMPLETED, paid.encode(), completed(paid)),
            Out(ORDER_CREATED, declined.encode(), created(declined, "tok_chargeDeclined")),
            Out(PAYMENT_FAILED, declined.encode(), failed(declined)),
        ],
    )
    since = ms_to_rfc3339(produced[0].timestamp)

    one_order = await cli(replay_bootstrap, "replay", "--since", since, "--order-id", paid)
    assert _idents(one_order.lines) == _expected(produced[:2])

    one_type = await cli(
        replay_bootstrap,
        "replay",
        "--since",
        since,
        "--order-id",
        paid,
        "--event-type",
        "payment.completed",
    )
    assert _idents(one_type.lines) == [produced[1].ident]
    assert one_type.lines[0]["value"]["charge_id"] == f"ch_{paid}"

    both = ["--since", since, "--order-id", paid, "--order-id", declined]
    both_created = await cli(replay_bootstrap, "replay", *both, "--event-type", "order.created")
    assert _idents(both_created.lines) == _expected([produced[0], produced[2]])

    limited = await cli(replay_bootstrap, "replay", *both, "--limit", "3")
    assert len(limited.lines) == 3


async def _group_offsets(admin: AIOKafkaAdminClient) -> dict[TopicPartition, int]:
    offsets = await admin.list_consumer_group_offsets(APP_ID)
    return {tp: meta.offset for tp, meta in offsets.items()}


async def test_replay_trace_and_dlq_never_change_any_consumer_group_offsets(
    replay_bootstrap: str,
) -> None:
    order_id = new_order_id()
    scratch = f"replay-test.groups.{uuid.uuid4().hex[:8]}"
    await ensure_topics(replay_bootstrap, [scratch], partitions=2)
    await produce(
        replay_bootstrap,
        [
            Out(ORDER_CREATED, order_id.encode(), created(order_id)),
            Out(PAYMENT_COMPLETED, order_id.encode(), completed(order_id)),
            Out(scratch, b"k", b"v"),
            Out(scratch, b"k", b"v"),
        ],
    )
    # Give the live group committed offsets (on the scratch topic, which no worker reads), so
    # a replay that joined it and committed would visibly move them.
    committer = AIOKafkaConsumer(
        bootstrap_servers=replay_bootstrap, group_id=APP_ID, enable_auto_commit=False
    )
    await committer.start()
    try:
        tps = [TopicPartition(scratch, 0), TopicPartition(scratch, 1)]
        committer.assign(tps)
        await committer.commit({tp: 1 for tp in tps})
    finally:
        await asyncio.sleep(0.05)
        await committer.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=replay_bootstrap)
    await admin.start()
    try:
        groups_before = sorted(await admin.list_consumer_groups())
        before = await _group_offsets(admin)
        assert before[TopicPartition(scratch, 0)] == 1
        for args in (
            ["replay", "--since", "1h"],
            ["replay", "--topic", scratch],
            ["replay", "--order-id", order_id, "--dry-run"],
            ["trace", order_id],
            ["dlq", "list"],
        ):
            result = await cli(replay_bootstrap, *args)
            assert result.code == 0, (args, result.err)
        replayed = await cli(replay_bootstrap, "replay", "--topic", scratch)
        assert len(replayed.lines) >= 2  # events existed and were read
        assert await _group_offsets(admin) == before
        assert sorted(await admin.list_consumer_groups()) == groups_before
    finally:
        await admin.close()


def test_console_script_prints_json_lines_when_piped_and_a_table_when_asked(
    replay_bootstrap: str,
) -> None:
    order_id = new_order_id()
    [record] = asyncio.run(
        produce(replay_bootstrap, [Out(ORDER_CREATED, order_id.encode(), created(order_id))])
    )
    orderflow = os.path.join(os.path.dirname(sys.executable), "orderflow")
    env = {**os.environ, "ORDERFLOW_KAFKA_BOOTSTRAP": replay_bootstrap}
    args = [
        orderflow,
        "replay",
        "--topic",
        ORDER_CREATED,
        "--partition",
        str(record.partition),
        "--from-offset",
        str(record.offset),
        "--to-offset",
        str(record.offset),
    ]

    piped = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    [line] = piped.stdout.splitlines()
    assert line.startswith("{") and f'"key":"{order_id}"' in line
    assert "\r" not in piped.stderr  # no progress bar when stderr is not a terminal

    table = subprocess.run(
        [*args, "--format", "table"], env=env, capture_output=True, text=True, timeout=60
    )
    header, row = table.stdout.splitlines()
    assert header.split() == ["TIME", "TOPIC", "P", "OFFSET", "KEY", "WHAT"]
    assert order_id in row and "order.created 2500 EUR token=tok_…isa" in row  # masked
