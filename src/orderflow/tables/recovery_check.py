"""Check that Faust really recovered our tables before the worker uses them.

Faust announces the end of table recovery (``on_rebalance_complete``) when no active changelog
partition has records left to read, but a partition whose read position it does not know yet is
left out of that count. CI caught the consequence: a rebalance arrived while a worker was
recovering two partitions from their first record; Faust declared the *next* assignment
recovered at once, and the worker owned both partitions with empty tables. Its safety nets read
nothing there, and a payment result for one of those orders would have met "unknown order".

So when Faust says done, we compare, for every active changelog partition, the offset the table
really holds (RocksDB persists it with the rows; the memory store only has the offset recovery
reached) with the end of the changelog. A partition short of it is recovered again, before the
streams resume: the fence and the routing stay unsettled until a check passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = ["RecoveryCheck", "unrecovered"]

log = logging.getLogger(__name__)


def unrecovered(
    ends: Mapping[Any, int | None], recovered_to: Callable[[Any], int | None]
) -> dict[Any, tuple[int | None, int]]:
    """Partitions whose table holds less than their changelog: ``{tp: (held, end)}``.

    ``ends`` are the changelogs' end offsets (the next offset to be written), ``recovered_to``
    the offset of the last changelog record applied to the table (``None``: none).
    """
    short: dict[Any, tuple[int | None, int]] = {}
    for tp, end in ends.items():
        if not end:  # empty (or unknown): nothing to hold
            continue
        held = recovered_to(tp)
        if held is None or held < end - 1:
            short[tp] = (held, end)
    return short


class RecoveryCheck:
    """Verifies each recovery Faust reports complete; starts it again when a table is short."""

    def __init__(self, app: Any, changelog_topics: Collection[str], persistent: bool) -> None:
        self.app = app
        self.changelog_topics = set(changelog_topics)
        self.persistent = persistent  # RocksDB: the table persists the offset it holds
        self.restarts = 0  # recoveries started again (logs, /health and tests)

    def _recovered_to(self, tp: Any) -> int | None:
        recovery = self.app.tables.recovery
        if self.persistent:
            table = recovery.tp_to_table.get(tp)
            return None if table is None else table.persisted_offset(tp)
        offset = recovery.active_offsets.get(tp)
        return None if offset is None or offset < 0 else int(offset)

    async def verify(self) -> bool:
        """True when every active changelog partition is fully held; else recovery restarts."""
        generation = self.app.consumer_generation_id
        tps = {
            tp for tp in self.app.assignor.assigned_actives() if tp.topic in self.changelog_topics
        }
        if not tps:
            return True
        ends = await self.app.consumer.highwaters(*tps)
        if self.app.consumer_generation_id != generation:
            return False  # rebalanced meanwhile: the next completion is checked instead
        short = unrecovered(ends, self._recovered_to)
        if not short:
            return True
        self.restarts += 1
        where = ", ".join(
            f"{tp.topic}[{tp.partition}] holds {held} of {end}"
            for tp, (held, end) in sorted(short.items())
        )
        log.warning(
            "table recovery reported complete but %d changelog partition(s) are short of their "
            "end: %s; recovering again",
            len(short),
            where,
        )
        recovery = self.app.tables.recovery
        for tp in short:
            # Read from what the table really holds (Faust may believe it got further).
            recovery.active_offsets[tp] = self._recovered_to(tp)
        # Faust's own "rebalance again" path: the recovery loop stops this completion (streams
        # stay paused) and recovers the current assignment again.
        recovery.signal_recovery_start.set()
        return False
