"""`replay --capture` / `--from-capture` keep records byte for byte; `--to-topic` re-publishes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

from orderflow.tools.replay.capture import read_capture
from orderflow.tools.replay.model import (
    ORIGIN_HEADER_OFFSET,
    ORIGIN_HEADER_PARTITION,
    ORIGIN_HEADER_TOPIC,
    Selection,
)
from orderflow.topics import ORDER_CREATED, PAYMENT_COMPLETED
from tests.integration.replay.support import (
    Out,
    cli,
    completed,
    created,
    end_offsets,
    ensure_topics,
    new_order_id,
    produce,
)
from tests.kafka_helpers import read_topic

# Bytes that any text or JSON round trip would damage: NUL, invalid UTF-8, an empty key next to
# a missing one, a tombstone, repeated, empty and null-valued headers.
AWKWARD = [
    Out(
        "",
        b"\x00\xff\xfebinary",
        bytes(range(256)),
        (("h", b"\x00\x01"), ("h", b""), ("text", "é".encode())),
    ),
    Out("", None, b'{"event_type": "order.created", "order_id": "x"}'),
    Out("", b"k", None, (("only", b"\xff"),)),
    Out("", b"", b"", ()),
    Out("", b"null-header", b"v", (("nullable", None),)),  # type: ignore[arg-type]
]


async def test_capture_then_replay_from_capture_round_trips_byte_exactly(
    replay_bootstrap: str, tmp_path: Path
) -> None:
    topic = f"replay-test.capture.{uuid.uuid4().hex[:8]}"
    await ensure_topics(replay_bootstrap, [topic], partitions=3)
    produced = await produce(
        replay_bootstrap,
        [
            Out(topic, o.key, o.value, o.headers, timestamp_ms=1_700_000_000_000 + i)
            for i, o in enumerate(AWKWARD * 3)
        ],
    )
    path = tmp_path / "incident.db"

    first = await cli(replay_bootstrap, "replay", "--topic", topic, "--capture", str(path))
    assert (first.code, first.out) == (0, ""), first.err
    assert f"captured {len(produced)} record(s)" in first.err

    async with contextlib.aclosing(read_capture(path, Selection())) as records:
        captured = [r async for r in records]
    as_tuples = sorted(
        (r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, r.headers) for r in captured
    )
    assert as_tuples == sorted(
        (p.topic, p.partition, p.offset, p.timestamp, p.key, p.value, p.headers) for p in produced
    )
    # The same records as an independent reader sees them on the broker.
    on_broker = await asyncio.to_thread(read_topic, replay_bootstrap, topic)
    assert sorted((r.partition, r.offset, r.key, r.value, r.headers) for r in on_broker) == sorted(
        (r.partition, r.offset, r.key, r.value, r.headers) for r in captured
    )

    # Capturing again adds nothing: captures merge by (topic, partition, offset).
    again = await cli(replay_bootstrap, "replay", "--topic", topic, "--capture", str(path))
    assert f"captured 0 record(s) to {path} ({len(produced)} were there already)" in again.err

    # Replaying the file prints what replaying the broker prints, and filters the same way.
    from_broker = await cli(replay_bootstrap, "replay", "--topic", topic)
    from_file = await cli(replay_bootstrap, "replay", "--from-capture", str(path))
    assert sorted(from_file.out.splitlines()) == sorted(from_broker.out.splitlines())
    one = produced[5]
    narrowed = await cli(
        replay_bootstrap,
        "replay",
        "--from-capture",
        str(path),
        "--partition",
        str(one.partition),
        "--from-offset",
        str(one.offset),
        "--to-offset",
        str(one.offset),
    )
    assert [(r["partition"], r["offset"]) for r in narrowed.lines] == [(one.partition, one.offset)]

    not_capture = tmp_path / "other.db"
    not_capture.write_bytes(b"SQLite format 3\x00" + bytes(100))
    refused = await cli(replay_bootstrap, "replay", "--from-capture", str(not_capture))
    assert refused.code == 1
    assert "not an orderflow capture file" in refused.err


async def test_to_topic_refuses_a_live_input_topic_without_force_and_stamps_the_origin(
    replay_bootstrap: str,
) -> None:
    order_id = new_order_id()
    scratch = f"replay-test.publish.{uuid.uuid4().hex[:8]}"
    await ensure_topics(replay_bootstrap, [scratch])
    originals = await produce(
        replay_bootstrap,
        [
            Out(ORDER_CREATED, order_id.encode(), created(order_id), (("trace-id", b"t-1"),)),
            Out(PAYMENT_COMPLETED, order_id.encode(), completed(order_id)),
        ],
    )
    selection = ["replay", "--order-id", order_id, "--since", "10m"]

    before = (await end_offsets(replay_bootstrap, [ORDER_CREATED]))[ORDER_CREATED]
    refused = await cli(replay_bootstrap, *selection, "--to-topic", ORDER_CREATED)
    assert refused.code == 2
    assert "live input topic" in refused.err and "--force" in refused.err
    assert (await end_offsets(replay_bootstrap, [ORDER_CREATED]))[ORDER_CREATED] == before

    done = await cli(replay_bootstrap, *selection, "--to-topic", scratch)
    assert done.code == 0, done.err
    assert "published 2 record(s)" in done.err
    copies = await asyncio.to_thread(read_topic, replay_bootstrap, scratch)
    assert sorted((c.key, c.value, c.headers) for c in copies) == sorted(
        (
            o.key,
            o.value,
            (
                *o.headers,
                (ORIGIN_HEADER_TOPIC, o.topic.encode()),
                (ORIGIN_HEADER_PARTITION, str(o.partition).encode()),
                (ORIGIN_HEADER_OFFSET, str(o.offset).encode()),
            ),
        )
        for o in originals
    )

    forced = await cli(
        replay_bootstrap,
        *selection,
        "--event-type",
        "order.created",
        "--to-topic",
        ORDER_CREATED,
        "--force",
    )
    assert forced.code == 0, forced.err
    # One copy, read from the end offsets taken at start (the copy is not copied again).
    assert (await end_offsets(replay_bootstrap, [ORDER_CREATED]))[ORDER_CREATED] == before + 1
    after = await cli(replay_bootstrap, *selection, "--topic", ORDER_CREATED)
    original, copy = after.lines
    assert copy["value"] == original["value"]
    assert copy["headers"] == {
        "trace-id": "t-1",
        ORIGIN_HEADER_TOPIC: ORDER_CREATED,
        ORIGIN_HEADER_PARTITION: str(original["partition"]),
        ORIGIN_HEADER_OFFSET: str(original["offset"]),
    }
