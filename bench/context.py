"""What a scenario is handed: its settings, its processes helper and a progress line printer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import PortRange, Procs
from bench.report import Figure

__all__ = ["BenchContext"]


@dataclass
class BenchContext:
    """One run's settings and helpers, shared by the scenarios in turn.

    ``quick``: every scenario small (seconds, for the smoke test and development). ``reps``: how
    many times each measurement is repeated (each figure: the median and min..max over them).
    ``procs`` starts brokers, the sandbox gateway and workers on ports of ``base_port`` ..
    ``base_port + 99`` (``--ports`` narrows that). A scenario notes what it ran with in ``settings`` (``note_settings``):
    the JSON result keeps it.
    """

    base_port: int
    reps: int
    quick: bool
    work_dir: Path
    progress: Callable[[str], None]
    procs: Procs
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    scenario: str = ""  # the scenario running now (set by python -m bench)
    loadgen_processes: int = 1  # processes the load generator splits its clients over
    # Figures of the running scenario measured so far (kept if it fails or is interrupted).
    partial: list[Figure] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        base_port: int,
        reps: int,
        quick: bool,
        work_dir: Path,
        progress: Callable[[str], None] | None = None,
        loadgen_processes: int = 1,
        ports: int = 100,
        bootstrap: str = "",
    ) -> BenchContext:
        say = progress or _printer()
        procs = Procs(work_dir, PortRange(base_port, ports), say, external_bootstrap=bootstrap)
        return cls(
            base_port, reps, quick, work_dir, say, procs, loadgen_processes=loadgen_processes
        )

    def note_settings(self, **values: Any) -> None:
        """Record settings of the running scenario (merged with what it noted before)."""
        self.settings.setdefault(self.scenario or "run", {}).update(values)

    def measured(self, figures: list[Figure]) -> list[Figure]:
        """Keep ``figures`` as measured so far (returns them, for ``figures += ctx.measured(…)``)."""
        self.partial.extend(figures)
        return figures

    def seconds(self, full: float, quick: float) -> float:
        """A duration: ``quick`` under ``--quick``, else ``full``."""
        return quick if self.quick else full


def _printer() -> Callable[[str], None]:
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[bench {time.monotonic() - started:7.1f}s] {message}", flush=True)

    return say
