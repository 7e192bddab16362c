"""Orders per second with tracing off, then on (OTLP/HTTP to a collector stub that drops what it
is sent), on a private broker, one worker and the sandbox gateway. A figure, not a test.

Each variant (alternated ``--rounds`` times): a fresh worker, ``--warmup`` orders, then ``--orders`` POSTed by ``--clients``
concurrent clients; the rate is orders / seconds from the first POST to the last order terminal.

    .venv/bin/python scripts/tracing_overhead.py --orders 400 --base-port 22150
"""

from __future__ import annotations

import argparse
import http.server
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness import start_sandbox, start_worker
from tests.orders_client import get_terminal, order_body, place

from orderflow.tools.localkafka import KafkaCluster


class _Drop(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _run(url: str, orders: int, clients: int) -> float:
    def one(_: int) -> None:
        order_id = place(url, order_body())["order_id"]
        assert get_terminal(url, order_id)["status"] == "PAID"

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(orders)))
    return orders / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="off, on, off, on, ... (noise)")
    parser.add_argument("--base-port", type=int, default=22150)
    args = parser.parse_args()
    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Drop)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        cluster = KafkaCluster(state_dir=tmp / "kafka", base_port=args.base_port)
        cluster.start()
        sandbox = start_sandbox(tmp)
        rates: dict[str, list[float]] = {"off": [], "otlp": []}
        try:
            for n, mode in enumerate(["off", "otlp"] * args.rounds):
                extra = {"ORDERFLOW_TRACING": mode, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
                worker = start_worker(tmp, cluster.bootstrap, sandbox.meta["url"], name=f"{mode}{n}",
                                      extra=extra)  # fmt: skip
                try:
                    _run(worker.meta["url"], args.warmup, args.clients)
                    rates[mode].append(_run(worker.meta["url"], args.orders, args.clients))
                finally:
                    worker.stop()
                print(f"tracing {mode}: {rates[mode][-1]:.1f} orders/s", flush=True)
        finally:
            sandbox.stop()
            cluster.stop()
            collector.shutdown()
    off, on = (sum(rates[m]) / len(rates[m]) for m in ("off", "otlp"))
    print(f"mean off {off:.1f}, on {on:.1f} orders/s; on/off: {on / off:.2f}")


if __name__ == "__main__":
    main()
