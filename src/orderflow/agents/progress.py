"""How far the order service has read its command partitions, and reading them in order.

Any worker may accept a POST durably (the PlaceOrder command acknowledged by Kafka) while the
order's owner cannot confirm it: during a rebalance, a recovery, or with the owner down. Two
things follow for the owner:

- The client follows the ``Location`` to the owner, which may not have read that command yet. A
  404 there would be a lie that makes a careful client place the order again (or give it up), so
  the owner answers 404 only once it has handled every command written to the order's partition
  before the question arrived (``caught_up``): read-your-writes, for one partition, at the cost of
  one ListOffsets request, and only for orders it does not know.
- Two PlaceOrders of one Idempotency-Key (the same key with another body, both 202'd during a
  move) can both be in Kafka before the owner reads either, and the first must win. Faust does
  not always deliver a partition in order after a rebalance (chaos runs saw records 45.. reach the
  agent before 36..44), so a command that arrives ahead of a hole has the hole read first,
  straight from Kafka (``missing_before``), and handled in order before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from orderflow.tables.scan import order_partition

__all__ = ["CommandLog", "CommandProgress", "CommandRecord", "DownstreamOffsets"]

log = logging.getLogger(__name__)

# (partition) -> the offset before which every record was handled and committed (None: unknown)
CommittedOffset = Callable[[int], int | None]


@dataclass(frozen=True)
class CommandRecord:
    """A command read from Kafka outside Faust (the ``message`` of an event, for the handlers)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass(frozen=True)
class CommandEvent:
    """What a handler reads of a Faust event: its message."""

    message: CommandRecord


class CommandLog:
    """One topic's partitions read by a consumer of our own (no group) in the worker's event loop:
    their end offsets, and ranges of records. Faust's consumer thread answers such calls only
    between its fetches (seconds, under a flood of long-polls), and delivers what it delivers."""

    read_timeout_s = 10.0

    def __init__(self, servers: list[str], topic: str) -> None:
        self.servers = servers
        self.topic = topic
        self._client: AIOKafkaConsumer | None = None
        self._starting = asyncio.Lock()
        self._reading = asyncio.Lock()  # one range at a time: reading assigns the consumer

    async def end(self, partition: int) -> int:
        """The partition's end offset at the broker now (a ListOffsets round trip)."""
        client = await self._started()
        tp = TopicPartition(self.topic, partition)
        return int((await client.end_offsets([tp]))[tp])

    async def ends_of(self, topics: Iterable[str], partition: int) -> dict[str, int]:
        """The end offsets of other topics at ``partition`` (one ListOffsets round trip)."""
        client = await self._started()
        tps = [TopicPartition(topic, partition) for topic in topics]
        return {tp.topic: int(offset) for tp, offset in (await client.end_offsets(tps)).items()}

    async def beginning(self, partition: int) -> int:
        """The partition's log start offset now (below it, retention deleted the records)."""
        client = await self._started()
        tp = TopicPartition(self.topic, partition)
        return int((await client.beginning_offsets([tp]))[tp])

    async def read(self, partition: int, start: int, stop: int) -> list[CommandRecord]:
        """The records at offsets ``start`` up to ``stop`` (excluded), in order."""
        # Below the log start (retention deleted them), a seek would reset to the earliest
        # record, which the range never matches: the read would wait for its timeout.
        start = max(start, await self.beginning(partition))
        if start >= stop:
            return []
        client = await self._started()
        tp = TopicPartition(self.topic, partition)
        records: list[CommandRecord] = []
        async with self._reading, asyncio.timeout(self.read_timeout_s):
            client.assign([tp])
            try:
                client.seek(tp, start)
                while not records or records[-1].offset < stop - 1:
                    fetched = await client.getmany(tp, timeout_ms=500, max_records=stop - start)
                    for r in fetched.get(tp, []):
                        if start <= r.offset < stop:
                            records.append(
                                CommandRecord(
                                    r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers)
                                )
                            )
            finally:
                client.assign([])
        return records

    async def _started(self) -> AIOKafkaConsumer:
        async with self._starting:
            if self._client is None:
                client = AIOKafkaConsumer(
                    bootstrap_servers=self.servers,
                    request_timeout_ms=5000,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                )
                await client.start()
                self._client = client
            return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.stop()


class DownstreamOffsets:
    """``DownstreamProgress`` of a worker: end offsets from a ``CommandLog``'s client, committed
    offsets from the worker's consumer (``committed``: per downstream topic)."""

    def __init__(
        self,
        log: CommandLog,
        stages: Sequence[Sequence[str]],
        committed: Mapping[str, CommittedOffset],
    ) -> None:
        self.log = log
        self.stages = stages
        self._committed = committed

    async def ends(self, partition: int, topics: Sequence[str]) -> dict[str, int]:
        return await self.log.ends_of(topics, partition)

    def committed(self, partition: int) -> dict[str, int | None]:
        return {topic: offset(partition) for topic, offset in self._committed.items()}


class CommandProgress:
    """The next command offset to handle, per partition, as seen by this worker's order service."""

    poll_s = 0.2  # the longest a waiting question sleeps between looks (unknown orders only)

    def __init__(
        self, partitions: int, committed: CommittedOffset, commands: CommandLog | Any
    ) -> None:
        self.partitions = partitions
        self.committed = committed
        self.commands = commands  # .end(partition), .read(partition, start, stop)
        self.holes_read = 0  # commands read from Kafka ahead of a hole (/health, logs)
        self._handled: dict[int, int] = {}  # partition -> last handled offset + 1
        self._progress = asyncio.Event()  # set at each handled command, for the waiters
        # partition -> (when it was sent, the ListOffsets answer): shared by every question
        # asked before it was sent, so that a flood of GETs costs a few requests, not one each.
        self._queries: dict[int, tuple[float, asyncio.Future[int]]] = {}

    def handled(self, partition: int, offset: int) -> None:
        """The order service handled the command at ``offset`` (stored, refused or dead-lettered)."""
        if offset + 1 > self._handled.get(partition, 0):
            self._handled[partition] = offset + 1
            self._progress.set()
            self._progress = asyncio.Event()

    def read_through(self, partition: int) -> int:
        """Every command before this offset was handled, here or by an owner before us."""
        return max(self._handled.get(partition, 0), self.committed(partition) or 0)

    async def missing_before(self, partition: int, offset: int) -> list[CommandEvent]:
        """The commands before ``offset`` not handled yet, read from Kafka, in order: none when
        the one at ``offset`` comes in order (or nothing is known of the partition yet)."""
        if offset < self._handled.get(partition, 0):
            return []  # read again after a rewind: handled before, idempotent
        if self.committed(partition) is None and partition not in self._handled:
            return []
        expected = self.read_through(partition)
        if offset <= expected:
            return []
        log.warning(
            "command partition %d: offset %d reached the order service before %d..%d: "
            "reading those first",
            partition,
            offset,
            expected,
            offset - 1,
        )
        try:
            records = await self.commands.read(partition, expected, offset)
        except Exception as exc:  # the broker: handled out of order, as Faust delivered it
            log.error(
                "command partition %d: could not read offsets %d..%d (%r): handling %d "
                "out of order",
                partition,
                expected,
                offset - 1,
                exc,
                offset,
            )
            return []
        self.holes_read += len(records)
        return [CommandEvent(record) for record in records]

    async def caught_up(self, order_id: str, timeout: float) -> bool:
        """Wait (up to ``timeout``) until every command of the order's partition written before
        this call was handled; False when it was not in time (or the broker did not answer)."""
        partition = order_partition(order_id, self.partitions)
        asked_at = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(timeout):
                end = await self._end_after(partition, asked_at)
                while self.read_through(partition) < end:
                    # Woken by the next handled command, and looking again now and then (the
                    # committed offset can move too).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._progress.wait(), self.poll_s)
            return True
        except TimeoutError:
            return False
        except Exception as exc:  # the broker, the consumer between assignments: not known
            log.info("could not learn the end of command partition %d: %r", partition, exc)
            return False

    async def _end_after(self, partition: int, asked_at: float) -> int:
        """The partition's end offset, from a request sent at or after ``asked_at``."""
        loop = asyncio.get_running_loop()
        while True:
            query = self._queries.get(partition)
            if query is not None and query[0] >= asked_at:
                return await asyncio.shield(query[1])  # sent after we asked: fresh enough
            if query is not None and not query[1].done():
                # Sent before we asked: it may miss a write acked in between. Wait for it to
                # end, then join (or send) the next one.
                await asyncio.wait([query[1]])
                continue
            future = asyncio.ensure_future(self.commands.end(partition))
            future.add_done_callback(_consume_error)
            self._queries[partition] = (loop.time(), future)

    def snapshot(self) -> Mapping[int, int]:
        """The handled offsets (for tests and diagnostics)."""
        return dict(self._handled)


def _consume_error(future: asyncio.Future[int]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: the waiters report it; no "never retrieved" warning
