"""``python -m bench [--quick] [--only NAME,...] [--reps N] [--out PATH] [--base-port P]``.

Runs the scenarios in turn (each starts and stops its own broker, sandbox and workers), prints a
progress line for each step, then the table, and writes the JSON result (figures, machine,
versions, settings, git revision) to ``bench/results/<UTC timestamp>.json`` unless ``--out``.
A scenario whose module is not there is reported "not built yet"; one that fails is reported
with its error and the run goes on. Ctrl-C stops every process the bench started.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from bench.context import BenchContext
from bench.loadgen import new_event_loop
from bench.procs import kafka_version
from bench.report import Figure, Result, git_rev, machine_info, print_table, versions, write_json

# Every scenario, in the order a full run takes them: the machine's limits and the peer to beat
# first, then orderflow.
SCENARIOS = (
    "limits",
    "typical_faust",
    "pipeline",
    "http",
    "slow_gateway",
    "two_workers",
    "recovery",
)
NOT_BUILT = "not built yet"

# Ratios computed after the run from figures of the same run (medians), when both are there:
# (name, (scenario, figure) of orderflow, (scenario, figure) of the baseline). A baseline
# scenario names its figures as the orderflow scenario does (bench.measure.closed_series labels).
RATIOS = (
    (
        "orderflow / typical Faust, 0 ms gateway, 1 client",
        ("http", "closed 1 client: throughput"),
        ("typical_faust", "closed 1 client: throughput"),
    ),
    (
        "orderflow / typical Faust, 0 ms gateway, 32 clients",
        ("http", "closed 32 clients: throughput"),
        ("typical_faust", "closed 32 clients: throughput"),
    ),
    (
        "orderflow / typical Faust, 50 ms gateway, 32 clients",
        ("slow_gateway", "50 ms gateway, 32 clients: throughput"),
        ("typical_faust", "50 ms gateway, 32 clients: throughput"),
    ),
)
ROOT = Path(__file__).resolve().parents[1]

Scenario = Callable[[BenchContext], Awaitable[list[Figure]]]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="every scenario small: seconds, not minutes"
    )
    p.add_argument(
        "--only",
        default="",
        metavar="NAME,...",
        help=f"these scenarios only ({', '.join(SCENARIOS)})",
    )
    p.add_argument(
        "--reps", type=int, default=None, help="repetitions of each measurement (3; --quick: 1)"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="the JSON result (bench/results/<UTC>.json)"
    )
    p.add_argument("--base-port", type=int, default=21092, help="ports P .. P+99 (default 21092)")
    p.add_argument("--ports", type=int, default=100, help="how many ports from P on (100)")
    p.add_argument(
        "--loadgen-processes",
        type=int,
        default=1,
        metavar="N",
        help="split the HTTP load generator over N processes (when it nears a core by itself)",
    )
    p.add_argument(
        "--bootstrap",
        default="",
        metavar="HOST:PORT",
        help="use this Kafka instead of a fresh broker per scenario (its CPU is not measured)",
    )
    p.add_argument("--work-dir", type=Path, default=None, help="logs and state (.run/bench/<UTC>)")
    return p


def load_scenario(name: str) -> Scenario | None:
    """The ``run`` of ``bench.scenarios.<name>``, or None when that module is not there."""
    module_name = f"bench.scenarios.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return cast(Scenario, module.run)


async def run_scenarios(ctx: BenchContext, names: Sequence[str], result: Result) -> None:
    for name in names:
        ctx.scenario = name
        ctx.partial = []
        try:
            scenario = load_scenario(name)
        except Exception as exc:  # an import error inside the module: report it, go on
            result.scenarios[name] = f"failed: {type(exc).__name__}: {exc}"
            ctx.progress(f"{name}: cannot be loaded: {exc}")
            continue
        if scenario is None:
            result.scenarios[name] = NOT_BUILT
            ctx.progress(f"{name}: {NOT_BUILT}")
            continue
        ctx.progress(f"{name}: starting")
        began = time.monotonic()
        try:
            figures = await scenario(ctx)
        except Exception as exc:
            result.scenarios[name] = f"failed: {type(exc).__name__}: {exc}"
            result.figures.extend(ctx.partial)  # what it measured before failing
            ctx.progress(f"{name}: FAILED after {time.monotonic() - began:.0f}s: {exc}")
            traceback.print_exc()
        except asyncio.CancelledError:  # Ctrl-C: keep what it measured
            result.scenarios[name] = "interrupted"
            result.figures.extend(ctx.partial)
            raise
        else:
            result.figures.extend(figures)
            result.scenarios[name] = "ok"
            ctx.progress(
                f"{name}: done in {time.monotonic() - began:.0f}s, {len(figures)} figure(s)"
            )
        finally:
            # Whatever the scenario left running (it should stop its own) goes before the next.
            await asyncio.to_thread(ctx.procs.stop_all)


def ratios(figures: Sequence[Figure]) -> list[Figure]:
    """The ``RATIOS`` whose two figures this run measured (a ratio of their medians)."""
    by_name = {(f.scenario, f.name): f for f in figures}
    found = []
    for name, ours, theirs in RATIOS:
        if ours in by_name and theirs in by_name and by_name[theirs].median:
            value = by_name[ours].median / by_name[theirs].median
            found.append(Figure("ratios", name, "ratio", [value], note="ratio of the medians"))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        _parser().error(
            f"unknown scenario(s): {', '.join(unknown)} (known: {', '.join(SCENARIOS)})"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work_dir = (args.work_dir or ROOT / ".run" / "bench" / stamp).absolute()
    out = args.out or ROOT / "bench" / "results" / f"{stamp}.json"
    reps = args.reps or (1 if args.quick else 3)
    ctx = BenchContext.create(
        args.base_port,
        reps,
        args.quick,
        work_dir,
        loadgen_processes=args.loadgen_processes,
        ports=args.ports,
        bootstrap=args.bootstrap,
    )
    result = Result(
        figures=[],
        machine=machine_info(),
        versions=versions({"kafka": kafka_version()}),
        git_rev=git_rev(ROOT),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    result.settings["run"] = {
        "quick": args.quick,
        "reps": reps,
        "base_port": args.base_port,
        "ports": args.ports,
        "broker": args.bootstrap or "a fresh single-node KRaft broker per scenario",
        "loadgen_processes": args.loadgen_processes,
        "scenarios": names,
        "work_dir": str(work_dir),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
    }
    ctx.progress(f"bench: {', '.join(names)}; {reps} repetition(s); logs under {work_dir}")
    interrupted = False
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(run_scenarios(ctx, names, result))
    except KeyboardInterrupt:
        interrupted = True
        ctx.progress("interrupted: stopping what the bench started")
    finally:
        ctx.procs.stop_all()
    result.figures += ratios(result.figures)
    result.settings.update(ctx.settings)
    result.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    print()
    print_table(result.figures)
    print(f"spread: min..max over the repetitions; scenarios: {result.scenarios}")
    write_json(result, out)
    print(f"result: {out}")
    if interrupted:
        return 130
    return 1 if any(v.startswith("failed") for v in result.scenarios.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
