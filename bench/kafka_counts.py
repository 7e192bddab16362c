"""What the system wrote to Kafka, read without a consumer group (nothing of the worker's moves).

``end_offsets`` / ``by_topic``: records produced per topic between two moments (end-offset
deltas over every topic, internal ones and the tables' changelogs included).

``TerminalWatch``: when each order became terminal, from the OrderDB changelog (the latest value
per order; the record's timestamp is the worker's write time). It reads only when asked, so a
run can leave it idle while the worker works and read everything at the end: the times come from
the records, not from when they were read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from orderflow.topics import ORDER_CHANGELOG
from tests.kafka_helpers import stop_consumer

__all__ = ["Offsets", "TerminalWatch", "by_topic", "end_offsets", "partitions"]

# (topic, partition) -> end offset
Offsets = dict[tuple[str, int], int]

_TERMINAL = frozenset({"PAID", "PAYMENT_FAILED"})


class _Status(msgspec.Struct):
    """The one field of an OrderDB value this reads (msgspec skips the others)."""

    status: str


_STATUS = msgspec.json.Decoder(_Status)


async def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    return consumer


async def partitions(bootstrap: str, topics: Iterable[str] | None = None) -> list[TopicPartition]:
    """Every partition of ``topics`` that exists (None: of every topic on the cluster)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = sorted(await admin.list_topics() if topics is None else topics)
        described = await admin.describe_topics(names) if names else []
    finally:
        await admin.close()
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t["error_code"] == 0
        for p in t["partitions"]
    ]


async def _end_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> Offsets:
    ends = await consumer.end_offsets(tps) if tps else {}
    return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}


async def end_offsets(bootstrap: str, topics: Iterable[str] | None = None) -> Offsets:
    """The end offset of every partition of ``topics`` (None: every topic on the cluster)."""
    tps = await partitions(bootstrap, topics)
    consumer = await _consumer(bootstrap)
    try:
        return await _end_offsets(consumer, tps)
    finally:
        await stop_consumer(consumer)


def by_topic(before: Offsets, after: Offsets) -> dict[str, int]:
    """Records appended per topic from ``before`` to ``after`` (topics new since count whole)."""
    totals: Counter[str] = Counter()
    for (topic, partition), end in after.items():
        totals[topic] += end - before.get((topic, partition), 0)
    return {topic: n for topic, n in sorted(totals.items()) if n}


class TerminalWatch:
    """Which of ``order_ids`` are terminal in OrderDB, and when each first became so."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.expected: set[str] = set()
        self.terminal_at: dict[str, float] = {}  # order id -> epoch seconds of its terminal write
        self.statuses: Counter[str] = Counter()  # terminal status -> orders
        self.records_read = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []  # the changelog's
        self._all: list[TopicPartition] = []  # every topic's

    async def start(self) -> None:
        """Position at the changelog's current end: only what is written from now on is read."""
        self._tps = await partitions(self.bootstrap, [ORDER_CHANGELOG])
        if not self._tps:
            raise RuntimeError(f"{ORDER_CHANGELOG} does not exist: start a worker first")
        self._all = await partitions(self.bootstrap)
        self._consumer = await _consumer(self.bootstrap)
        self._consumer.assign(self._tps)
        for tp, end in (await self._consumer.end_offsets(self._tps)).items():
            self._consumer.seek(tp, end)

    async def stop(self) -> None:
        if self._consumer is not None:
            await stop_consumer(self._consumer)
            self._consumer = None

    def expect(self, order_ids: Iterable[str]) -> None:
        self.expected.update(order_ids)

    @property
    def pending(self) -> int:
        """Expected orders not terminal yet (as far as read)."""
        return len(self.expected) - len(self.terminal_at.keys() & self.expected)

    async def end_offsets(self, topics: Iterable[str] | None = None) -> Offsets:
        """End offsets of ``topics`` (None: every topic there was at ``start``) through this
        watch's connection: a cheap poll."""
        assert self._consumer is not None, "start() first"
        wanted = None if topics is None else set(topics)
        tps = [tp for tp in self._all if wanted is None or tp.topic in wanted]
        return await _end_offsets(self._consumer, tps)

    async def read_to_end(self) -> int:
        """Read the changelog up to its end offsets as of now; returns the records read."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        ends: Mapping[TopicPartition, int] = await consumer.end_offsets(self._tps)
        behind = {tp for tp in self._tps if await consumer.position(tp) < ends[tp]}
        read = 0
        while behind:
            batches = await consumer.getmany(*behind, timeout_ms=1000, max_records=50_000)
            for tp, records in batches.items():
                for record in records:
                    read += 1
                    self._track(record.key, record.value, record.timestamp)
                if await consumer.position(tp) >= ends[tp]:
                    behind.discard(tp)
        self.records_read += read
        return read

    def _track(self, key: bytes | None, value: bytes | None, timestamp_ms: int) -> None:
        if key is None or value is None:
            return
        order_id = key.decode()
        if order_id in self.terminal_at:
            return  # terminal is final: the first terminal write is when it ended
        try:
            status = _STATUS.decode(value).status
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if status in _TERMINAL:
            self.terminal_at[order_id] = timestamp_ms / 1000
            if order_id in self.expected:
                self.statuses[status] += 1

    def last_terminal_at(self) -> float:
        """When the last expected order became terminal (epoch seconds; 0.0 if none did)."""
        times = [self.terminal_at[o] for o in self.expected if o in self.terminal_at]
        return max(times, default=0.0)
