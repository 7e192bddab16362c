"""What each agent is working on, and since when: how ``/health`` tells a stuck agent.

An agent stuck on one event (a dead letter the broker keeps refusing, a send that cannot be
delivered) stops every partition it consumes, while the web server still answers. Agents register
the events of each batch here for as long as they handle them; ``stuck`` lists those held longer
than a bound.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from orderflow.domain.events import rfc3339

__all__ = ["InFlight", "Stuck"]


@dataclass(frozen=True)
class Stuck:
    """An event an agent has been handling for longer than it should."""

    agent: str
    topic: str
    partition: int
    offset: int
    since: float  # epoch seconds
    seconds: float

    def to_json(self) -> dict[str, object]:
        # Every field, in order; the time as RFC 3339 and the duration to a tenth of a second.
        return {**asdict(self), "since": rfc3339(self.since), "seconds": round(self.seconds, 1)}


@dataclass(frozen=True)
class _Entry:
    agent: str
    topic: str
    partition: int
    offset: int
    since: float
    started: float  # monotonic


class InFlight:
    """The events being handled right now, per agent (in memory, cheap: a dict per batch)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: dict[int, list[_Entry]] = {}
        self._ids = itertools.count()
        self.clock = clock
        self.monotonic = monotonic

    @contextmanager
    def handling(self, agent: str, events: Sequence[Any]) -> Iterator[None]:
        """Register ``events`` as in progress for the duration of the block."""
        token = next(self._ids)
        since, started = self.clock(), self.monotonic()
        self._entries[token] = [
            _Entry(agent, e.message.topic, e.message.partition, e.message.offset, since, started)
            for e in events
        ]
        try:
            yield
        finally:
            del self._entries[token]

    def stuck(self, bound: float) -> list[Stuck]:
        """The oldest event of each agent and partition held longer than ``bound`` seconds."""
        now = self.monotonic()
        oldest: dict[tuple[str, str, int], _Entry] = {}
        for entries in self._entries.values():
            for entry in entries:
                key = (entry.agent, entry.topic, entry.partition)
                if now - entry.started > bound and (
                    key not in oldest or entry.started < oldest[key].started
                ):
                    oldest[key] = entry
        return [
            Stuck(e.agent, e.topic, e.partition, e.offset, e.since, now - e.started)
            for e in sorted(oldest.values(), key=lambda e: e.started)
        ]
