"""What clients felt during each fault: failing seconds, failed attempts, POST→2xx latency.

A pure function of the load generator's attempts (``tests.chaos.load.Attempt``) and the faults'
start/end times, all on ``time.monotonic()``; figures, never pass/fail checks.

Definitions (every time is an attempt's, never a guess):

- A **failed attempt** is a POST answered 5xx (503 with or without Retry-After, any other 5xx)
  or with no HTTP answer at all (connection refused/reset, server disconnected, client timeout:
  any error class name). 2xx, 4xx and 429 are not failures (429 is counted nowhere as failed).
- An attempt **belongs to a window** when its answer (or its error) arrived inside it, i.e.
  ``start + duration`` is in ``[window start, window end)``. A failed attempt that hung for
  the client's timeout thus counts where the client got the error, not where it sent it.
- A fault occurrence's **window** starts when the fault starts and ends after it has settled:
  at the end of the first *fully successful second* at or after the fault's end, capped at
  ``fault end + SETTLE_CAP_S``, and cut short at the start of the next fault that starts at or
  after this one's end (what follows another fault is that fault's: process faults run back to
  back, so their windows usually end with the fault, i.e. when the worker/broker is back).
  ``ended_by`` says which: ``settled``, ``cap`` or ``next_fault``. A fully successful second is
  a whole wall-clock second (``floor(wall time)``) in which at least one POST attempt was *sent*
  and every attempt sent in it got an answer that is not a failure (so requests sent then and
  timing out later spoil it). Faults that run at the same time (a gateway fault during a worker
  fault) still share figures: each occurrence lists them in ``other_faults`` and the table
  counts such occurrences as ``overlap``.
- **Unavailable seconds** of a window: the number of distinct wall-clock seconds
  (``floor(time.time())`` of the answer) in which at least one failed attempt of the window got
  its answer. **Longest failing run**: the longest run of consecutive such seconds.
- **POST→2xx latency** of an order: the end of its first 2xx answer minus the start of its first
  attempt (retries and backoff included; for the ``concurrent`` mode, the earlier of its two
  POSTs). An order belongs to a window when its first attempt started inside it; orders that
  never got a 2xx are counted as ``orders_without_2xx``, not in the latencies. Percentiles are
  nearest-rank (p50 of 1..4 is 2) over those orders, in milliseconds.
- **Per fault type**: ``n`` occurrences; unavailable seconds summed and maxed over occurrences;
  the longest failing run maxed; failed attempts summed; latencies over the union of the
  occurrences' orders (an order in two overlapping windows counts once); ``cut``: occurrences
  whose window was cut by the next fault; ``overlap``: occurrences sharing their window.
- **Whole run**: the same over every attempt, from the first attempt's start to the last answer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.chaos.load import Attempt

__all__ = [
    "SETTLE_CAP_S",
    "FaultWindow",
    "availability",
    "is_failure",
    "percentile",
    "render_availability",
]

SETTLE_CAP_S = 30.0  # a fault's window ends at most this long after the fault ends


@dataclass(frozen=True)
class FaultWindow:
    """One fault as played: its kind, and when it started and ended (``time.monotonic()``)."""

    kind: str
    start: float
    end: float


def is_failure(outcome: int | str) -> bool:
    """5xx, or no HTTP answer at all (an error class name)."""
    return isinstance(outcome, str) or outcome >= 500


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0-100) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _second(mono: float, wall_offset: float) -> int:
    return math.floor(mono + wall_offset)


def _longest_run(seconds: Iterable[int]) -> int:
    longest = run = 0
    previous: int | None = None
    for s in sorted(seconds):
        run = run + 1 if previous is not None and s == previous + 1 else 1
        longest, previous = max(longest, run), s
    return longest


def _settled_at(
    attempts: Sequence[Attempt], end: float, wall_offset: float, cap: float
) -> tuple[float, str]:
    """The end of the first fully successful second at or after ``end``, capped; and which."""
    sent: dict[int, bool] = {}  # second -> every attempt sent in it succeeded
    first_second = _second(end, wall_offset)
    for a in attempts:
        s = _second(a.start, wall_offset)
        if s >= first_second:
            sent[s] = sent.get(s, True) and not is_failure(a.outcome)
    limit = end + cap
    for s in sorted(sent):
        settled = s + 1 - wall_offset  # the end of that second, back on the monotonic clock
        if settled > limit:
            break
        if sent[s]:
            return settled, "settled"
    return limit, "cap"


def _latencies(attempts: Sequence[Attempt]) -> dict[int, float | None]:
    """Order index -> POST→2xx seconds (None: no 2xx answer ever)."""
    first: dict[int, float] = {}
    ok_at: dict[int, float] = {}
    for a in attempts:
        first[a.order] = min(first.get(a.order, a.order_first), a.order_first, a.start)
        if isinstance(a.outcome, int) and 200 <= a.outcome < 300:
            answered = a.start + a.duration
            ok_at[a.order] = min(ok_at.get(a.order, answered), answered)
    return {o: (ok_at[o] - t if o in ok_at else None) for o, t in first.items()}


def _figures(
    attempts: Sequence[Attempt],
    orders: set[int],
    latency: Mapping[int, float | None],
    start: float,
    end: float,
    wall_offset: float,
) -> dict[str, Any]:
    failed = [a for a in attempts if is_failure(a.outcome) and start <= a.start + a.duration < end]
    seconds = {_second(a.start + a.duration, wall_offset) for a in failed}
    return {
        "unavailable_s": len(seconds),
        "longest_failing_run_s": _longest_run(seconds),
        "failed_attempts": len(failed),
        "failed_by_outcome": dict(sorted(Counter(str(a.outcome) for a in failed).items())),
        **_latency_figures(orders, latency),
    }


def _latency_figures(orders: set[int], latency: Mapping[int, float | None]) -> dict[str, Any]:
    values = [v * 1000 for v in (latency.get(o) for o in orders) if v is not None]
    return {
        "orders": len(orders),
        "orders_without_2xx": len(orders) - len(values),
        "post_p50_ms": round(percentile(values, 50)) if values else None,
        "post_p99_ms": round(percentile(values, 99)) if values else None,
        "post_max_ms": round(max(values)) if values else None,
    }


def availability(
    attempts: Sequence[Attempt],
    faults: Sequence[FaultWindow],
    wall_offset: float,
    origin: float = 0.0,
    settle_cap_s: float = SETTLE_CAP_S,
) -> dict[str, Any]:
    """The availability figures: per occurrence, per fault type and for the whole run.

    ``wall_offset`` is ``time.time() - time.monotonic()`` (to count wall-clock seconds);
    ``origin`` is the monotonic time the reported window times are relative to.
    """
    latency = _latencies(attempts)
    order_first = {a.order: a.order_first for a in attempts}
    occurrences: list[dict[str, Any]] = []
    by_kind: dict[str, list[tuple[dict[str, Any], set[int]]]] = {}
    for fault in faults:
        end, ended_by = _settled_at(attempts, fault.end, wall_offset, settle_cap_s)
        following = [f.start for f in faults if f is not fault and f.start >= fault.end]
        if following and min(following) < end:
            end, ended_by = min(following), "next_fault"
        others = sorted(
            f.kind for f in faults if f is not fault and f.start < end and f.end > fault.start
        )
        orders = {o for o, t in order_first.items() if fault.start <= t < end}
        figures = _figures(attempts, orders, latency, fault.start, end, wall_offset)
        occurrence = {
            "kind": fault.kind,
            "fault_s": [round(fault.start - origin, 1), round(fault.end - origin, 1)],
            "window_s": [round(fault.start - origin, 1), round(end - origin, 1)],
            "ended_by": ended_by,
            "other_faults": others,
            **figures,
        }
        occurrences.append(occurrence)
        by_kind.setdefault(fault.kind, []).append((occurrence, orders))
    per_kind: dict[str, dict[str, Any]] = {}
    for kind, items in by_kind.items():
        union = set().union(*(orders for _, orders in items))
        merged = _latency_figures(union, latency)
        per_kind[kind] = {
            "n": len(items),
            "unavailable_s_max": max(o["unavailable_s"] for o, _ in items),
            "unavailable_s_sum": sum(o["unavailable_s"] for o, _ in items),
            "longest_failing_run_s_max": max(o["longest_failing_run_s"] for o, _ in items),
            "failed_attempts": sum(o["failed_attempts"] for o, _ in items),
            "cut": sum(o["ended_by"] == "next_fault" for o, _ in items),
            "overlap": sum(bool(o["other_faults"]) for o, _ in items),
            "orders": merged["orders"],
            "orders_without_2xx": merged["orders_without_2xx"],
            "post_p50_ms": merged["post_p50_ms"],
            "post_p99_ms": merged["post_p99_ms"],
            "post_max_ms": merged["post_max_ms"],
        }
    if attempts:
        start = min(a.start for a in attempts)
        end = max(a.start + a.duration for a in attempts) + 1e-9  # the last answer is inside
    else:
        start = end = 0.0
    whole = _figures(attempts, set(order_first), latency, start, end, wall_offset)
    return {
        "settle_cap_s": settle_cap_s,
        "by_fault": per_kind,
        "whole_run": whole,
        "occurrences": occurrences,
    }


_COLUMNS = (
    ("fault", 16, None),
    ("n", 3, "n"),
    ("unavail_s(max/sum)", 19, None),
    ("longest_run_s", 14, "longest_failing_run_s_max"),
    ("failed_attempts", 16, "failed_attempts"),
    ("cut", 4, "cut"),
    ("overlap", 8, "overlap"),
    ("orders", 7, "orders"),
    ("no_2xx", 7, "orders_without_2xx"),
    ("post_p50_ms", 12, "post_p50_ms"),
    ("post_p99_ms", 12, "post_p99_ms"),
    ("post_max_ms", 12, "post_max_ms"),
)


def render_availability(figures: Mapping[str, Any]) -> str:
    """The per-fault-type table, then the whole-run line (see the module docstring)."""
    header = "".join(f"{name:<{width}}" for name, width, _ in _COLUMNS).rstrip()
    lines = [
        "",
        "availability: what clients felt during each fault (window: fault start to "
        f"settled, at most {figures.get('settle_cap_s')} s after its end or the next fault; "
        "tests/chaos/availability.py)",
        header,
        "-" * len(header),
    ]

    def row(name: str, values: Mapping[str, Any], unavailable: str) -> str:
        cells = [f"{name:<16}"]
        for _, width, key in _COLUMNS[1:]:
            if key is None:
                cells.append(f"{unavailable:<{width}}")
            else:
                value = values.get(key)
                cells.append(f"{'-' if value is None else value!s:<{width}}")
        return "".join(cells).rstrip()

    for kind, values in figures.get("by_fault", {}).items():
        unavailable = f"{values['unavailable_s_max']}/{values['unavailable_s_sum']}"
        lines.append(row(kind, values, unavailable))
    whole = figures.get("whole_run")
    if whole:
        lines.append("-" * len(header))
        lines.append(
            row(
                "whole_run",
                {
                    **whole,
                    "n": "-",
                    "cut": "-",
                    "overlap": "-",
                    "longest_failing_run_s_max": whole["longest_failing_run_s"],
                },
                str(whole["unavailable_s"]),
            )
        )
    return "\n".join(lines)
