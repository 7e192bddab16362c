"""Faust's consumer, made to re-read what a rebalance dropped from partitions never committed.

After every rebalance Faust drops the records it had fetched but not yet handed to an agent (its
queues are cleared while the flow is suspended), and seeks each assigned partition back to its
committed offset so that they are fetched again (``Consumer.perform_seek``). That seek skips a
partition without a committed offset, and one committed at offset 0 (both aiokafka's
``seek_to_committed`` and Faust test ``if offset``): its position stays *after* the dropped
records, which are then never delivered. Worse, Faust's commit has no guard against a gap at the
head of a partition that has no committed offset, so the first record handled after them is
committed past them: lost for good.

CI saw both, each time on a partition with nothing committed yet: a payment topic first assigned
after a broker restart (94 payment results never applied) and a new owner taking over the
partitions of a frozen worker (6 orders never charged). A partition with no committed offset
must be read from its beginning (``auto_offset_reset=earliest``), so after Faust's seek we seek
those partitions to offset 0 ourselves (the broker answers below the log start with
``OffsetOutOfRange``, and the consumer resets to the earliest offset). Handlers are idempotent:
records read twice change nothing.

The commit is guarded too: Faust commits the first run of consecutive acked offsets, without
checking that it starts where reading started when nothing is committed, and letting one
missing offset through when something is (faust-streaming #312). A record skipped for any reason
would then be committed past. Here an offset is committed only when every record from the
committed offset (or from where reading started) on was acked; our source topics are neither
compacted nor transactional, so their offsets have no holes. A hole that lasts means records
that were dropped on the way to the agent (each partition is read by one agent, which acks in
offset order): after ``redeliver_after`` seconds the partition is sought back to the hole and
read again, instead of waiting for the next rebalance.

Nor is an offset committed past a record whose handling was deferred (``defer``): the fence
refuses a handler whose partition may have moved and runs it again once the rebalance settles
(``orderflow.fencing``), but Faust acks its event with the batch. A chaos run lost an order so:
the worker kept ``order-commands[2]`` through the rebalance, committed 33 right away, then its
retry found the partition gone, and the new owner started at 33 without ever reading 32. Until
the retry ends, commits stop below the deferred offset; the new owner reads it again (safe).

Fetches never return records of a partition that was paused while they waited. Faust hands its
live set of active partitions to the consumer thread (``Consumer._wait_next_records``), where a
fetch waits up to a second for records; aiokafka's ``Fetcher.fetched_records`` reads an *empty*
set as "every partition". When table recovery pauses the active changelogs during that wait
(faust/tables/recovery.py, after "Done reading from changelog topics"), the set empties, and the
records of the standby changelogs it has just sought (recovery.py, "Starting standby
partitions...") come back through that fetch, marked consumed, and are dropped by Faust's
``getmany`` because their partition is not active. The standby then reads on from after them,
its RocksDB offset (``apply_changelog_batch``) passes the hole, and once promoted the worker
recovers only from that offset: the orders in the hole are unknown to it (404, "payment result
for an unknown order"), whatever its changelog holds. So the thread gets a view that is never
empty and answers membership from the live set: records of a paused partition stay in aiokafka
until it is resumed.

Last, the subscription waits until the broker reports every topic Faust just declared (with a
leader): otherwise the group leader's first assignment can ignore a new topic ("Ignoring missing
topic"), nobody consumes it until the leader's next metadata refresh, and that refresh brings a
second rebalance a few seconds after start, in the middle of the worker's first batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Set
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import FetchResult
from aiokafka.errors import IllegalStateError
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer

__all__ = [
    "CommitGuardThread",
    "LivePartitions",
    "ReadOffsets",
    "RewindingConsumer",
    "head_is_missing",
    "never_committed",
]

log = logging.getLogger(__name__)


def never_committed(
    assigned: Iterable[Any],
    committed: Mapping[Any, int | None],
    consumed_topics: Collection[str],
) -> set[Any]:
    """The assigned partitions of ``consumed_topics`` with no committed offset (or offset 0).

    ``committed`` maps a partition to its committed offset (absent or ``None``: none).
    Partitions of other topics (table changelogs, Faust's leader topic) are positioned by
    table recovery, not by the committed offset.
    """
    return {tp for tp in assigned if tp.topic in consumed_topics and not committed.get(tp)}


def head_is_missing(start: int | None, acked: Collection[int]) -> bool:
    """Whether the first acked offset is past ``start``, the next offset that must be handled."""
    return start is not None and bool(acked) and min(acked) > start


def undelivered(
    starts: Mapping[Any, int | None], ends: Mapping[Any, int], busy: Collection[Any]
) -> dict[Any, int]:
    """The partitions whose records from ``starts`` on exist (``ends`` beyond) while none of
    them is acked or in flight (``busy``): records that never reached the agent. Their starts."""
    return {
        tp: start
        for tp, start in starts.items()
        if start is not None and tp not in busy and ends.get(tp, 0) > start
    }


class LivePartitions:
    """The partitions a fetch may return: Faust's live set, but never "all" when it empties.

    aiokafka only asks ``bool(partitions)`` (empty: every partition) and ``tp in partitions``.
    """

    def __init__(self, live: Set[Any]) -> None:
        self.live = live

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        return tp in self.live  # read from the consumer thread: one atomic set lookup


class ReadOffsets(defaultdict[Any, int | None]):
    """Faust's read offsets (per partition, the last offset delivered: a fetched record below it
    is dropped as delivered already), which hold a seek back until it is read again.

    Faust's delivery loop (``Consumer._drain_messages``) writes each record's offset here after
    handing it to the agent. A seek back lands while it is delivering a batch fetched before the
    seek: each record of that batch wrote its (higher) offset over the seek's, and the records
    fetched from the seek's offset were then all dropped, silently. A chaos run sought
    ``order-commands[2]`` back to 353 three times without 353..405 ever reaching the agent. So
    after ``rewind`` (a seek back, or Faust's seek to the committed offsets) the delivery of a
    batch fetched before it moves the read offset no more; the first fetch after it delivers
    from its offset on as usual.
    """

    def __init__(self) -> None:
        super().__init__(lambda: None)
        self.fetches = 0  # fetches started so far (``RewindingConsumer._getmany``)
        # partition -> (the offset sought back to, the fetches started by then)
        self.rewinds: dict[Any, tuple[int, int]] = {}

    def rewind(self, tp: Any, offset: int) -> None:
        """A seek back to ``offset`` done (after the thread's seek, which wrote it too)."""
        self.rewinds[tp] = (offset, self.fetches)
        super().__setitem__(tp, offset)

    def rewinding(self, tp: Any) -> bool:
        """Whether a batch fetched before a seek back of ``tp`` is still being delivered."""
        rewind = self.rewinds.get(tp)
        return rewind is not None and rewind[1] == self.fetches

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        rewind = self.rewinds.get(tp)
        if rewind is not None:
            target, fetches = rewind
            if offset is not None and offset > target and fetches == self.fetches:
                return  # a record fetched before the seek back: the seek's offset holds
            del self.rewinds[tp]
        super().__setitem__(tp, offset)

    def __delitem__(self, tp: Any) -> None:
        self.rewinds.pop(tp, None)
        super().__delitem__(tp)

    def pop(self, tp: Any, *default: Any) -> Any:
        self.rewinds.pop(tp, None)
        return super().pop(tp, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        # Faust's seek to the committed offsets after a rebalance (``perform_seek``) is a seek
        # back too: the record the agent was handed before it (awaiting room in the stream's
        # buffer through the rebalance) would write its offset over the committed one.
        positions = dict(*args, **kwargs)
        for tp, offset in positions.items():
            if offset is None:
                self.rewinds.pop(tp, None)
                super().__setitem__(tp, None)
            else:
                self.rewind(tp, offset)


class CommitGuardThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, which sends no commit when every partition in it was revoked."""

    async def _commit(self, offsets: Mapping[Any, int]) -> bool:
        # Faust drops the partitions revoked meanwhile and hands aiokafka what is left: nothing,
        # after a rebalance during a slow commit, which aiokafka refuses with ValueError({}) and
        # Faust turns into a crash of the worker (seen in a chaos run and in CI). The check runs
        # here, on the thread's loop, where the assignment cannot change before the send; made
        # on the app's loop it raced with the rebalance.
        assigned = self.assignment()
        if not any(tp in assigned for tp in offsets):
            return False
        committed: bool = await super()._commit(offsets)
        return committed

    async def _seek_wait(self, consumer: Any, partitions: Mapping[Any, int]) -> None:
        # The read-again checks choose their partitions on the app's loop; a revocation can take
        # one away before this seek runs here, and aiokafka's IllegalStateError ("No current
        # assignment") then crashed the worker from a timer (seen in a chaos run). Here, on the
        # thread's loop, the assignment cannot change between the check and the seek; a
        # partition revoked while its position is awaited is let go the same way: its new
        # owner reads it.
        assigned = consumer.assignment()
        kept = {tp: offset for tp, offset in partitions.items() if tp in assigned}
        if not kept:
            return
        try:
            await super()._seek_wait(consumer, kept)
        except IllegalStateError as exc:
            log.info("seek of %s given up: %s", sorted(kept), exc)


class RewindingConsumer(AIOKafkaDriverConsumer):
    """Faust's aiokafka consumer whose post-rebalance seek also covers uncommitted partitions."""

    commits_held = 0  # commits refused because an earlier record was not acked (logs, tests)
    commits_unplaced = 0  # commits refused because where reading starts is not known yet
    redelivered = 0  # holes read again (logs, /health and tests)
    redeliver_after = 10.0  # seconds a hole may last before its records are read again
    clock = staticmethod(time.monotonic)

    topics_wait = 30.0  # seconds the subscription waits for declared topics to be known

    commits_deferred = 0  # commits stopped below a deferred record (logs, tests)
    _revocations = 0  # revocations so far, and seeks to the committed offsets so far: a
    _placements = 0  # commit that outlives a revocation belongs to the assignment that ended
    # partition -> the offsets whose handling was deferred (``defer``). Replaced, never mutated:
    # the class default stays empty for consumers built without ``__init__`` (unit tests).
    _deferred: Mapping[Any, Counter[int]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Where reading started, for the partitions that had no committed offset.
        self.reading_from: dict[Any, int] = {}
        self._held: dict[Any, tuple[int, float]] = {}  # partition -> (hole start, noticed at)
        self._seeks: set[asyncio.Future[None]] = set()  # read-again seeks, until they are done
        # partition -> (start, since when) of a partition with records and nothing delivered
        self._quiet: dict[Any, tuple[int, float]] = {}
        # partition -> (the fetch that returned its records last, their first and last offsets);
        # forgotten at every seek and revocation: what it says belongs to one read position
        self._fetched: dict[Any, tuple[int, int, int]] = {}
        self._read_offset: ReadOffsets = ReadOffsets()  # (Faust's, before its loop starts)

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return CommitGuardThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(self, active_partitions: Set[Any] | None, timeout: float) -> Any:
        # Faust fetches only while some partition is active (None: all, for client-only apps).
        live = None if active_partitions is None else LivePartitions(active_partitions)
        # Faust calls this once the records of the previous fetch were all delivered.
        fetch = self._read_offset.fetches = self._read_offset.fetches + 1
        records = await super()._getmany(live, timeout)  # type: ignore[arg-type]
        for tp, batch in (records or {}).items():
            if batch:  # (a mapping of partition -> records, in offset order)
                self._fetched[tp] = (fetch, batch[0].offset, batch[-1].offset)
        return records

    def _queued(self, tp: Any, start: int) -> bool:
        """Whether records of ``tp`` from ``start`` on are on their way to the agent: delivered
        into its channel, held back by flow control, or (``tp`` not paused) in the batch Faust
        is delivering, or fetched by aiokafka since.

        Under a backlog, a partition's records can wait there for minutes behind other
        partitions' (aiokafka drains its buffer a partition at a time; Faust delivers a whole
        batch before it fetches again): that is queued, not lost, and reading them again only
        throws the queue away (100,000 injected orders never drained so).
        """
        read = self._read_offset.get(tp)
        if read is not None and read > start:
            # Delivered into the agent's channel, where they wait for its stream: Faust counts a
            # record in flight only once the stream takes it (a queue of thousands under a
            # backlog). A rebalance's seek sets the read offset back to the committed one.
            return True
        if tp in self._buffered_partitions:
            # Flow control: Faust stopped taking its records while its agent's channel is full
            # (aiokafka holds them), and takes them again once the channel drains.
            return True
        if tp not in self._active_partitions:
            return False  # paused: Faust drops its records from a batch, and fetches none
        fetched = self._fetched.get(tp)
        if fetched is not None and fetched[0] == self._read_offset.fetches:
            return fetched[1] <= start <= fetched[2]
        return type(self._prefetched().get(tp)) is FetchResult  # (not a fetch error)

    def _prefetched(self) -> Mapping[Any, Any]:
        """Per partition, what aiokafka has fetched and not handed to Faust yet
        (``AIOKafkaConsumer._fetcher._records``; read from the worker's loop: one dict lookup)."""
        client: Any = getattr(getattr(self, "_thread", None), "_consumer", None)
        try:
            records: Mapping[Any, Any] = client._fetcher._records
        except AttributeError:  # (not started, or stopping)
            return {}
        return records

    async def subscribe(self, topics: Iterable[str]) -> None:
        wanted = set(topics)
        await self._wait_for_topics(wanted)
        await super().subscribe(wanted)

    async def _wait_for_topics(self, wanted: set[str]) -> None:
        """Wait (bounded) until the broker reports every topic of ``wanted`` with a leader."""
        servers = [f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker]
        probe = AIOKafkaConsumer(bootstrap_servers=servers, request_timeout_ms=5000)
        deadline = self.clock() + self.topics_wait
        try:
            await probe.start()
            while True:
                missing = wanted - await probe.topics()  # topics whose leader is known
                if not missing or self.clock() > deadline:
                    break
                await asyncio.sleep(0.2)
        except Exception as exc:  # the subscription goes on; Faust copes
            log.warning("could not check the topics before subscribing: %r", exc)
            return
        finally:
            await probe.stop()
        if missing:
            log.warning(
                "subscribing before the broker knows %s: the first assignment may "
                "ignore them until the next metadata refresh",
                sorted(missing),
            )

    async def perform_seek(self) -> None:
        generation = self.app.consumer_generation_id
        await super().perform_seek()
        self._placements += 1
        self._fetched.clear()
        # What was acked before the seek belongs to the old assignment: records acked after the
        # revocation, some never handled (a batch that began while the partition was away drops
        # its events; Faust acks them). The seek reads everything from the committed offset
        # again, to be acked again: counted now, they would let the commit pass the unhandled.
        acking = self.app.topics.acking_topics
        for tp in self.assignment():
            if tp.topic in acking:
                self._acked.pop(tp, None)
                self._acked_index.pop(tp, None)
        if self.app.consumer_generation_id != generation:
            # Reassigned while the committed offsets were looked up (one request per partition,
            # seconds under load): they are the earlier assignment's, and the partitions gained
            # since (the revoke forgot every committed offset) would look never committed and be
            # read from offset 0 again. The new assignment's own seek (after its recovery)
            # positions them.
            log.info("seek of an earlier assignment: no partition read from the start")
            return
        # Faust keeps the committed offsets it just read (absent or None when none; it also
        # turns 0 into None). ``acking_topics`` are the agents' sources.
        fresh = sorted(
            never_committed(
                self.assignment(), self._committed_offset, self.app.topics.acking_topics
            )
        )
        if not fresh:
            return
        starts = await self.earliest_offsets(*fresh)
        positions = {tp: starts.get(tp) or 0 for tp in fresh}
        # In the consumer's own thread, waiting for the positions (as Faust's recovery seeks).
        await self._read_again(positions)
        self.reading_from.update(positions)
        log.info(
            "no committed offset: reading %d partition(s) from the start: %s",
            len(fresh),
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in fresh),
        )

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        if not self._gap[tp]:  # (never filled: see ``_add_gap``)
            start = self._committed_offset[tp] or self.reading_from.get(tp)
            if start is None and acked:
                # Where reading starts is unknown: Faust forgets the committed offset at a
                # revocation and learns it again at its seek after table recovery, seconds
                # later; records fetched before the rebalance are acked meanwhile. Faust's rule
                # would commit past anything missing below them (a chaos run lost 243 orders
                # so: order-commands[2] committed from 40 to 281, at 279 and 280 acked in that
                # window). Nothing is committed until the seek tells where reading starts.
                self.commits_unplaced += 1
                return None
            if head_is_missing(start, acked):
                assert start is not None
                self.commits_held += 1
                self._hold(tp, start, min(acked))
                return None
        deferred = self._deferred.get(tp)
        if deferred and acked and max(acked) >= min(deferred):
            return self._offset_below(tp, min(deferred))
        offset: int | None = super()._new_offset(tp)
        return offset

    stale_acks = 0  # acks of records fetched under an earlier generation, not counted (tests)

    def ack(self, message: Any) -> bool:
        generation = getattr(message, "generation_id", None)
        if generation is not None and generation != self.app.consumer_generation_id:
            # Fetched under an assignment that has ended, and acked after the next one began
            # (a batch still running through the rebalance). It may never have been handled (a
            # batch drops the events of partitions away at its start); the new assignment's
            # seek to the committed offset reads it again, and that copy's ack counts.
            self.stale_acks += 1
            message.acked = True
            self._unacked_messages.discard(message)
            return False
        acked: bool = super().ack(message)
        return acked

    def defer(self, tp: Any, offset: int) -> Callable[[], None]:
        """Commit nothing past ``offset`` of ``tp`` (its handler runs again later) until the
        returned release is called (once the handler ran, or was left to the new owner)."""
        self._deferred = {
            **self._deferred,
            tp: self._deferred.get(tp, Counter()) + Counter({offset: 1}),
        }
        log.info(
            "%s[%d]: not committing past offset %d until its handler has run again",
            tp.topic,
            tp.partition,
            offset,
        )
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._deferred.get(tp, Counter()) - Counter({offset: 1})
            others = {k: v for k, v in self._deferred.items() if k != tp}
            self._deferred = {**others, tp: left} if left else others

        return release

    def deferred(self, tp: Any) -> list[int]:
        """The offsets of ``tp`` whose handling is deferred (diagnostics, tests)."""
        return sorted(self._deferred.get(tp, Counter()).elements())

    def _offset_below(self, tp: Any, floor: int) -> int | None:
        """Faust's rule (the first run of consecutive acked offsets) for the acked offsets below
        ``floor``: those from ``floor`` on stay acked for a later commit."""
        acked = self._acked[tp]
        acked.sort()
        self.commits_deferred += 1
        if not acked or acked[0] >= floor:
            return None
        end = acked[0]
        for offset in acked[1:]:
            if offset != end + 1 or offset >= floor:
                break
            end = offset
        run = range(acked[0], end + 1)
        del acked[: len(run)]
        self._acked_index[tp].difference_update(run)
        return end + 1

    def _hold(self, tp: Any, start: int, first_acked: int) -> None:
        """Note a hole at ``start``; once it has lasted ``redeliver_after``, read it again."""
        now = self.clock()
        since = self._held.get(tp)
        if since is None or since[0] != start:
            self._held[tp] = (start, now)
            log.warning(
                "%s[%d]: not committing past offset %d, not acked yet (first acked: %d)",
                tp.topic,
                tp.partition,
                start,
                first_acked,
            )
        elif now - since[1] >= self.redeliver_after:
            self._held[tp] = (start, now)  # and again later if the hole stays
            self.redelivered += 1
            log.warning(
                "%s[%d]: offsets %d..%d never reached the agent; reading them again",
                tp.topic,
                tp.partition,
                start,
                first_acked - 1,
            )
            task = asyncio.ensure_future(self._seek_back(tp, start))
            self._seeks.add(task)
            task.add_done_callback(self._seeks.discard)

    undelivered_read_again = 0  # partitions whose head never reached the agent (logs, /health)

    async def read_undelivered_again(self) -> int:
        """Read again the assigned partitions whose records from the committed offset on exist
        but have not reached the agents for ``redeliver_after``; returns how many now.

        The hole check above needs a later record acked to notice anything; a partition whose
        head Faust never delivers (fetched under the previous generation and skipped, or left
        paused after a rebalance) has nothing acked and stays unread: its orders wait for the
        next rebalance (a chaos run saw 22 commands wait 3 minutes). Call it only while the
        worker is ready (tables recovered): Faust holds partitions back during a recovery.
        """
        acking = self.app.topics.acking_topics
        assigned = [tp for tp in self.assignment() if tp.topic in acking]
        busy = {tp for tp in assigned if self._acked.get(tp)}
        busy |= {m.tp for m in self._unacked_messages if not m.acked}
        starts = {
            tp: self._committed_offset.get(tp) or self.reading_from.get(tp)
            for tp in assigned
            if tp not in busy
        }
        busy |= {
            tp for tp, start in starts.items() if start is not None and self._queued(tp, start)
        }
        if not any(start is not None for start in starts.values()):
            self._quiet.clear()
            return 0
        ends = await self.highwaters(*[tp for tp, s in starts.items() if s is not None])
        now, revived = self.clock(), 0
        stuck = undelivered(starts, ends, busy)
        for tp in list(self._quiet):
            if tp not in stuck:
                del self._quiet[tp]
        for tp, start in stuck.items():
            since = self._quiet.get(tp)
            if since is None or since[0] != start:
                self._quiet[tp] = (start, now)
            elif now - since[1] >= self.redeliver_after:
                self._quiet[tp] = (start, now)
                self.undelivered_read_again += 1
                revived += 1
                log.warning(
                    "%s[%d]: offsets %d..%d never reached the agent (nothing acked or "
                    "in flight); reading them again",
                    tp.topic,
                    tp.partition,
                    start,
                    ends[tp] - 1,
                )
                self.resume_partitions([tp])  # (a no-op unless Faust left it paused)
                await self._read_again({tp: start})
        return revived

    def forget_undelivered(self) -> None:
        """Start ``read_undelivered_again``'s clocks afresh (the worker is not ready)."""
        self._quiet.clear()

    async def _seek_back(self, tp: Any, offset: int) -> None:
        if tp in self.assignment():  # not if it moved meanwhile: its new owner reads it
            await self._read_again({tp: offset})

    async def _read_again(self, positions: Mapping[Any, int]) -> None:
        """Seek back to ``positions`` and have Faust deliver their records (``ReadOffsets``)."""
        for tp in positions:
            self._fetched.pop(tp, None)
        await self.seek_wait(positions)  # (the thread sets Faust's read offsets too)
        assigned = self.assignment()
        for tp, offset in positions.items():
            if tp in assigned:  # (the thread let go of a partition revoked meanwhile)
                self._read_offset.rewind(tp, offset)

    gaps_refused = 0  # jumps in delivered offsets Faust would have counted as acked (logs, tests)

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        # Faust records a jump in the offsets it delivers as a "gap" (meant for compacted or
        # transactional topics) and later counts the gap as acked: it commits past records
        # that never reached the agent. Our sources have no such holes: a jump means records
        # were dropped on the way (a fetch batch still being delivered after a seek back), and
        # the commit guard above holds the partition until they are read again.
        if self._read_offset.rewinding(tp):
            return  # the rest of a batch fetched before a seek back: no records skipped
        self.gaps_refused += 1
        log.warning(
            "%s[%d]: offsets %d..%d skipped on the way to the agent: not counted as handled",
            tp.topic,
            tp.partition,
            offset_from,
            offset_to - 1,
        )

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        # Where reading started belongs to one assignment: the next one learns it again (in
        # perform_seek) or, when Faust skips that seek, knows only the committed offset.
        self._revocations += 1
        for tp in revoked:
            self.reading_from.pop(tp, None)
            self._held.pop(tp, None)
            self._fetched.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def _commit_offsets(
        self, offsets: Mapping[Any, int], start_new_transaction: bool = True
    ) -> bool:
        # Faust records the committed offsets once the commit returns, even when a revocation
        # came meanwhile and made it forget them: the next assignment would then know a start
        # before its seek, and commit past records of the old one acked after the revocation
        # and never handled (chaos run f2: a 1.1 s commit of order-commands[2] returned after
        # the revocation, and 33 was committed at the new assignment, over 32). Forgotten
        # again, unless the new assignment's seek has set them since.
        seen = (self._revocations, self._placements)
        try:
            committed: bool = await super()._commit_offsets(offsets, start_new_transaction)
        finally:
            if self._revocations != seen[0] and self._placements == seen[1]:
                for tp in offsets:
                    self._committed_offset.pop(tp, None)
        return committed
