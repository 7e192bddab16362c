"""Whether a PENDING order is stalled or only queued: the stall nudge's gate, per partition.

The stall nudge publishes ``order.created`` again for an order PENDING longer than
``stall_after``, on the reading that something lost its progress. Under a backlog that reading is
wrong: the order's ``order.created`` (or its payment result) is queued behind thousands of
records, and the copy only joins the queue (100,000 injected orders: 1.52 ``order.created`` per
order with a 3,000-record backlog, and a drain that never ended). So an order is nudged only once
the consumers after it have read past the point where their partitions ended when it was found
due (the payment service on ``order.created``, the order service on the payment results): if
it is still PENDING then, its records were handled and their effect lost. A consumer that stops
moving for ``patience`` seconds opens the gate too: a stuck partition is what the nudge is for.

The consumers of one partition number are all on the order's owner (Faust assigns co-partitioned
topics together), so their committed offsets are known locally; where one is not, the gate stays
open (the nudge as before: a duplicate is safe, a missed nudge is not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DownstreamGates", "DownstreamProgress"]


class DownstreamProgress(Protocol):
    """How far the consumers after an order's command have read one partition number."""

    async def ends(self, partition: int) -> Mapping[str, int]:
        """Each downstream topic's end offset at this partition now (a broker round trip)."""
        ...

    def committed(self, partition: int) -> Mapping[str, int | None]:
        """Each downstream topic's next offset to handle here (None: not known on this worker)."""
        ...


@dataclass
class _Gate:
    marks: Mapping[str, int]  # where each downstream partition ended when the gate was armed
    armed_at: float
    seen: dict[str, int | None]  # each topic's committed offset at the last look
    moved_at: dict[str, float]  # and when it last moved


class DownstreamGates:
    """Per partition: armed when orders there are found due, open once each consumer passed its
    mark or stood still for ``patience`` (each on its own: one stuck topic must open the gate
    while another moves); the orders due when it was armed may then be nudged, at any later pass
    (a pass nudges a bounded number per partition).
    """

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self._gates: dict[int, _Gate] = {}
        self._cleared: dict[int, float] = {}  # partition -> orders due by then may be nudged

    def armed(self, partition: int) -> bool:
        return partition in self._gates

    def cleared_until(self, partition: int) -> float | None:
        """Orders of ``partition`` due by this time have passed their gate (None: none)."""
        return self._cleared.get(partition)

    def arm(
        self,
        partition: int,
        ends: Mapping[str, int],
        committed: Mapping[str, int | None],
        now: float,
    ) -> None:
        """Mark where the downstream partitions end now (``ends``)."""
        self._gates[partition] = _Gate(dict(ends), now, dict(committed), dict.fromkeys(ends, now))

    def opened(
        self, partition: int, committed: Mapping[str, int | None], now: float
    ) -> float | None:
        """If the armed gate opens now, when it was armed (orders due by then may be nudged, now
        and at later passes: ``cleared_until``), and it is disarmed; else None (its orders wait:
        queued, their consumers moving)."""
        gate = self._gates[partition]
        passed = True
        for topic, mark in gate.marks.items():
            offset = committed.get(topic)
            if offset != gate.seen.get(topic) or now < gate.moved_at[topic]:
                gate.seen[topic], gate.moved_at[topic] = offset, now  # (or the clock went back)
            if (offset or 0) < mark and now - gate.moved_at[topic] < self.patience:
                passed = False  # still working towards its mark
        if not passed:
            return None
        del self._gates[partition]
        self._cleared[partition] = max(gate.armed_at, self._cleared.get(partition, gate.armed_at))
        return gate.armed_at

    def forget(self, keep: set[int]) -> None:
        """A new assignment: the gates of partitions that moved away go (their new owner arms
        its own)."""
        for gates in (self._gates, self._cleared):
            for partition in [p for p in gates if p not in keep]:
                del gates[partition]
