"""Summarise a py-spy ``--format raw`` profile: top frames by inclusive time, self time by group.

.venv/bin/python -m bench.dev.summarize .run/prof/base.txt [--top 15] [--orders N]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

GROUPS = (
    ("aiokafka", ("aiokafka/", "kafka/")),
    ("faust/mode", ("faust/", "mode/", "venusian", "yarl")),
    ("aiohttp", ("aiohttp/", "multidict", "yarl/")),
    ("logging", ("logging/", "orderflow/logs.py")),
    ("json/msgspec", ("json/", "orjson", "msgspec", "orderflow/wire/")),
    ("orderflow", ("orderflow/",)),
    ("asyncio/loop", ("asyncio/", "uvloop", "selectors", "socket")),
    ("rocksdb", ("rocksdict",)),
    ("prometheus", ("prometheus_client/",)),
)


IDLE = (
    "EpollSelector.select",
    "Condition.wait",
    "Event.wait",
    "Thread._wait_for_tstate_lock",
    "select (",
    "epoll_wait",
    "sleep (",
)


def group(frame: str) -> str:
    for name, needles in GROUPS:
        if any(n in frame for n in needles):
            return name
    return "other"


_LOC = re.compile(r"^(.*) \((.*?):\d+\)$")


def strip_line(frame: str) -> str:
    m = _LOC.match(frame)
    return f"{m.group(1)} ({m.group(2)})" if m else frame


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--orders", type=int, default=0, help="orders in the window (ms/order)")
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = 0
    idle = 0
    threads: Counter[str] = Counter()
    with open(args.path) as profile:
        lines = profile.readlines()
    for line in lines:
        stack, _, count_s = line.rstrip("\n").rpartition(" ")
        count = int(count_s)
        frames = [strip_line(f) for f in stack.split(";")]
        if any(frames[-1].startswith(i) for i in IDLE):
            idle += count
            continue
        threads[frames[0]] += count
        total += count
        for f in set(frames):
            inclusive[f] += count
        own[frames[-1]] += count
        # Attribute the sample to the innermost frame that is not the loop/stdlib plumbing.
        groups[group(_innermost_owner(frames))] += count
    print(f"samples: {total} busy, {idle} idle (not counted)")
    per = (1000 / args.rate / args.orders) if args.orders else None

    def fmt(n: int) -> str:
        extra = f"  {n * per:.3f} ms/order" if per else ""
        return f"{100 * n / total:5.1f}%{extra}"

    print("-- threads")
    for name, n in threads.most_common():
        print(f"{fmt(n)}  {name}")
    print("-- groups (sample's innermost library frame)")
    for name, n in groups.most_common():
        print(f"{fmt(n)}  {name}")
    print(f"-- top {args.top} by inclusive (own+children), skipping the loop's entry frames")
    shown = 0
    for f, n in inclusive.most_common():
        if n > 0.9 * total:
            continue
        print(f"{fmt(n)}  own {100 * own[f] / total:4.1f}%  {f}")
        shown += 1
        if shown >= args.top:
            break
    print(f"-- top {args.top} by own time")
    for f, n in own.most_common(args.top):
        print(f"{fmt(n)}  {f}")


def _innermost_owner(frames: list[str]) -> str:
    for f in reversed(frames):
        g = group(f)
        if g not in ("other", "asyncio/loop"):
            return f
    return frames[-1]


if __name__ == "__main__":
    main()
