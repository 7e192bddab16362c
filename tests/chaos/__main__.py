"""``python -m tests.chaos``: one chaos run; exit 1 when the audit finds anything wrong."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.chaos.runner import ChaosConfig, run
from tests.chaos.schedule import PRESETS, ScheduleError, build_schedule


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="Post orders while workers, brokers and the gateway fail; audit the result.",
    )
    p.add_argument("--orders", type=int, default=500, help="orders to post (default 500)")
    p.add_argument("--rate", type=float, default=20.0, help="orders per second (default 20)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--brokers",
        type=int,
        choices=(1, 3),
        default=1,
        help="1: a single broker; 3: a KRaft cluster, replication 3",
    )
    p.add_argument(
        "--controllers",
        type=int,
        choices=(0, 1, 3),
        default=None,
        help="dedicated KRaft controller nodes; 0: the brokers are the controllers "
        "(default: 3 with --brokers 3, as production clusters run, else 0)",
    )
    p.add_argument(
        "--faults",
        default="small",
        help=f"a preset ({', '.join(PRESETS)}) or KIND@SECONDS[+DURATION],... (default small)",
    )
    p.add_argument("--seed", type=int, default=1, help="drives the load and the faults")
    p.add_argument(
        "--out", type=Path, default=None, help="result JSON (default WORK_DIR/result.json)"
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="broker/worker/sandbox data and logs (default .run/chaos/<time>)",
    )
    p.add_argument(
        "--drain-deadline",
        type=float,
        default=180.0,
        help="seconds to wait for every accepted order to be terminal",
    )
    p.add_argument(
        "--base-port",
        type=int,
        default=29092,
        help="first broker port (a cluster uses 2 ports per node from here)",
    )
    p.add_argument(
        "--gateway-key-ttl",
        type=float,
        default=60.0,
        help="seconds before the sandbox's idempotency keys expire, with strict mode "
        "on, when the sandbox supports them (0: its defaults)",
    )
    p.add_argument(
        "--fail-on-violations",
        action="store_true",
        help="strict-mode gateway violations fail the run (default: reported)",
    )
    p.add_argument(
        "--sandbox-arg",
        action="append",
        default=[],
        help="extra argument for `orderflow sandbox-gateway` (repeatable)",
    )
    p.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra ORDERFLOW_* setting for every worker (repeatable)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        build_schedule(args.faults, args.orders / args.rate, args.seed)
    except ScheduleError as exc:
        _parser().error(str(exc))
    env = []
    for item in args.worker_env:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("ORDERFLOW_"):
            _parser().error(f"--worker-env {item!r}: expected ORDERFLOW_NAME=VALUE")
        env.append((name, value))
    work_dir = args.work_dir or Path(".run/chaos") / time.strftime("%Y%m%d-%H%M%S")
    cfg = ChaosConfig(
        orders=args.orders,
        rate=args.rate,
        workers=args.workers,
        brokers=args.brokers,
        controllers=(3 if args.brokers == 3 else 0)
        if args.controllers is None
        else args.controllers,
        faults=args.faults,
        seed=args.seed,
        out=args.out or work_dir / "result.json",
        work_dir=work_dir,
        drain_deadline_s=args.drain_deadline,
        base_port=args.base_port,
        gateway_key_ttl_s=args.gateway_key_ttl,
        sandbox_args=tuple(args.sandbox_arg),
        worker_env=tuple(env),
        fail_on_violations=args.fail_on_violations,
    )
    # A SIGTERM (a CI timeout, ``kill``) unwinds like Ctrl-C: every broker, worker and gateway
    # of the run is stopped, not left holding the ports.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return 0 if run(cfg).ok else 1


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
