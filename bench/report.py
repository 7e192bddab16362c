"""What a bench run found: figures (a value per repetition), the machine, the versions, the table.

A ``Figure`` is one measured quantity of one scenario with one value per repetition; the table
shows its median and its spread, **min..max over the repetitions** (with 3 to 5 repetitions a
percentile spread would only restate min and max). A ``Result`` is the whole run as written to
``bench/results/<UTC timestamp>.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "SPREAD",
    "Figure",
    "Result",
    "format_value",
    "git_rev",
    "machine_info",
    "print_table",
    "read_json",
    "render_table",
    "versions",
    "write_json",
]

# What the spread column means, printed under the table and stored in the JSON.
SPREAD = "min..max over the repetitions"

_PACKAGES = (
    "faust-streaming",
    "mode-streaming",
    "aiokafka",
    "aiohttp",
    "msgspec",
    "orjson",
    "uvloop",
)


@dataclass(frozen=True)
class Figure:
    """One quantity of one scenario, one value per repetition (``values`` never empty)."""

    scenario: str
    name: str
    unit: str
    values: list[float]
    note: str = ""  # a short remark shown after the figure (e.g. "load generator was the limit")

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"{self.scenario}/{self.name}: a figure needs at least one value")

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def spread(self) -> tuple[float, float]:
        """(min, max) over the repetitions: see ``SPREAD``."""
        return float(min(self.values)), float(max(self.values))

    def to_json(self) -> dict[str, Any]:
        low, high = self.spread
        return {**asdict(self), "median": self.median, "spread": [low, high]}


@dataclass
class Result:
    """A whole run: its figures and what they were measured on."""

    figures: list[Figure]
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # the run's, and each scenario's
    git_rev: str = ""
    started_at: str = ""  # UTC, ISO 8601
    finished_at: str = ""
    scenarios: dict[str, str] = field(
        default_factory=dict
    )  # name -> ok | not built yet | failed: …

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "git_rev": self.git_rev,
            "machine": self.machine,
            "versions": self.versions,
            "settings": self.settings,
            "scenarios": self.scenarios,
            "spread": SPREAD,
            "figures": [f.to_json() for f in self.figures],
        }


def format_value(value: float) -> str:
    """Three significant digits or so, without exponent for the sizes a bench sees."""
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100 or (value == int(value) and magnitude < 1e6):
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def render_table(figures: Iterable[Figure]) -> str:
    """A fixed-width table: scenario, figure, median, spread, unit, repetitions, note."""
    rows = [("scenario", "figure", "median", "spread (min..max)", "unit", "n", "")]
    for f in figures:
        low, high = f.spread
        spread = format_value(low) if low == high else f"{format_value(low)}..{format_value(high)}"
        rows.append(
            (f.scenario, f.name, format_value(f.median), spread, f.unit, str(len(f.values)), f.note)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {2, 3, 5}  # numbers align right
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)


def print_table(figures: Iterable[Figure], file: TextIO | None = None) -> None:
    print(render_table(figures), file=file or sys.stdout, flush=True)


def write_json(result: Result, path: Path) -> Path:
    """Write the run as indented JSON (parent directories made); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2, sort_keys=False) + "\n")
    return path


def read_json(path: Path) -> Result:
    """Read a file ``write_json`` wrote (the derived median/spread are recomputed)."""
    data = json.loads(path.read_text())
    figures = [
        Figure(
            f["scenario"], f["name"], f["unit"], [float(v) for v in f["values"]], f.get("note", "")
        )
        for f in data["figures"]
    ]
    return Result(
        figures,
        data.get("machine", {}),
        data.get("versions", {}),
        data.get("settings", {}),
        data.get("git_rev", ""),
        data.get("started_at", ""),
        data.get("finished_at", ""),
        data.get("scenarios", {}),
    )


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM and kernel of this machine (Linux's /proc; best effort elsewhere)."""
    info: dict[str, Any] = {
        "cpu_model": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "system": platform.system(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024**2, 1)
    with contextlib.suppress(OSError, ValueError):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def versions(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Python and the packages on the hot path; ``extra`` adds others (e.g. Kafka's version)."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found.update(extra or {})
    return found


def git_rev(repo: Path | None = None) -> str:
    """The commit checked out (``-dirty`` when the tree has changes), or "" outside git."""
    cwd = repo or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        rev = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{rev}-dirty" if dirty else rev
