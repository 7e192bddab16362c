"""The fault schedule: which fault, when, for how long, chosen with the run's seed.

A schedule is a named preset (times are fractions of the load's duration, jittered by the seed)
or an explicit list ``kind@seconds[+duration]`` separated by commas, e.g.
``worker_kill@10,gateway_outage@20+5,zombie@30``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "GATEWAY_KINDS",
    "KINDS",
    "PRESETS",
    "PROCESS_KINDS",
    "Fault",
    "ScheduleError",
    "build_schedule",
]

# Faults on processes (workers, brokers) run one after another: a restart must finish before the
# next kill, or the run would only measure a cluster that never comes back.
PROCESS_KINDS = (
    "worker_kill",  # SIGKILL a random worker, restart it on the same data dir and port
    "rolling_restart",  # SIGTERM every worker one by one, each restarted before the next
    "add_worker",  # a new worker joins (a rebalance)
    "remove_worker",  # a worker leaves for good (SIGTERM; a rebalance)
    "zombie",  # SIGSTOP a worker longer than the session timeout, then SIGCONT
    "broker_restart",  # SIGKILL a broker (the single one, or one of three) and bring it back
)
# Gateway faults run on their own lane (one at a time: the sandbox has one fault setting).
GATEWAY_KINDS = (
    "gateway_outage",  # every request answers 5xx
    "gateway_5xx",  # a burst: half of the requests answer 5xx
    "gateway_latency",  # every request slower than the worker's gateway timeout
    "gateway_drop",  # half of the new charges are committed, then the answer is dropped
)
KINDS = PROCESS_KINDS + GATEWAY_KINDS

_DEFAULT_DURATION = {
    "gateway_outage": 5.0,
    "gateway_5xx": 6.0,
    "gateway_latency": 6.0,
    "gateway_drop": 6.0,
}

# (kind, fraction of the load duration, duration in seconds or None for the default)
_Preset = tuple[tuple[str, float, float | None], ...]
PRESETS: dict[str, _Preset] = {
    "none": (),
    "small": (
        # The drop burst comes first, alone: the kill's 503s would starve it of charges.
        ("gateway_drop", 0.03, 5.0),
        ("worker_kill", 0.22, None),
        ("add_worker", 0.35, None),
        ("gateway_5xx", 0.50, 3.0),
        ("broker_restart", 0.60, None),
    ),
    "full": (
        ("worker_kill", 0.05, None),
        ("gateway_outage", 0.08, None),
        ("zombie", 0.12, None),
        ("worker_kill", 0.20, None),
        ("gateway_5xx", 0.25, None),
        ("rolling_restart", 0.30, None),
        ("worker_kill", 0.40, None),
        ("gateway_latency", 0.45, None),
        ("add_worker", 0.48, None),
        ("broker_restart", 0.55, None),
        ("worker_kill", 0.62, None),
        ("gateway_drop", 0.65, None),
        ("remove_worker", 0.72, None),
        ("worker_kill", 0.80, None),
        ("gateway_5xx", 0.85, 4.0),
    ),
}


class ScheduleError(ValueError):
    """The fault schedule cannot be understood; the message says which part."""


@dataclass(frozen=True)
class Fault:
    """One planned fault: ``at`` seconds after the load starts; ``duration`` where it applies."""

    kind: str
    at: float
    duration: float

    @property
    def lane(self) -> str:
        return "gateway" if self.kind in GATEWAY_KINDS else "process"


def _parse_item(item: str) -> Fault:
    kind, sep, when = item.partition("@")
    kind = kind.strip()
    if kind not in KINDS:
        raise ScheduleError(f"unknown fault {kind!r} (known: {', '.join(KINDS)})")
    if not sep:
        raise ScheduleError(f"{item!r}: expected KIND@SECONDS[+DURATION]")
    at_text, _, duration_text = when.partition("+")
    try:
        at = float(at_text)
        duration = float(duration_text) if duration_text else _DEFAULT_DURATION.get(kind, 0.0)
    except ValueError:
        raise ScheduleError(f"{item!r}: times must be numbers of seconds") from None
    if at < 0 or duration < 0:
        raise ScheduleError(f"{item!r}: times must be >= 0")
    return Fault(kind, at, duration)


def build_schedule(spec: str, load_seconds: float, seed: int) -> list[Fault]:
    """The faults of ``spec`` (a preset name or an explicit list), sorted by time."""
    spec = spec.strip()
    if spec in PRESETS:
        rng = random.Random(f"schedule-{seed}")
        faults = []
        for kind, fraction, duration in PRESETS[spec]:
            # A little jitter so two seeds do not hit the same instants of the pipeline.
            at = max(0.0, load_seconds * (fraction + rng.uniform(-0.02, 0.02)))
            faults.append(Fault(kind, round(at, 1), duration or _DEFAULT_DURATION.get(kind, 0.0)))
    else:
        faults = [_parse_item(item) for item in spec.split(",") if item.strip()]
        if not faults:
            raise ScheduleError(f"no fault in {spec!r} (presets: {', '.join(PRESETS)})")
    return sorted(faults, key=lambda f: f.at)
