"""One chaos run: start the rig, post the load while the faults play, drain, audit, report."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.audit import (
    Verdict,
    audit,
    collect,
    order_states,
    payment_states,
    render_table,
    settled,
)
from tests.chaos.availability import FaultWindow, availability, render_availability
from tests.chaos.load import LoadGenerator, LoadSettings, make_intents
from tests.chaos.rig import Rig, RigSettings
from tests.chaos.schedule import Fault, build_schedule
from tests.chaos.webhooks import FAIL_RATE, WebhookCheck, receiver_outage, register
from tests.harness import http_json
from tests.webhook_receiver import WebhookReceiver

__all__ = ["ChaosConfig", "RunResult", "run"]

# What each gateway fault sets on the sandbox (merged over the faults it had at the start).
_GATEWAY_FAULTS: dict[str, dict[str, float]] = {
    "gateway_outage": {"error_rate": 1.0},
    "gateway_5xx": {"error_rate": 0.5},
    "gateway_drop": {"drop_response_rate": 0.5},
    # gateway_latency: latency_ms is set from the worker's gateway timeout (see _gateway_fault)
}
# A gateway fault burst lasts its planned seconds and, if fewer charges than this met it by then,
# up to this much longer (the pipeline may be paused by another fault).
_GATEWAY_FAULT_MIN_CHARGES = 3
_GATEWAY_FAULT_EXTENSION_S = 30.0


@dataclass(frozen=True)
class ChaosConfig:
    """The parameters of a run (the CLI's flags)."""

    orders: int = 500
    rate: float = 20.0
    workers: int = 2
    brokers: int = 1
    controllers: int = 0
    faults: str = "small"
    seed: int = 1
    out: Path = Path(".run/chaos/result.json")
    work_dir: Path = Path(".run/chaos/run")
    drain_deadline_s: float = 180.0
    base_port: int = 29092
    gateway_key_ttl_s: float = 60.0
    # Strict-mode violations are charge requests for keys whose answer was delivered: a worker
    # killed or frozen between the answer and its table write makes them too, so by default
    # they are reported, and the money checks (charges per order, with expiring keys) decide.
    fail_on_violations: bool = False
    ready_timeout_s: float = 180.0  # a (re)started worker must answer /ready within this
    sandbox_args: tuple[str, ...] = ()
    worker_env: tuple[tuple[str, str], ...] = ()


@dataclass
class FaultRecord:
    """A fault as it happened: when (seconds after the load started), and what it did."""

    kind: str
    planned_at: float
    started_at: float = 0.0
    started_utc: str = ""  # wall clock, to find the fault in the workers' logs
    ended_at: float = 0.0
    ok: bool = False
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class RunResult:
    """The result file's content."""

    config: dict[str, Any]
    faults: list[FaultRecord]
    figures: dict[str, Any]
    failures: dict[str, list[str]]
    worker_errors: list[str]
    examples: dict[str, dict[str, Any]]
    timings: dict[str, float | None]
    ok: bool
    # What clients felt during each fault (tests/chaos/availability.py): figures, not checks.
    availability: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    def log(self, message: str) -> None:
        print(f"[{self.now():7.1f}s] {message}", file=sys.stderr, flush=True)


async def _gateway_fault(rig: Rig, fault: Fault) -> dict[str, Any]:
    """Set the fault on the sandbox for its duration, then put the starting faults back."""
    url = rig.gateway_url

    def call(method: str, path: str, body: Any = None) -> Any:
        status, answer, _ = http_json(method, f"{url}{path}", body, timeout=10)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {answer}")
        return answer

    base = await asyncio.to_thread(call, "GET", "/_admin/faults")
    change = dict(_GATEWAY_FAULTS.get(fault.kind, {}))
    if fault.kind == "gateway_latency":
        change = {"latency_ms": rig.settings.gateway_timeout_s * 1000 * 1.5}

    def charges_so_far() -> int:
        return int(call("GET", "/_admin/stats").get("charge_requests", 0))

    before = await asyncio.to_thread(charges_so_far)
    started = time.monotonic()
    await asyncio.to_thread(call, "POST", "/_admin/faults", {**base, **change})
    try:
        await asyncio.sleep(fault.duration)
        # A burst that met no charge tested nothing: when it falls in a pause of the pipeline
        # (a rebalance after a worker kill), it stays on until charges meet it, within a bound.
        while time.monotonic() - started < fault.duration + _GATEWAY_FAULT_EXTENSION_S:
            if await asyncio.to_thread(charges_so_far) - before >= _GATEWAY_FAULT_MIN_CHARGES:
                break
            await asyncio.sleep(0.25)
    finally:
        await asyncio.to_thread(call, "POST", "/_admin/faults", base)
    after = await asyncio.to_thread(charges_so_far)
    # Proof that the fault met real traffic: charge requests arrived while it was set.
    return {
        "set": change,
        "seconds": round(time.monotonic() - started, 1),
        "charge_requests_during": after - before,
    }


async def _run_lane(
    rig: Rig, faults: list[Fault], clock: _Clock, load_t0: float, records: list[FaultRecord]
) -> None:
    for fault in faults:
        delay = load_t0 + fault.at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        record = FaultRecord(
            fault.kind,
            fault.at,
            started_at=clock.now(),
            started_utc=time.strftime("%H:%M:%S", time.gmtime()),
        )
        records.append(record)
        clock.log(
            f"fault {fault.kind} starts at {record.started_utc} UTC "
            f"(planned at +{fault.at:.0f}s of load)"
        )
        try:
            if fault.lane == "gateway":
                record.detail = await _gateway_fault(rig, fault)
            else:
                record.detail = await asyncio.to_thread(getattr(rig, fault.kind))
            record.ok = True
        except Exception as exc:  # a fault that could not be played is reported, not fatal
            record.error = f"{type(exc).__name__}: {exc}"[:2000]
        record.ended_at = clock.now()
        clock.log(
            f"fault {fault.kind} {'done' if record.ok else 'FAILED'}: "
            f"{record.detail or record.error}"
        )


async def _supervise(
    rig: Rig, clock: _Clock, restarts: list[dict[str, Any]], every: float = 2.0
) -> None:
    """The liveness probe of a production supervisor, for the whole run (cancelled at its end)."""
    while True:
        await asyncio.sleep(every)
        for restart in await asyncio.to_thread(rig.liveness_probe):
            restart["at"] = clock.now()
            restarts.append(restart)
            clock.log(f"liveness: restarted {restart['worker']} ({restart['health']})")


async def _report_progress(load: LoadGenerator, clock: _Clock, every: float = 5.0) -> None:
    while True:
        await asyncio.sleep(every)
        clock.log(load.progress())


def _undecided(order: dict[str, Any], payments: list[dict[str, Any]] | None) -> bool:
    """A cancelled order whose charge may still land: its payment is not decided yet."""
    last = (payments or [{}])[-1]
    return order.get("status") == "CANCELLED" and last.get("status") in ("ATTEMPTING", "UNKNOWN")


async def _drain(rig: Rig, accepted: set[str], deadline_s: float, clock: _Clock) -> float | None:
    """Poll OrderDB's changelog until every accepted order is terminal and owed nothing (its
    refunds answered, a cancelled order's racing charge given back); seconds, or None."""
    began = time.monotonic()
    while True:
        states = await asyncio.to_thread(order_states, rig.bootstrap)
        payments = await asyncio.to_thread(payment_states, rig.bootstrap)
        pending = [
            o
            for o in accepted
            if not states.get(o)
            or not settled(states[o][-1])
            or _undecided(states[o][-1], payments.get(o))
        ]
        if not pending:
            return round(time.monotonic() - began, 1)
        if time.monotonic() - began > deadline_s:
            clock.log(
                f"drain: {len(pending)} order(s) still not terminal at the deadline, "
                f"e.g. {pending[:3]}"
            )
            return None
        clock.log(f"drain: {len(pending)} order(s) not terminal yet")
        await asyncio.sleep(3)


async def _drain_webhooks(
    receiver: WebhookReceiver,
    secret: str,
    rig: Rig,
    accepted: set[str],
    deadline_s: float,
    clock: _Clock,
) -> WebhookCheck:
    """Wait until every accepted order's final state, and every event before it, reached the
    receiver (or the deadline): an earlier event refused may still be waiting for its retry."""
    began = time.monotonic()
    while True:
        states = await asyncio.to_thread(order_states, rig.bootstrap)
        finals = {o: states[o][-1] for o in accepted if states.get(o)}
        check = WebhookCheck(receiver.snapshot(), secret, finals)
        missing, gaps = check.undelivered(), check.gaps()
        if not (missing or gaps) or time.monotonic() - began > deadline_s:
            clock.log(
                f"webhooks: {len(finals) - len(missing)} final state(s) delivered, "
                f"{len(gaps)} order(s) with an event missing"
            )
            return check
        clock.log(
            f"webhooks: {len(missing)} order(s) whose final state is not delivered yet, "
            f"{len(gaps)} with an earlier event not delivered yet"
        )
        await asyncio.sleep(3)


async def _run(cfg: ChaosConfig, rig: Rig, clock: _Clock, receiver: WebhookReceiver) -> RunResult:
    load_seconds = cfg.orders / cfg.rate
    secret = await asyncio.to_thread(register, rig.worker_urls()[0], receiver.url)
    clock.log(f"webhook receiver at {receiver.url} registered")
    schedule = build_schedule(cfg.faults, load_seconds, cfg.seed)
    clock.log(f"schedule: {', '.join(f'{f.kind}@{f.at:.0f}s' for f in schedule) or 'no faults'}")
    intents = make_intents(cfg.orders, cfg.seed)
    load = LoadGenerator(intents, LoadSettings(rate=cfg.rate), rig.worker_urls, cfg.seed, clock.log)
    records: list[FaultRecord] = []
    load_t0 = time.monotonic()
    lanes = [
        _run_lane(rig, [f for f in schedule if f.lane == lane], clock, load_t0, records)
        for lane in ("process", "gateway")
    ]
    progress = asyncio.create_task(_report_progress(load, clock))
    restarts: list[dict[str, Any]] = []
    supervisor = asyncio.create_task(_supervise(rig, clock, restarts))
    try:
        _, outage, *_ = await asyncio.gather(
            load.run(), receiver_outage(receiver, load_seconds), *lanes
        )
    finally:
        progress.cancel()
    clock.log(load.progress())
    load_end = clock.now()
    last_fault_end = max([r.ended_at for r in records], default=load_end)
    accepted = {i.order_id for i in intents if i.order_id is not None}
    windows = [FaultWindow(r.kind, clock.t0 + r.started_at, clock.t0 + r.ended_at) for r in records]
    felt = availability(load.attempts, windows, load.wall_offset, origin=clock.t0)
    _write_attempts(cfg.work_dir / "attempts.csv", load, clock.t0)
    clock.log(
        f"load done at +{load_end}s, last fault ended at +{last_fault_end}s: draining "
        f"{len(accepted)} accepted order(s)"
    )
    try:
        drained = await _drain(rig, accepted, cfg.drain_deadline_s, clock)
    finally:
        supervisor.cancel()
    drain_done = clock.now()
    hooks = await _drain_webhooks(receiver, secret, rig, accepted, cfg.drain_deadline_s, clock)
    clock.log("auditing: topics, ledger, API")
    evidence = await collect(
        rig.bootstrap, rig.gateway_url, rig.worker_urls(), intents, load.statuses, load.bare_5xx
    )
    verdict: Verdict = audit(evidence, cfg.fail_on_violations)
    failures = {**verdict.failures, **hooks.failures()}
    unplayed = [f"{r.kind}@{r.planned_at}: {r.error}" for r in records if not r.ok]
    if unplayed:
        failures["faults_failed_or_not_recovered"] = unplayed
    log_counts, error_messages = _scan_worker_logs(rig.settings.work_dir)
    figures = {
        **verdict.figures,
        "gateway_mode": rig.sandbox_mode,
        "faults_played": f"{sum(r.ok for r in records)}/{len(schedule)}",
        "gateway_responses_dropped": _dropped_responses(rig, evidence.gateway_stats),
        "time_to_drain_after_last_fault_s": (
            None if drained is None else round(drain_done - last_fault_end, 1)
        ),
        "time_to_drain_after_load_end_s": drained,
        "worker_logs": log_counts,
        "liveness_restarts": len(restarts),
        **hooks.figures(),
        "webhook_receiver_down_s": outage["down_s"],
        "webhook_receiver_fail_rate": FAIL_RATE,
    }
    return RunResult(
        config={
            **asdict(cfg),
            "out": str(cfg.out),
            "work_dir": str(cfg.work_dir),
            "schedule": [asdict(f) for f in schedule],
        },
        faults=records,
        figures=figures,
        failures=failures,
        worker_errors=error_messages,
        examples={
            **verdict.details,
            **{f"webhooks {o}": hooks.gap_story(o) for o in hooks.gaps()[:5]},
        },
        timings={
            "load_s": load_end,
            "last_fault_end_s": last_fault_end,
            "drain_s": drained,
            "total_s": clock.now(),
        },
        ok=not failures,
        availability=felt,
    )


def _write_attempts(path: Path, load: LoadGenerator, origin: float) -> None:
    """Every POST attempt, to recompute the availability figures (times: seconds of the run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write(f"# wall time = start + {origin + load.wall_offset:.3f}\n")
        out.write("start_s,duration_s,outcome,order,first,order_first_s\n")
        for a in load.attempts:
            out.write(
                f"{a.start - origin:.3f},{a.duration:.3f},{a.outcome},{a.order},"
                f"{int(a.first)},{a.order_first - origin:.3f}\n"
            )


_LOG_MARKERS = {
    "stall_nudges": "publishing order.created again",
    "payments_unknown": "UNKNOWN (",
    "command_holes_read_first": "reached the order service before",
    "skipped_offsets_refused": "skipped on the way to the agent",
    "error_lines": "[ERROR]",
    "tracebacks": "Traceback (most recent call last)",
}
_SETTLED = re.compile(r"partitions settled: \d+ of OrderDB, after ([0-9.]+)s unready")


def _scan_worker_logs(work_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Counts of telling lines in every worker's log, how long each worker was unready at each
    rebalance (rebalance + table recovery: ``settle_s``), and the distinct ERROR messages."""
    counts: dict[str, Any] = dict.fromkeys(_LOG_MARKERS, 0)
    settles: list[float] = []
    errors: dict[str, None] = {}
    for path in sorted((work_dir / "workers").glob("worker-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            for name, marker in _LOG_MARKERS.items():
                counts[name] += marker in line
            if (settled := _SETTLED.search(line)) is not None:
                settles.append(float(settled.group(1)))
            if "[ERROR]" in line:
                # Drop the timestamp prefix so repeats of one message count once.
                errors.setdefault(line.split("[ERROR]", 1)[1].strip()[:200], None)
    settles.sort()
    counts["settle_s"] = (
        f"n={len(settles)} p50={settles[len(settles) // 2]:.1f} max={settles[-1]:.1f}"
        if settles
        else "-"
    )
    return counts, list(errors)[:30]


def _dropped_responses(rig: Rig, stats: dict[str, Any]) -> int:
    """Charges the sandbox committed and then answered with a dropped connection.

    From its stats when it counts them, else from its log lines.
    """
    if isinstance(stats.get("dropped_responses"), int):
        return int(stats["dropped_responses"])
    assert rig.sandbox is not None
    text = rig.sandbox.log_path.read_text(errors="replace") if rig.sandbox.log_path.exists() else ""
    return text.count("sandbox fault: dropping the response")


def run(cfg: ChaosConfig) -> RunResult:
    """Start everything, run, audit, stop everything (also on failure); write the result file."""
    clock = _Clock()
    rig = Rig(
        RigSettings(
            work_dir=cfg.work_dir.absolute(),
            workers=cfg.workers,
            brokers=cfg.brokers,
            controllers=cfg.controllers,
            base_port=cfg.base_port,
            seed=cfg.seed,
            sandbox_args=cfg.sandbox_args,
            gateway_key_ttl_s=cfg.gateway_key_ttl_s,
            ready_timeout_s=cfg.ready_timeout_s,
            worker_env=cfg.worker_env,
        )
    )
    try:
        quorum = f" ({cfg.controllers} dedicated controller(s))" if cfg.controllers else ""
        clock.log(
            f"starting {cfg.brokers} broker(s){quorum} on {rig.bootstrap}, the sandbox, "
            f"{cfg.workers} worker(s) in {cfg.work_dir}"
        )
        rig.start()
        clock.log(f"ready: workers {rig.worker_urls()}, gateway {rig.gateway_url}")
        with WebhookReceiver(FAIL_RATE, cfg.seed) as receiver:
            result = asyncio.run(_run(cfg, rig, clock, receiver))
    finally:
        clock.log("stopping every process of the run")
        rig.stop()
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(result.to_json(), indent=2, default=str))
    print(render_table(result.figures, result.failures))
    print(render_availability(result.availability))
    print(f"result: {cfg.out}  (logs: {cfg.work_dir})")
    return result
