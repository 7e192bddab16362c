"""Time a hand-over with and without standby replicas: how long a moved partition's orders are
unreadable when their owner leaves.

Per variant (ORDERFLOW_STANDBY_REPLICAS=0 and 1), on a private broker: OrderDB's changelog gets
``--history`` settled orders (a long-running deployment), a first worker recovers them, a second
joins, orders keep flowing, then the first stops (SIGTERM). Measured: seconds from the SIGTERM until
every sampled order answers 200 at the second worker, the second's recovery (from Faust's
"Executing _on_partitions_assigned" to "Worker ready"), and how many changelog records that
recovery read.

    .venv/bin/python scripts/standby_handover.py --history 100000 --base-port 21150
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import http_json, poll_until, start_sandbox, start_worker
from tests.orders_client import get_terminal, order_body, place

from orderflow.domain.events import rfc3339
from orderflow.domain.order import Order, OrderStatus
from orderflow.domain.validation import LineItem
from orderflow.tools.localkafka import KafkaCluster
from orderflow.wire import order_to_bytes
from orderflow.topics import changelog_topic


async def write_history(bootstrap: str, count: int) -> list[str]:
    now = rfc3339(time.time())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        ids, sent = [], []
        for _ in range(count):
            order_id = "ord_" + uuid.uuid4().hex
            order = Order(order_id, "c-1", "EUR", (LineItem("SKU-1", 1, 500),), 500, "tok_visa",
                          OrderStatus.PAID, now, now, "fingerprint", "request", charge_id="ch_h")  # fmt: skip
            sent.append(await producer.send(changelog_topic("OrderDB"), key=order_id.encode(),
                                            value=order_to_bytes(order)))  # fmt: skip
            ids.append(order_id)
        await asyncio.gather(*sent)
        return ids
    finally:
        await producer.stop()


STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def recovery_after(log: str, since: float) -> tuple[float | None, int]:
    """Seconds of the first recovery that started after ``since``, and records it read."""
    started = None
    read = 0
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = STAMP.match(line)
        if not m:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if at < since:
            continue
        if "Executing _on_partitions_assigned" in line and started is None:
            started = at
        if started is not None and "active offsets at start of reading" in line:
            starts = _table(lines, i)
            highs = _last_highwaters(lines, i)
            read = sum(max(0, highs.get(k, 0) - v) for k, v in starts.items())
        if started is not None and "Worker ready" in line:
            return at - started, read
    return None, read


def _table(lines: list[str], i: int) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    topic = ""
    for line in lines[i + 1 : i + 40]:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 3 and cells[2].lstrip("-").isdigit():
            topic = topic if cells[0] == "〃" else cells[0]
            out[(topic, cells[1])] = int(cells[2])
        elif line.startswith("[") and out:
            break
    return out


def _last_highwaters(lines: list[str], i: int) -> dict[tuple[str, str], int]:
    for j in range(i, -1, -1):
        if "Highwater for active changelog partitions" in lines[j]:
            return _table(lines, j)
    return {}


def run(standbys: int, history: int, base_port: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"handover-{standbys}-"))
    cluster = KafkaCluster(state_dir=tmp / "kafka", base_port=base_port)
    cluster.start()
    procs = []
    try:
        sandbox = start_sandbox(tmp)
        procs.append(sandbox)
        gw = sandbox.meta["url"]
        extra = {"ORDERFLOW_STANDBY_REPLICAS": str(standbys)}
        start_worker(tmp, cluster.bootstrap, gw, name="creator", extra=extra).stop()
        ids = asyncio.run(write_history(cluster.bootstrap, history))
        first = start_worker(tmp, cluster.bootstrap, gw, name="first", extra=extra, timeout=600)
        procs.append(first)
        second = start_worker(tmp, cluster.bootstrap, gw, name="second", extra=extra, timeout=600)
        procs.append(second)
        urls = [first.meta["url"], second.meta["url"]]
        poll_until(lambda: all(http_json("GET", f"{u}/ready", timeout=5)[0] == 200 for u in urls),
                   600, 0.3, "both ready")  # fmt: skip
        # Orders keep flowing for a while (the standby, if any, reads meanwhile).
        with ThreadPoolExecutor(4) as pool:
            placed = list(pool.map(lambda i: place(urls[i % 2], order_body()), range(40)))
        for order in placed:
            get_terminal(urls[1], order["order_id"])
        sample = ids[:: max(1, len(ids) // 64)] + [o["order_id"] for o in placed]
        stopped_at, t0 = time.time(), time.monotonic()
        first.stop()  # returns once the worker exited; its partitions may have moved already

        def all_readable() -> bool:
            return all(http_json("GET", f"{urls[1]}/orders/{o}", timeout=10)[0] == 200
                       for o in sample)  # fmt: skip

        poll_until(all_readable, 600, 0.1, "every sampled order readable")
        readable_after = time.monotonic() - t0
        took, read = recovery_after(second.log_path.read_text(errors="replace"), stopped_at)
        print(f"standbys={standbys} history={history}: readable again {readable_after:.1f}s after "
              f"the stop; recovery {took if took is None else round(took, 1)}s, "
              f"{read} changelog records read", flush=True)  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--base-port", type=int, default=21150)
    parser.add_argument("--standbys", type=int, nargs="*", default=[0, 1])
    args = parser.parse_args()
    for standbys in args.standbys:
        run(standbys, args.history, args.base_port)


if __name__ == "__main__":
    main()
