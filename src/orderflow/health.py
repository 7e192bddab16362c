"""Liveness, as ``/health`` reports it: is every part of the worker still moving on?

Two ways a worker can be alive but useless, both seen here: an agent stuck on one event (a dead
letter the broker keeps refusing, a send that cannot be delivered: ``InFlight``), and a rebalance
or table recovery that never completes (faust-streaming can hang in recovery after a long freeze:
"No event received for active tp ... since recovery start", for minutes, until restarted). Either
answers 503, so a supervisor's liveness probe restarts the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orderflow.agents.in_flight import InFlight

__all__ = ["Liveness"]


@dataclass(frozen=True)
class Liveness:
    """Builds the ``/health`` answer: (HTTP status, JSON body)."""

    in_flight: InFlight
    unready_for: Callable[[], float]  # seconds since the worker stopped being ready; 0 if ready
    counters: Callable[[], dict[str, int]]
    stuck_after_s: float
    recovery_deadline_s: float

    def check(self) -> tuple[int, dict[str, Any]]:
        stuck = self.in_flight.stuck(self.stuck_after_s)
        unready = self.unready_for()
        recovering_too_long = unready > self.recovery_deadline_s
        body: dict[str, Any] = {"status": "ok", **self.counters()}
        if stuck:
            body["stuck"] = [s.to_json() for s in stuck]
        if recovering_too_long:
            body["recovering_for_s"] = round(unready, 1)
        if stuck or recovering_too_long:
            body["status"] = "stuck"
            return 503, body
        return 200, body
