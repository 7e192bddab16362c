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
compacted nor transactional, so their offsets have no holes.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer

__all__ = ["RewindingConsumer", "head_is_missing", "never_committed"]

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


class RewindingConsumer(AIOKafkaDriverConsumer):
    """Faust's aiokafka consumer whose post-rebalance seek also covers uncommitted partitions."""

    rewound = 0  # partitions sought back to their beginning (logs and tests)
    commits_held = 0  # commits refused because an earlier record was not acked (logs, tests)

    @property
    def reading_from(self) -> dict[Any, int]:
        """Where reading started, for the partitions that had no committed offset."""
        if "_reading_from" not in self.__dict__:
            self._reading_from: dict[Any, int] = {}
        return self._reading_from

    async def perform_seek(self) -> None:
        await super().perform_seek()
        # Faust keeps the committed offsets it just read (absent or None when none; it also
        # turns 0 into None). ``acking_topics`` are the agents' sources.
        fresh = sorted(never_committed(
            self.assignment(), self._committed_offset, self.app.topics.acking_topics
        ))  # fmt: skip
        if not fresh:
            return
        starts = await self.earliest_offsets(*fresh)
        for tp in fresh:
            start = starts.get(tp) or 0
            await self.seek(tp, start)
            self.reading_from[tp] = start
        self.rewound += len(fresh)
        log.info("no committed offset: reading %d partition(s) from the start: %s", len(fresh),
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in fresh))  # fmt: skip

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        if not self._gap[tp]:  # (Faust's gaps: compacted or transactional topics only)
            start = self._committed_offset[tp] or self.reading_from.get(tp)
            if head_is_missing(start, acked):
                self.commits_held += 1
                held_at: dict[Any, int | None] = self.__dict__.setdefault("_held_at", {})
                if held_at.get(tp) != start:  # warn once per hole
                    held_at[tp] = start
                    log.warning("%s[%d]: not committing past offset %s, not acked yet (first "
                                "acked: %d)", tp.topic, tp.partition, start, min(acked))  # fmt: skip
                return None
        offset: int | None = super()._new_offset(tp)
        return offset
