"""Baseline: a bare aiohttp server speaking orderflow's order API, with no Kafka behind it.

``POST /orders`` reads the JSON body, computes the amount and answers ``201`` with the order
``PENDING``, as orderflow's POST does; ``GET /orders/{id}[?wait=S]`` answers it ``PAID`` at once
(never waits), from a dict (``404`` for an unknown id). So the load generator makes the same two
requests per order as against orderflow. No validation beyond what the arithmetic needs, no API
keys, no Kafka, no gateway: what this machine's HTTP stack serves under the bench's load
generator, the ceiling for any HTTP scenario. Run as its own process so its CPU is its own:

    python -m bench.baselines.bare_aiohttp --port 22110
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

from aiohttp import web

__all__ = ["main", "make_app"]

_ORDERS = web.AppKey("orders", dict[str, dict[str, Any]])


async def _post_order(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
        amount = sum(int(i["quantity"]) * int(i["unit_amount"]) for i in body["items"])
        currency = str(body["currency"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "invalid_request"}, status=400)
    order_id = f"ord_{uuid.uuid4().hex}"
    order = {"order_id": order_id, "status": "PAID", "amount": amount, "currency": currency}
    request.app[_ORDERS][order_id] = order
    return web.json_response(
        {**order, "status": "PENDING"}, status=201, headers={"Location": f"/orders/{order_id}"}
    )


async def _get_order(request: web.Request) -> web.Response:
    # Every order is terminal by its first GET, so ?wait= never has to wait.
    order = request.app[_ORDERS].get(request.match_info["order_id"])
    if order is None:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response(order)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    """The application: the order routes over an in-memory dict, and ``/health``."""
    app = web.Application()
    app[_ORDERS] = {}
    app.router.add_post("/orders", _post_order)
    app.router.add_get("/orders/{order_id}", _get_order)
    app.router.add_get("/health", _health)
    return app


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1:PORT until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m bench.baselines.bare_aiohttp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    print(f"bare_aiohttp listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(make_app(), host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
