"""The bench's bookkeeping: figures (median, min..max spread), the table, the JSON result, the
load generator's percentiles and merge, and the scenario registry (a missing module is reported,
not a crash). Speed itself is never asserted anywhere."""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path

import pytest

import bench.__main__ as bench_main
from bench.__main__ import NOT_BUILT, load_scenario, ratios, run_scenarios
from bench.context import BenchContext
from bench.loadgen import LoadResult, percentile
from bench.procs import PortRange, tree_cpu_seconds, tree_rss_bytes
from bench.report import (
    SPREAD,
    Figure,
    Result,
    machine_info,
    read_json,
    render_table,
    versions,
    write_json,
)


def test_figure_median_and_spread_over_repetitions() -> None:
    figure = Figure("http", "closed 32 clients", "orders/s", [180.0, 210.0, 195.0])
    assert figure.median == 195.0
    assert figure.spread == (180.0, 210.0)
    assert Figure("http", "even", "ms", [1.0, 2.0, 3.0, 10.0]).median == 2.5


def test_figure_without_values_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        Figure("http", "nothing", "orders/s", [])


def test_table_shows_each_figure_with_median_spread_and_unit() -> None:
    table = render_table(
        [
            Figure("http", "closed 1 client", "orders/s", [40.0, 42.0, 41.0]),
            Figure("slow_gateway", "50 ms, 32 clients p99", "ms", [168.0], note="one rep"),
        ]
    )
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["scenario", "figure", "median", "spread"]
    http = next(line for line in lines if line.startswith("http"))
    assert "closed 1 client" in http and " 41 " in http and "40..42" in http
    assert "orders/s" in http
    slow = next(line for line in lines if line.startswith("slow_gateway"))
    assert "168" in slow and "one rep" in slow and ".." not in slow


def test_json_result_round_trips_with_machine_versions_and_settings(tmp_path: Path) -> None:
    result = Result(
        figures=[Figure("http", "closed 32 clients", "orders/s", [176.0, 181.0])],
        machine=machine_info(),
        versions=versions({"kafka": "4.1.2"}),
        settings={"http": {"gateway": "separate sandbox process"}},
        git_rev="abc123",
        scenarios={"http": "ok", "pipeline": NOT_BUILT},
    )
    path = write_json(result, tmp_path / "results" / "run.json")
    data = json.loads(path.read_text())
    assert data["spread"] == SPREAD
    assert data["figures"][0]["median"] == 178.5
    assert data["figures"][0]["spread"] == [176.0, 181.0]
    assert {"cpu_model", "cores", "kernel"} <= set(data["machine"])
    assert {"python", "faust-streaming", "aiokafka", "aiohttp", "msgspec", "kafka"} <= set(
        data["versions"]
    )
    again = read_json(path)
    assert again.figures == result.figures
    assert again.settings == result.settings and again.scenarios == result.scenarios


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]  # 1..100, shuffled order must not matter
    samples.reverse()
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_load_results_of_several_processes_merge() -> None:
    one = LoadResult(
        "open",
        ["http://a"],
        10.0,
        rate=50,
        completed=490,
        offered=500,
        missed=10,
        latencies=[0.01] * 490,
        errors={"post_503": 2},
        statuses={"PAID": 490},
        loadgen_cpu_s=1.5,
        elapsed=20.0,
    )
    two = LoadResult(
        "open",
        ["http://a"],
        10.0,
        rate=50,
        completed=500,
        offered=500,
        latencies=[0.03] * 500,
        errors={"post_503": 1, "get_429": 4},
        statuses={"PAID": 500},
        loadgen_cpu_s=2.5,
        elapsed=19.0,
    )
    merged = LoadResult.merge([one, two])
    assert merged.rate == 100 and merged.offered == 1000 and merged.missed == 10
    assert merged.orders_per_s == 99.0
    assert merged.errors == {"post_503": 3, "get_429": 4}
    assert merged.statuses == {"PAID": 990}
    assert merged.loadgen_cpu_s == 4.0 and merged.loadgen_cpu_share == 0.2  # over 20 s
    assert merged.processes == 2
    assert merged.p50 == 0.03 and merged.max == 0.03


def test_process_tree_cpu_and_rss_of_this_process() -> None:
    sum(n * n for n in range(200_000))  # some CPU to see
    assert tree_cpu_seconds(os.getpid()) > 0
    assert tree_rss_bytes(os.getpid()) > 1_000_000


def test_port_range_hands_out_consecutive_ports_within_the_range() -> None:
    ports = PortRange(base=21170, size=20)
    first = ports.take(2)
    second = ports.take()
    assert 21170 <= first < second < 21190


def test_missing_scenario_module_is_not_built_yet(tmp_path: Path) -> None:
    assert load_scenario("no_such_scenario") is None
    said: list[str] = []
    ctx = BenchContext.create(21170, 1, True, tmp_path, said.append)
    result = Result(figures=[])
    asyncio.run(run_scenarios(ctx, ["no_such_scenario"], result))
    assert result.scenarios == {"no_such_scenario": NOT_BUILT}
    assert any(NOT_BUILT in line for line in said)


def test_ratios_to_the_typical_faust_app_come_from_the_same_run() -> None:
    figures = [
        Figure("http", "closed 32 clients: throughput", "orders/s", [180.0, 176.0, 190.0]),
        Figure("typical_faust", "closed 32 clients: throughput", "orders/s", [470.0, 480.0]),
        Figure("http", "closed 1 client: throughput", "orders/s", [40.0]),  # no baseline: no ratio
    ]
    (ratio,) = ratios(figures)
    assert ratio.scenario == "ratios" and "32 clients" in ratio.name
    assert ratio.median == pytest.approx(180.0 / 475.0)


def test_a_given_broker_is_used_as_is_and_never_stopped(tmp_path: Path) -> None:
    ctx = BenchContext.create(21170, 1, True, tmp_path, lambda _: None, bootstrap="10.0.0.9:9092")
    broker = asyncio.run(ctx.procs.broker())
    assert broker.bootstrap == "10.0.0.9:9092" and broker.pid is None
    ctx.procs.stop_all()  # nothing of ours to stop: no error


def test_a_failing_scenario_keeps_what_it_measured_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def breaks(ctx: BenchContext) -> list[Figure]:
        ctx.measured([Figure("breaks", "closed 1 client: throughput", "orders/s", [40.0])])
        raise RuntimeError("worker exited")

    async def works(ctx: BenchContext) -> list[Figure]:
        return [Figure("works", "x", "ms", [1.0])]

    scenarios = {"breaks": breaks, "works": works}
    monkeypatch.setattr(bench_main, "load_scenario", scenarios.get)
    ctx = BenchContext.create(21170, 1, True, tmp_path, lambda _: None)
    result = Result(figures=[])
    asyncio.run(run_scenarios(ctx, ["breaks", "works"], result))
    assert result.scenarios["breaks"] == "failed: RuntimeError: worker exited"
    assert result.scenarios["works"] == "ok"
    assert [f.scenario for f in result.figures] == ["breaks", "works"]
