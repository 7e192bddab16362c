"""A client's webhook receiver for the tests: a real HTTP server (in a thread) that records every
POST and answers 503 while told to fail, 200 otherwise. The system we do not own is the client."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.harness import auth_headers, http_json, poll_until

__all__ = [
    "Received",
    "WebhookReceiver",
    "delete_all_endpoints",
    "forget_endpoints",
    "list_endpoints",
]


@dataclass(frozen=True)
class Received:
    """One POST as it arrived: its headers, raw body, and what the receiver answered."""

    headers: dict[str, str]
    body: bytes
    answered: int
    at: float = 0.0  # time.time() when it arrived

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class WebhookReceiver:
    """``with WebhookReceiver() as receiver:`` serves ``receiver.url`` on 127.0.0.1."""

    def __init__(self, fail_rate: float = 0.0, seed: int = 0) -> None:
        self.failing = False
        # Besides ``failing``: this share of POSTs answered 503 at random (seeded).
        self.fail_rate = fail_rate
        self._rng = random.Random(seed)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    unlucky = receiver._rng.random() < receiver.fail_rate
                    status = 503 if receiver.failing or unlucky else 200
                    receiver.received.append(
                        Received(dict(self.headers), body, status, time.time())
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def accepted(self) -> list[Received]:
        """The POSTs answered 200."""
        return [r for r in self.snapshot() if r.answered == 200]


def list_endpoints(url: str) -> list[dict[str, Any]]:
    """The test client's endpoints (503 while the worker still reads them: polled)."""

    def listed() -> list[dict[str, Any]] | None:
        status, body, _ = http_json("GET", f"{url}/webhooks", headers=auth_headers())
        assert status in (200, 503), body
        return [body] if status == 200 else None

    return list(poll_until(listed, 30, 0.2, "GET /webhooks")[0]["endpoints"])


def delete_all_endpoints(url: str) -> None:
    """The test client's endpoints left by earlier tests on this broker go first."""
    for endpoint in list_endpoints(url):
        status, body, _ = http_json(
            "DELETE", f"{url}/webhooks/{endpoint['endpoint_id']}", headers=auth_headers()
        )
        assert status == 204, body


def forget_endpoints(url: str) -> None:
    """At a test's end, best effort: the test client's endpoints go, so that the workers of later
    tests on the session broker (the same app and topics) do not deliver to them."""
    with contextlib.suppress(AssertionError, OSError):
        delete_all_endpoints(url)
