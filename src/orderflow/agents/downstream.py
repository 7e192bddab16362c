"""Whether a PENDING order is stalled or only queued: the stall nudge's gate, per partition.

The stall nudge publishes ``order.created`` again for an order PENDING longer than
``stall_after``, on the reading that something lost its progress. Under a backlog that reading is
wrong: the order's ``order.created`` (or its payment result) is queued behind thousands of
records, and the copy only joins the queue (100,000 injected orders: 1.52 ``order.created`` per
order with a 3,000-record backlog, and a drain that never ended). So an order is nudged only once
the consumers after it have read past where their partitions ended, stage by stage: the payment
service past ``order.created``'s end when the order was found due, then the order service past
the payment results' end once that had happened (a result is published only then). If the order
is still PENDING after that, its records were handled and their effect lost. A consumer that
stops moving for ``patience`` seconds passes too: a stuck partition is what the nudge is for.

The consumers of one partition number are all on the order's owner (Faust assigns co-partitioned
topics together), so their committed offsets are known locally; where one is not, the gate stays
open (the nudge as before: a duplicate is safe, a missed nudge is not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DownstreamGates", "DownstreamProgress"]


class DownstreamProgress(Protocol):
    """How far the consumers after an order's command have read one partition number."""

    @property
    def stages(self) -> Sequence[Sequence[str]]:
        """The downstream topics in the order an order's progress passes through them: a record
        of a later stage exists only once the one before was handled (a payment result is
        published before its order.created is acked), so its marks are taken then."""
        ...

    async def ends(self, partition: int, topics: Sequence[str]) -> Mapping[str, int]:
        """The end offsets of ``topics`` at this partition now (a broker round trip)."""
        ...

    def committed(self, partition: int) -> Mapping[str, int | None]:
        """Each downstream topic's next offset to handle here (None: not known on this worker)."""
        ...


@dataclass
class _Gate:
    stage: int
    marks: Mapping[str, int]  # where the stage's partitions ended when it was armed
    armed_at: float
    seen: dict[str, int | None]  # each topic's committed offset at the last look
    moved_at: dict[str, float]  # and when it last moved


class DownstreamGates:
    """Per partition: armed when orders there are found due, then stage by stage (each one's
    marks taken once the stage before has passed); a stage passes once each consumer reached its
    mark or stood still for ``patience`` (each on its own: one stuck topic must not wait for
    another that moves). After the last stage the orders due when it was armed may be nudged,
    at any later pass too (a pass nudges a bounded number per partition).
    """

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self._gates: dict[int, _Gate] = {}
        self._cleared: dict[int, float] = {}  # partition -> orders due by then may be nudged

    def armed(self, partition: int) -> bool:
        return partition in self._gates

    def stage(self, partition: int) -> int:
        return self._gates[partition].stage

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
        """Mark the next stage where its partitions end now (``ends``): stage 0 of a new gate,
        or the stage after the one that has passed."""
        gate = self._gates.get(partition)
        if gate is None:
            gate = self._gates[partition] = _Gate(0, {}, now, {}, {})
        else:
            gate.stage += 1
        self._mark(gate, ends, committed, now)

    @staticmethod
    def _mark(
        gate: _Gate, ends: Mapping[str, int], committed: Mapping[str, int | None], now: float
    ) -> None:
        gate.marks = dict(ends)
        gate.seen = {topic: committed.get(topic) for topic in ends}
        gate.moved_at = dict.fromkeys(ends, now)

    def passed(self, partition: int, committed: Mapping[str, int | None], now: float) -> bool:
        """Whether the armed gate's stage has passed (queued records handled, or stuck)."""
        gate = self._gates[partition]
        passed = True
        for topic, mark in gate.marks.items():
            offset = committed.get(topic)
            if offset != gate.seen.get(topic) or now < gate.moved_at[topic]:
                gate.seen[topic], gate.moved_at[topic] = offset, now  # (or the clock went back)
            if (offset or 0) < mark and now - gate.moved_at[topic] < self.patience:
                passed = False  # still working towards its mark
        return passed

    def open(self, partition: int) -> float:
        """Disarm a gate whose last stage passed: orders due by the returned time (when it was
        armed) may be nudged, now and at later passes (``cleared_until``)."""
        gate = self._gates.pop(partition)
        self._cleared[partition] = max(gate.armed_at, self._cleared.get(partition, gate.armed_at))
        return gate.armed_at

    def forget(self, keep: set[int]) -> None:
        """A new assignment: the gates of partitions that moved away go (their new owner arms
        its own)."""
        for gates in (self._gates, self._cleared):
            for partition in [p for p in gates if p not in keep]:
                del gates[partition]
