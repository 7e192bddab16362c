"""The HTTP edge under abuse, on two real workers: bodies in pieces or badly encoded, forwarding
of encoded bodies and of the owner's headers, readiness, and floods of long-polls.

Every answer must be JSON (never a bare 500), and a flood of long-polls must neither be held
without limit nor starve POSTs, local or forwarded to the owner.
"""

from __future__ import annotations

import gzip
import itertools
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from tests.harness import (
    TEST_API_KEY,
    ManagedProcess,
    forwarded_headers,
    http_json,
    key_order_id,
    poll_until,
    start_sandbox,
    start_worker,
)
from tests.orders_client import order_body

_CAPS = {"ORDERFLOW_MAX_LONG_POLLS": "60", "ORDERFLOW_MAX_LONG_POLLS_PER_CLIENT": "40"}


@pytest.fixture(scope="module")
def pair(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Two workers sharing the partitions; records what the second's /ready said while joining."""
    tmp = tmp_path_factory.mktemp("http")
    sandbox = start_sandbox(tmp)
    workers: list[ManagedProcess] = []
    try:
        workers.append(
            start_worker(tmp, kafka_bootstrap, sandbox.meta["url"], name="edge", extra=_CAPS)
        )
        workers.append(
            start_worker(
                tmp,
                kafka_bootstrap,
                sandbox.meta["url"],
                name="owner",
                extra=_CAPS,
                wait_ready=False,
            )
        )
        seen = _ready_answers_until_200(workers[1].meta["url"])
        urls = [w.meta["url"] for w in workers]
        poll_until(lambda: all(_ready(u) for u in urls), 90, 0.3, "both workers ready")
        yield {"edge": urls[0], "owner": urls[1], "ready_seen": seen}
    finally:
        for worker in reversed(workers):
            worker.stop()
        sandbox.stop()


def _ready(url: str) -> bool:
    try:
        return http_json("GET", f"{url}/ready", timeout=5)[0] == 200
    except OSError:
        return False


def _ready_answers_until_200(url: str) -> list[tuple[int, Any, str | None]]:
    seen: list[tuple[int, Any, str | None]] = []

    def check() -> bool:
        try:
            status, body, headers = http_json("GET", f"{url}/ready", timeout=5)
        except OSError:
            return False  # not listening yet
        seen.append((status, body, headers.get("Retry-After")))
        return status == 200

    poll_until(check, 120, 0.05, "the joining worker to be ready")
    return seen


def _owned_by_other_worker(edge: str, order_id: str) -> bool:
    """The edge refuses (503) a forwarded request for an order it does not own; 404 if it owns."""
    status, _, _ = http_json(
        "GET", f"{edge}/orders/{order_id}", headers=forwarded_headers("GET", f"/orders/{order_id}")
    )
    assert status in (404, 503), status
    return status == 503


def _key_owned_elsewhere(edge: str, prefix: str) -> str:
    for i in itertools.count():
        key = f"{prefix}-{uuid.uuid4()}-{i}"
        if _owned_by_other_worker(edge, key_order_id(key)):
            return key
    raise AssertionError("unreachable")


def _raw_http(url: str, head: bytes, *segments: bytes, pause: float = 0.3) -> tuple[int, Any]:
    """Send a request in separate TCP segments, pausing between them (the fault)."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head)
        for i, segment in enumerate(segments):
            if i:
                time.sleep(pause)
            sock.sendall(segment)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    header, _, body = answer.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    assert b"content-type: application/json" in header.lower(), answer[:400]
    return status, orjson.loads(body)


def _post_head(headers: dict[str, str]) -> bytes:
    lines = [
        "POST /orders HTTP/1.1",
        "Host: test",
        "Connection: close",
        "Content-Type: application/json",
        f"Authorization: Bearer {TEST_API_KEY}",
    ] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_body_sent_in_two_tcp_segments_is_read_whole(pair: dict[str, Any]) -> None:
    items = [
        {"sku": f"SKU-{i:03d}-" + "x" * 50, "quantity": 1, "unit_amount": 100} for i in range(40)
    ]
    body = orjson.dumps(order_body() | {"items": items})  # about 3 KB
    assert len(body) > 3000
    head = _post_head({"Content-Length": str(len(body)), "Idempotency-Key": str(uuid.uuid4())})
    status, answer = _raw_http(pair["edge"], head, body[:1400], body[1400:])
    assert status == 201, answer


def test_chunked_body_without_length_is_read_whole(pair: dict[str, Any]) -> None:
    body = orjson.dumps(order_body())
    head = _post_head({"Transfer-Encoding": "chunked", "Idempotency-Key": str(uuid.uuid4())})
    chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:30], body[30:])]
    status, answer = _raw_http(pair["edge"], head, chunks[0], chunks[1] + b"0\r\n\r\n")
    assert status == 201, answer


def test_chunked_body_over_the_limit_is_json_413(pair: dict[str, Any]) -> None:
    head = _post_head({"Transfer-Encoding": "chunked"})
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    status, answer = _raw_http(pair["edge"], head, chunk * 5 + b"0\r\n\r\n")
    assert status == 413
    assert answer["problems"][0]["code"] == "too_large"


def test_undecodable_gzip_body_is_json_400_not_a_bare_500(pair: dict[str, Any]) -> None:
    junk = b"definitely not gzip"
    head = _post_head({"Content-Length": str(len(junk)), "Content-Encoding": "gzip"})
    status, answer = _raw_http(pair["edge"], head, junk)
    assert status == 400
    assert answer["problems"][0]["field"] == "Content-Encoding"


def test_unsupported_content_encoding_is_json_415(pair: dict[str, Any]) -> None:
    body = orjson.dumps(order_body())
    head = _post_head({"Content-Length": str(len(body)), "Content-Encoding": "compress"})
    status, answer = _raw_http(pair["edge"], head, body)
    assert status == 415
    assert answer["problems"][0]["field"] == "Content-Encoding"


def test_gzip_keyed_post_forwarded_to_the_owner_keeps_location_and_replay_header(
    pair: dict[str, Any],
) -> None:
    key = _key_owned_elsewhere(pair["edge"], "gzip")
    body = gzip.compress(orjson.dumps(order_body()))
    headers = {"Idempotency-Key": key, "Content-Encoding": "gzip"}
    first = http_json("POST", f"{pair['edge']}/orders", body, headers)
    assert first[0] == 201, first
    order_id = first[1]["order_id"]
    assert order_id == key_order_id(key)
    assert first[2]["Location"] == f"/orders/{order_id}"
    again = http_json("POST", f"{pair['edge']}/orders", body, headers)
    assert again[0] == 201, again
    assert again[2]["Idempotent-Replayed"] == "true"
    assert again[2]["Location"] == f"/orders/{order_id}"


def test_ready_answered_503_with_retry_after_while_the_worker_joined(pair: dict[str, Any]) -> None:
    not_ready = [s for s in pair["ready_seen"] if s[0] != 200]
    assert not_ready, pair["ready_seen"]
    # /ready also names the gateway in use (since fail-closed configuration)
    assert all(s[0] == 503 and s[1]["status"] == "not_ready" and s[2] == "1" for s in not_ready), (
        not_ready
    )


def test_long_poll_flood_gets_429s_while_posts_still_succeed(pair: dict[str, Any]) -> None:
    edge = pair["edge"]
    unknown = ["ord_" + uuid.uuid4().hex for _ in range(150)]  # about half owned by the other

    def long_poll(order_id: str) -> tuple[int, Any, dict[str, str]]:
        return http_json("GET", f"{edge}/orders/{order_id}?wait=15", timeout=60)

    forwarded_key = _key_owned_elsewhere(edge, "flood")
    with ThreadPoolExecutor(len(unknown)) as pool:
        polls = [pool.submit(long_poll, order_id) for order_id in unknown]
        # The first refusals come back at once; the polls still held keep their slots.
        poll_until(lambda: sum(p.done() for p in polls) >= 100, 30, what="refused long-polls")
        local = http_json(
            "POST",
            f"{edge}/orders",
            order_body(),
            {"Idempotency-Key": str(uuid.uuid4())},
            timeout=30,
        )
        forwarded = http_json(
            "POST", f"{edge}/orders", order_body(), {"Idempotency-Key": forwarded_key}, timeout=30
        )
        held_while_posting = sum(not p.done() for p in polls)
        answers = [p.result() for p in polls]
    refused = [a for a in answers if a[0] == 429]
    assert len(refused) == len(unknown) - 40, sorted(a[0] for a in answers)
    assert local[0] == 201, local
    assert forwarded[0] == 201, forwarded
    assert held_while_posting > 0  # the POSTs really ran beside a flood in flight
    assert all(a[1]["error"] == "too_many_long_polls" for a in refused)
    assert all(a[2]["Retry-After"] == "1" for a in refused)
    assert {a[0] for a in answers} == {404, 429}, [a for a in answers if a[0] not in (404, 429)]
