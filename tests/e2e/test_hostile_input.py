"""Hostile clients against one running worker (real broker, sandbox gateway): bodies too large
(declared, chunked, a gzip bomb), codings aiohttp would refuse itself, a client trickling bytes,
hundreds of idle connections, and bodies that are not JSON in every way a parser can be fooled.

Every refusal is our JSON (``{"error", "problems"}``), and the worker keeps serving others.
Bodies in pieces and unsupported/undecodable codings: ``tests/integration/test_http_hardening.py``.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import brotli  # type: ignore[import-untyped]
import orjson
import pytest

from orderflow.web.orders import MAX_BODY_BYTES
from tests.harness import ManagedProcess, http_json, poll_until, start_sandbox, start_worker
from tests.integration.test_http_hardening import _post_head, _raw_http
from tests.orders_client import order_body

READ_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("hostile")
    sandbox = start_sandbox(tmp)
    try:
        proc: ManagedProcess = start_worker(
            tmp,
            kafka_bootstrap,
            sandbox.meta["url"],
            extra={"ORDERFLOW_BODY_READ_TIMEOUT": str(READ_TIMEOUT_S)},
        )
        try:
            yield proc.meta["url"]
        finally:
            proc.stop()
    finally:
        sandbox.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _post(url: str, raw: bytes, **headers: str) -> tuple[int, Any]:
    head = _post_head({"Content-Length": str(len(raw)), **headers})
    return _raw_http(url, head, raw)


def _still_serving(url: str) -> None:
    assert http_json("GET", f"{url}/health", timeout=30)[0] == 200
    status, body, _ = http_json("POST", f"{url}/orders", order_body(), timeout=30)
    assert status == 201, body


# -- codings aiohttp answers itself unless it can decode them ------------------------------------


@pytest.mark.parametrize("coding", ["br", "zstd", "BR"])
def test_brotli_or_zstd_body_is_our_json_415_not_aiohttp_plain_text(
    worker: str, coding: str
) -> None:
    raw = brotli.compress(orjson.dumps(order_body())) if coding.lower() == "br" else b"\x28\xb5"
    status, answer = _post(worker, raw, **{"Content-Encoding": coding})
    assert status == 415, answer
    assert answer["problems"][0]["field"] == "Content-Encoding"


# -- too large -------------------------------------------------------------------------------------


def test_declared_oversized_body_is_413_before_it_is_sent(worker: str) -> None:
    # Only the head: the answer must come from Content-Length alone.
    head = _post_head({"Content-Length": str(50 * 1024 * 1024)})
    status, answer = _raw_http(worker, head)
    assert status == 413
    assert answer["problems"][0]["code"] == "too_large"


def test_gzip_bomb_is_413_once_decoded_past_the_limit(worker: str) -> None:
    bomb = gzip.compress(b"[" + b" " * (20 * 1024 * 1024) + b"]")  # 20 MiB in about 20 KiB
    assert len(bomb) < MAX_BODY_BYTES
    status, answer = _post(worker, bomb, **{"Content-Encoding": "gzip"})
    assert status == 413
    assert answer["problems"][0]["code"] == "too_large"


def test_deflate_body_just_under_the_limit_is_read(worker: str) -> None:
    body = orjson.dumps(order_body() | {"pad": " " * (MAX_BODY_BYTES - 400)})
    assert MAX_BODY_BYTES - 400 < len(body) <= MAX_BODY_BYTES
    status, answer = _post(worker, zlib.compress(body), **{"Content-Encoding": "deflate"})
    assert status == 400  # read whole: refused for its unknown field, not for its size
    assert [p["code"] for p in answer["problems"]] == ["unknown_field"]


# -- slow and idle clients -------------------------------------------------------------------------


def test_client_trickling_its_body_gets_408_while_others_are_served(worker: str) -> None:
    stop = threading.Event()
    answer: list[bytes] = []

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", _port(worker)), timeout=60) as sock:
            sock.sendall(_post_head({"Content-Length": "4000"}) + b'{"customer_id": ')
            sock.settimeout(0.3)
            while not stop.is_set():  # one byte at a time, never the whole body
                try:
                    sock.sendall(b" ")
                    if data := sock.recv(65536):
                        answer.append(data)
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
            sock.settimeout(10)
            with contextlib.suppress(OSError):
                while data := sock.recv(65536):
                    answer.append(data)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        _still_serving(worker)  # while the trickle goes on
        poll_until(lambda: not thread.is_alive(), 60, 0.1, "the slow client to be answered")
    finally:
        stop.set()
        thread.join(15)
    head, _, body = b"".join(answer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head[:200]
    assert b"content-type: application/json" in head.lower()
    assert orjson.loads(body)["problems"][0]["code"] == "timeout"


def test_500_idle_connections_leave_health_and_posts_served(worker: str) -> None:
    idle: list[socket.socket] = []
    try:
        for _ in range(500):
            idle.append(socket.create_connection(("127.0.0.1", _port(worker)), timeout=10))
        _still_serving(worker)
        # Half-sent requests on top: a head with no body yet, then nothing.
        for sock in idle[:100]:
            sock.sendall(_post_head({"Content-Length": "100"}))
        _still_serving(worker)
    finally:
        for sock in idle:
            sock.close()
    _still_serving(worker)


# -- bodies that are not what they seem --------------------------------------------------------


_VALID = orjson.dumps(order_body())
_NOT_JSON = {
    "invalid_utf8": _VALID.replace(b'"c-', b'"\xff\xfe-'),
    "utf16_with_bom": b"\xff\xfe" + _VALID.decode().encode("utf-16-le"),
    "utf8_with_bom": b"\xef\xbb\xbf" + _VALID,
    "overlong_slash": _VALID.replace(b'"c-', b'"\xc0\xaf-'),
    "lone_surrogate_escape": _VALID.replace(b'"c-', b'"\\ud800-'),
    "number_1e999": _VALID.replace(b'"quantity":', b'"quantity":1e999,"q":'),
    "nested_2000_deep": b"[" * 2000 + b"]" * 2000,
    "nan": _VALID.replace(b'"quantity":', b'"quantity":NaN,"q":'),
    "trailing_garbage": _VALID + b"}",
}


@pytest.mark.parametrize("name", sorted(_NOT_JSON))
def test_body_that_is_not_strict_utf8_json_is_400_invalid_json(worker: str, name: str) -> None:
    status, answer = _post(worker, _NOT_JSON[name])
    assert status == 400, answer
    assert [p["code"] for p in answer["problems"]] == ["invalid_json"]


def _with_item(**item: Any) -> dict[str, Any]:
    return order_body() | {"items": [{"sku": "SKU-1", "quantity": 1, "unit_amount": 5} | item]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (order_body() | {"customer_id": "c\u00001"}, "customer_id"),
        (_with_item(sku="SKU\u0000"), "items[0].sku"),
        (_with_item(quantity=-0.0), "items[0].quantity"),
        (_with_item(unit_amount=1e3), "items[0].unit_amount"),
    ],
)
def test_nul_bytes_and_float_numbers_are_refused_by_field(
    worker: str, body: dict[str, Any], field: str
) -> None:
    status, answer = _post(worker, orjson.dumps(body))
    assert status == 400, answer
    assert field in {p["field"] for p in answer["problems"]}, answer


def test_minus_zero_quantity_is_out_of_range(worker: str) -> None:
    raw = _VALID.replace(b'"quantity":2', b'"quantity":-0')
    assert raw != _VALID
    status, answer = _post(worker, raw)
    assert status == 400, answer
    assert {(p["field"], p["code"]) for p in answer["problems"]} == {("items[0].quantity", "range")}


def test_a_deeply_nested_body_is_a_json_400_not_a_plain_500(worker: str) -> None:
    # 1,020 levels: orjson takes them, the duplicate-key check's stdlib parse did not (500).
    raw = b'{"customer_id": ' + b"[" * 1020 + b"]" * 1020 + b"}"
    status, answer = _post(worker, raw, **{"Idempotency-Key": str(uuid.uuid4())})
    assert status == 400, answer
    assert [p["code"] for p in answer["problems"]] == ["too_deep"]


def test_duplicate_keys_are_refused_not_last_one_wins(worker: str) -> None:
    # A proxy that reads the first customer_id and this worker the last would disagree on whose
    # order it is: a body with a key twice is refused, wherever the key is.
    raw = orjson.dumps(order_body() | {"customer_id": "c-first"})
    raw = raw.replace(b'"customer_id":"c-first"', b'"customer_id":"c-first","customer_id":"c-2nd"')
    key = str(uuid.uuid4())
    status, answer = _post(worker, raw, **{"Idempotency-Key": key})
    assert status == 400, answer
    assert [p["code"] for p in answer["problems"]] == ["duplicate_key"]
    assert "customer_id" in answer["problems"][0]["message"]
