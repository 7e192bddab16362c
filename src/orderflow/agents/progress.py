"""How far the order service has read its command partitions: when "no such order" is the truth.

Any worker may accept a POST durably (the PlaceOrder command acknowledged by Kafka) while the
order's owner cannot confirm it: during a rebalance, a recovery, or with the owner down. The
client then follows the ``Location`` to the owner, which may not have read that command yet. A
404 there would be a lie that makes a careful client place the order again (or give it up), so
the owner answers 404 only once it has handled every command written to the order's partition
before the question arrived: read-your-writes, for one partition, at the cost of one ListOffsets
request, and only for orders it does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from orderflow.tables.scan import order_partition

__all__ = ["BrokerEndOffsets", "CommandProgress", "committed_offsets", "consumer_read_again"]

log = logging.getLogger(__name__)

# (partition) -> the offset before which every record was handled and committed (None: unknown)
CommittedOffset = Callable[[int], int | None]
# (partition) -> the partition's end offset at the broker now (a ListOffsets round trip)
EndOffset = Callable[[int], Awaitable[int]]
# (partition, offset, resume_from): hand a record back to be read again in order
ReadAgain = Callable[[int, int, int], None]


class CommandProgress:
    """The next command offset to handle, per partition, as seen by this worker's order service."""

    poll_s = 0.2  # the longest a waiting question sleeps between looks (unknown orders only)

    def __init__(
        self, partitions: int, committed: CommittedOffset, end: EndOffset,
        read_again: ReadAgain | None = None,
    ) -> None:  # fmt: skip
        self.partitions = partitions
        self.committed = committed
        self.end = end
        self.read_again = read_again
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

    def admit(self, partition: int, offset: int) -> bool:
        """Whether the command at ``offset`` may be handled now: every command before it was.

        One that arrives ahead of a hole is handed back (``read_again``) and read again after
        the ones before it: the first PlaceOrder of an Idempotency-Key must win, whatever order
        Faust delivered them in. With nothing known of the partition yet, everything is admitted.
        """
        if self.read_again is None or offset < self._handled.get(partition, 0):
            return True  # (or read again after a rewind: handled before, idempotent)
        committed = self.committed(partition)
        if committed is None and partition not in self._handled:
            return True  # nothing known of the partition yet
        expected = self.read_through(partition)
        if offset <= expected:
            return True
        self.read_again(partition, offset, expected)
        return False

    def read_through(self, partition: int) -> int:
        """Every command before this offset was handled, here or by an owner before us."""
        return max(self._handled.get(partition, 0), self.committed(partition) or 0)

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
            future = asyncio.ensure_future(self.end(partition))
            future.add_done_callback(_consume_error)
            self._queries[partition] = (loop.time(), future)

    def snapshot(self) -> Mapping[int, int]:
        """The handled offsets (for tests and diagnostics)."""
        return dict(self._handled)


def _consume_error(future: asyncio.Future[int]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: the waiters report it; no "never retrieved" warning


class BrokerEndOffsets:
    """End offsets of one topic's partitions, asked by a consumer of our own (no group) in the
    worker's event loop: Faust's consumer thread answers such calls only between its fetches
    (seconds, under a flood of long-polls)."""

    def __init__(self, servers: list[str], topic: str) -> None:
        self.servers = servers
        self.topic = topic
        self._client: AIOKafkaConsumer | None = None
        self._starting = asyncio.Lock()

    async def __call__(self, partition: int) -> int:
        client = await self._started()
        tp = TopicPartition(self.topic, partition)
        return int((await client.end_offsets([tp]))[tp])

    async def _started(self) -> AIOKafkaConsumer:
        async with self._starting:
            if self._client is None:
                client = AIOKafkaConsumer(bootstrap_servers=self.servers, request_timeout_ms=5000,
                                          enable_auto_commit=False)  # fmt: skip
                await client.start()
                self._client = client
            return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.stop()


def consumer_read_again(app: Any, topic: str) -> ReadAgain:
    """``read_again`` through the worker's consumer (``RewindingConsumer.read_again``)."""
    from faust.types import TP

    def read_again(partition: int, offset: int, resume_from: int) -> None:
        app.consumer.read_again(TP(topic, partition), offset, resume_from)

    return read_again


def committed_offsets(app: Any, topic: str) -> CommittedOffset:
    """The committed-offset reader of ``CommandProgress``, from the worker's Faust consumer."""
    from faust.types import TP

    def committed(partition: int) -> int | None:
        consumer = app.consumer
        tp = TP(topic, partition)
        offset = consumer._committed_offset.get(tp)  # Faust: next offset to handle, or None
        started = getattr(consumer, "reading_from", {}).get(tp)  # nothing existed before it
        if offset is None and started is None:
            return None
        return max(offset or 0, started or 0)

    return committed
