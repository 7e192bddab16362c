"""Reading topics without a consumer group: assign, seek, read to the end offsets taken at start.

The consumer has ``group_id=None`` and never commits, so the live ``orderflow`` group's offsets
cannot move (replaying through that group would make the workers re-run side effects, or skip
events). ``read_committed`` hides records of aborted transactions, as the workers' consumer does.
The end offsets are captured once, before reading, so a replay of a busy topic terminates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from orderflow.tools.replay.errors import ReplayError, TopicNotFound
from orderflow.tools.replay.model import Selection, TopicRecord, key_partition
from orderflow.tools.replay.output import NullProgress, Progress, note

__all__ = ["PartitionPlan", "plan_partitions", "read_records", "topic_partitions"]

# No progress on any partition for this long while records remain: give up with an error
# instead of hanging (a broker that went away, or a partition without a leader).
STALL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PartitionPlan:
    """Read partition ``tp`` offsets ``start`` (inclusive) to ``stop`` (exclusive)."""

    tp: TopicPartition
    start: int
    stop: int

    @property
    def size(self) -> int:
        return max(0, self.stop - self.start)


def make_consumer(bootstrap: str) -> AIOKafkaConsumer:
    """A consumer that belongs to no group and cannot commit."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        client_id="orderflow-replay",
        # Only records that exist are read: a fetch that finds nothing need not wait for more
        # (the default 500 ms long poll would add up to half a second at the end of a replay).
        fetch_max_wait_ms=20,
    )


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    # aiokafka cancels a background task at stop; one that never ran yet re-raises the
    # cancellation (seen with very short-lived consumers): let it start first.
    await asyncio.sleep(0.05)
    await consumer.stop()


async def topic_partitions(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """Partition count of each of ``topics`` that exists (missing ones are left out)."""
    # The admin client, not the consumer's metadata: a consumer that subscribes to nothing
    # only learns about topics through aiokafka internals.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="orderflow-replay")
    await admin.start()
    try:
        # No topic names in the request: a metadata request that names topics lets a broker
        # with auto.create.topics.enable (Kafka's default) create them. Listing creates nothing.
        described = await admin.describe_topics()
    finally:
        await admin.close()
    wanted = set(topics)
    return {
        t["topic"]: len(t["partitions"])
        for t in described
        if t["topic"] in wanted and t["error_code"] == 0 and t["partitions"]
    }


async def plan_partitions(
    bootstrap: str,
    consumer: AIOKafkaConsumer,
    selection: Selection,
    topics: Sequence[str],
    *,
    missing_ok: bool,
) -> tuple[list[PartitionPlan], list[str]]:
    """Offset ranges (one per partition with something to read), and the topics not found."""
    counts = await topic_partitions(bootstrap, topics)
    missing = [t for t in topics if t not in counts]
    if missing and not missing_ok:
        raise TopicNotFound(f"topic {', '.join(missing)} does not exist")
    tps: list[TopicPartition] = []
    for topic, count in counts.items():
        wanted = set(range(count))
        if selection.partitions:
            wanted &= set(selection.partitions)
        if selection.key_partitions_of:
            wanted &= {key_partition(k, count) for k in selection.key_partitions_of}
        tps.extend(TopicPartition(topic, p) for p in sorted(wanted))
    if not tps:
        return [], missing
    # Assigned (paused, so nothing is fetched yet) before asking for offsets: aiokafka then
    # learns every topic's metadata at once instead of one topic per 100 ms retry.
    consumer.assign(tps)
    consumer.pause(*tps)
    starts: dict[Any, int] = await consumer.beginning_offsets(tps)
    stops: dict[Any, int] = await consumer.end_offsets(tps)  # LSO under read_committed
    window = selection.window
    if window.since_ms is not None:
        found = await consumer.offsets_for_times({tp: window.since_ms for tp in tps})
        for tp in tps:
            # None: no record at or after `since` in this partition.
            starts[tp] = stops[tp] if found[tp] is None else max(starts[tp], found[tp].offset)
    if window.until_ms is not None:
        found = await consumer.offsets_for_times({tp: window.until_ms for tp in tps})
        for tp in tps:
            if found[tp] is not None:
                stops[tp] = min(stops[tp], found[tp].offset)
    plans = []
    for tp in tps:
        start, stop = starts[tp], stops[tp]
        if selection.from_offset is not None:
            start = max(start, selection.from_offset)
        if selection.to_offset is not None:
            stop = min(stop, selection.to_offset + 1)
        if start < stop:
            plans.append(PartitionPlan(tp, start, stop))
    return plans, missing


async def read_records(
    bootstrap: str,
    selection: Selection,
    topics: Sequence[str],
    *,
    progress: Progress | None = None,
    missing_ok: bool = False,
    skipped: list[str] | None = None,
) -> AsyncGenerator[TopicRecord, None]:
    """Yield the selected records of ``topics``, each partition in offset order.

    A topic that does not exist raises ``TopicNotFound``; with ``missing_ok`` it is appended to
    ``skipped`` (or noted on stderr). Use inside ``contextlib.aclosing`` when stopping early.
    """
    progress = progress or NullProgress()
    consumer = make_consumer(bootstrap)
    await consumer.start()
    try:
        plans, missing = await plan_partitions(
            bootstrap, consumer, selection, topics, missing_ok=missing_ok
        )
        if skipped is not None:
            skipped.extend(missing)
        elif missing:
            note(f"note: topic(s) not on the broker, skipped: {', '.join(missing)}")
        progress.set_total(sum(p.size for p in plans))
        if not plans:
            return
        remaining = {p.tp: p for p in plans}
        for plan in plans:
            consumer.seek(plan.tp, plan.start)
        consumer.resume(*remaining)
        async for record in _drain(consumer, remaining, selection, progress):
            yield record
    finally:
        progress.close()
        await stop_consumer(consumer)


async def _drain(
    consumer: AIOKafkaConsumer,
    remaining: dict[Any, PartitionPlan],
    selection: Selection,
    progress: Progress,
) -> AsyncGenerator[TopicRecord, None]:
    last_progress = time.monotonic()
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=500)
        for tp, messages in batch.items():
            plan = remaining.get(tp)
            if plan is None:
                continue
            consumed = 0
            for m in messages:
                if m.offset >= plan.stop:
                    break
                consumed += 1
                record = TopicRecord(
                    m.topic,
                    m.partition,
                    m.offset,
                    m.timestamp,
                    m.key,
                    m.value,
                    tuple(m.headers or ()),
                )
                if selection.matches(record):
                    yield record
            progress.advance(consumed)
        moved = bool(batch)
        for tp, plan in list(remaining.items()):
            # The position, not the last offset seen: transaction markers and aborted records
            # take offsets that are never returned.
            if await consumer.position(tp) >= plan.stop:
                del remaining[tp]
                consumer.pause(tp)  # stop fetching past the captured end
                moved = True
        now = time.monotonic()
        if moved:
            last_progress = now
        elif now - last_progress > STALL_TIMEOUT_S:
            stuck = ", ".join(f"{p.tp.topic}[{p.tp.partition}]" for p in remaining.values())
            raise ReplayError(f"no progress for {STALL_TIMEOUT_S:.0f}s reading {stuck}")
