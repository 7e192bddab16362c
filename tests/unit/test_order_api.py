"""OrderApi's answers while a worker cannot serve: a durable 202 or a 503 with Retry-After, never
a 500, never a 404 for an order that may exist."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from orderflow.watch import OrderWatch
from orderflow.web.auth import Authenticator, Caller
from orderflow.web.orders import OrderApi, order_id_for_key
from orderflow.web.routing import FORWARDED_HEADER, Forwarding, Owner, OwnerLookup
from tests.fakes import FakeCommandTopic, FakeOrderStore, FakeRequest, FakeRouting
from tests.orders_client import order_body
from tests.unit.builders import pending_order

_OPEN = Authenticator.disabled()  # OrderApi's default: no API keys, the development secret


def _key_id(key: str) -> str:
    """The order id an Idempotency-Key names for the (anonymous) client of these tests."""
    return order_id_for_key(_OPEN.secret, "", key)


def _signed(method: str, path_qs: str, body: bytes = b"") -> dict[str, str]:
    """The headers of a request another worker forwarded (signed with the cluster secret)."""
    return _OPEN.forward_headers(Caller(""), method, path_qs, body)


def _api(
    owner: Owner | None, commands: FakeCommandTopic | None = None, suspect: bool = False
) -> OrderApi:
    """``owner`` None: the partitions never settle (a rebalance, a recovery)."""
    routing = FakeRouting(moved=True) if owner is None else FakeRouting(owner, suspect)
    return OrderApi(
        FakeOrderStore(),
        commands or FakeCommandTopic(),
        OrderWatch(),
        routing,
        post_wait_s=0.1,
        move_wait_s=0.05,
    )


def _elsewhere() -> Owner:
    from yarl import URL

    return Owner(is_local=False, url=URL("http://127.0.0.1:1"))


async def test_post_while_recovering_is_accepted_durably_with_202_and_location() -> None:
    commands = FakeCommandTopic(FakeOrderStore(), OrderWatch(), "delivered")
    response = await _api(None, commands).create(
        FakeRequest(order_body(), {"Idempotency-Key": "k-1"})
    )
    assert response.status == 202, response.body
    order_id = response.body["order_id"]
    assert order_id == _key_id("k-1")  # the same key names the same order
    # The owner resolves the key's generation from the command's time (placed_at).
    assert response.headers["Location"].startswith(f"/orders/{order_id}?placed_at=")
    assert [orjson.loads(c)["order_id"] for c in commands.sent] == [order_id]


async def test_unkeyed_post_while_recovering_is_accepted_durably_under_a_fresh_id() -> None:
    commands = FakeCommandTopic(FakeOrderStore(), OrderWatch(), "delivered")
    api = _api(None, commands)
    first, second = [await api.create(FakeRequest(order_body())) for _ in range(2)]
    assert (first.status, second.status) == (202, 202)
    assert first.body["order_id"] != second.body["order_id"]


async def test_post_while_recovering_not_acked_by_the_broker_is_503_never_2xx() -> None:
    commands = FakeCommandTopic(FakeOrderStore(), OrderWatch(), "fails")
    response = await _api(None, commands).create(
        FakeRequest(order_body(), {"Idempotency-Key": "k-1"})
    )
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"
    assert response.body["error"] == "unavailable"


async def test_get_while_rebalancing_waits_its_move_budget_then_503_with_retry_after() -> None:
    response = await _api(None).get(FakeRequest(), "ord_" + "0" * 32)
    assert (response.status, response.headers.get("Retry-After")) == (503, "1")


async def test_forwarded_request_for_a_partition_we_do_not_own_is_accepted_here_not_forwarded() -> (
    None
):
    commands = FakeCommandTopic(FakeOrderStore(), OrderWatch(), "delivered")
    signed = _signed("POST", "/orders", orjson.dumps(order_body()))
    request = FakeRequest(order_body(), {"Idempotency-Key": "k-2", **signed})
    response = await _api(_elsewhere(), commands).create(request)
    assert response.status == 202, response.body
    assert len(commands.sent) == 1


async def test_post_for_an_owner_that_just_failed_to_answer_is_accepted_here() -> None:
    # The owner (port 1: nothing listens) is not even tried while it is suspect.
    commands = FakeCommandTopic(FakeOrderStore(), OrderWatch(), "delivered")
    api = _api(_elsewhere(), commands, suspect=True)
    response = await api.create(FakeRequest(order_body(), {"Idempotency-Key": "k-3"}))
    assert response.status == 202, response.body
    assert len(commands.sent) == 1


async def test_invalid_post_is_refused_before_any_routing() -> None:
    response = await _api(None).create(FakeRequest({"currency": "EUR"}))
    assert response.status == 400
    assert {p["field"] for p in response.body["problems"]} == {"customer_id", "items", "payment"}


# -- fakes for the POST and long-poll paths ---------------------------------------------------


class _Segments:
    """A body that arrives in pieces: ``read(n)`` returns at most what has arrived so far."""

    def __init__(self, *segments: bytes, error: Exception | None = None) -> None:
        self.segments = list(segments)
        self.error = error

    async def read(self, limit: int) -> bytes:
        if not self.segments:
            if self.error is not None:
                raise self.error
            return b""
        head = self.segments.pop(0)
        if len(head) > limit:
            self.segments.insert(0, head[limit:])
            head = head[:limit]
        return head


def _raw_request(
    *segments: bytes,
    headers: dict[str, str] | None = None,
    length: int | None = None,
    error: Exception | None = None,
) -> FakeRequest:
    request = FakeRequest(None, {"Content-Type": "application/json", **(headers or {})})
    request.content = _Segments(*segments, error=error)
    request.content_length = length
    return request


def _post_api(outcome: str, post_wait_s: float = 0.3) -> tuple[OrderApi, FakeCommandTopic]:
    table, watch = FakeOrderStore(), OrderWatch()
    commands = FakeCommandTopic(table, watch, outcome)
    api = OrderApi(table, commands, watch, FakeRouting(), post_wait_s, move_wait_s=0.05)
    return api, commands


# -- reading the body ---------------------------------------------------------------------------


async def test_body_arriving_in_two_segments_is_read_whole() -> None:
    items = [
        {"sku": f"SKU-{i:03d}-" + "x" * 50, "quantity": 1, "unit_amount": 100} for i in range(40)
    ]
    raw = orjson.dumps(order_body() | {"items": items})  # about 3 KB
    assert len(raw) > 3000
    api, _ = _post_api("stored")
    request = _raw_request(raw[:1500], raw[1500:], length=len(raw))
    response = await api.create(request)
    assert response.status == 201, response.body


async def test_chunked_body_without_length_is_read_whole() -> None:
    raw = orjson.dumps(order_body())
    api, _ = _post_api("stored")
    response = await api.create(_raw_request(raw[:10], raw[10:40], raw[40:], length=None))
    assert response.status == 201, response.body


async def test_chunked_body_over_the_limit_is_413_too_large() -> None:
    api, commands = _post_api("stored")
    chunks = [b" " * 8192] * 9  # 72 KiB, no Content-Length
    response = await api.create(_raw_request(*chunks, length=None))
    assert response.status == 413
    assert response.body["problems"][0]["code"] == "too_large"
    assert commands.sent == []


async def test_declared_length_over_the_limit_is_413_before_reading_the_body() -> None:
    api, commands = _post_api("stored")
    # Nothing arrives: the answer must come from the declared length alone.
    response = await api.create(_raw_request(length=10 * 1024 * 1024))
    assert response.status == 413
    assert response.body["problems"][0]["code"] == "too_large"
    assert commands.sent == []


async def test_duplicate_key_in_body_is_400_duplicate_key_not_last_one_wins() -> None:
    api, commands = _post_api("stored")
    raw = orjson.dumps(order_body()).replace(
        b'"sku":"SKU-1"', b'"sku":"SKU-1","quantity":1000,"sku":"SKU-1"'
    )
    assert raw.count(b'"sku"') == 2
    response = await api.create(_raw_request(raw, length=len(raw)))
    assert response.status == 400, response.body
    assert [p["code"] for p in response.body["problems"]] == ["duplicate_key"]
    assert "sku" in response.body["problems"][0]["message"]
    assert commands.sent == []


async def test_deeply_nested_body_is_json_400_not_a_500() -> None:
    # Regression: orjson takes 1024 levels, the stdlib parse of the duplicate-key check raised
    # RecursionError near 1000: a 2 KB [[[...]]] body answered a plain-text 500.
    api, commands = _post_api("stored")
    for raw in (b"[" * 1020 + b"]" * 1020, b'{"customer_id": ' + b"[" * 1020 + b"]" * 1020 + b"}"):
        response = await api.create(_raw_request(raw, length=len(raw)))
        assert response.status == 400, response.body
        assert response.body["problems"][0]["code"] == "too_deep"
    assert commands.sent == []


class _Trickle(_Segments):
    """A client that sent a few bytes of its body and then nothing more, for ever."""

    async def read(self, limit: int) -> bytes:
        if self.segments:
            return await super().read(limit)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_slow_body_is_408_after_the_read_timeout_not_held_for_ever() -> None:
    table, watch = FakeOrderStore(), OrderWatch()
    commands = FakeCommandTopic(table, watch, "stored")
    api = OrderApi(
        table,
        commands,
        watch,
        FakeRouting(),
        0.3,
        move_wait_s=0.05,
        body_read_timeout_s=0.2,
    )
    request = _raw_request(length=500)
    request.content = _Trickle(b'{"customer_id": ')
    response = await asyncio.wait_for(api.create(request), 10)
    assert response.status == 408, response.body
    assert response.body["problems"][0]["code"] == "timeout"
    assert response.headers.get("Connection") == "close"
    assert commands.sent == []


async def test_undecodable_content_encoding_is_json_400() -> None:
    from aiohttp.web import RequestPayloadError

    api, commands = _post_api("stored")
    error = RequestPayloadError("Can not decode content-encoding: gzip")
    request = _raw_request(b"", headers={"Content-Encoding": "gzip"}, length=10, error=error)
    request.content = _Segments(error=error)
    response = await api.create(request)
    assert response.status == 400
    assert response.body["problems"][0]["field"] == "Content-Encoding"
    assert commands.sent == []


async def test_unsupported_content_encoding_is_json_415() -> None:
    raw = orjson.dumps(order_body())
    api, commands = _post_api("stored")
    response = await api.create(_raw_request(raw, headers={"Content-Encoding": "compress"}))
    assert response.status == 415
    assert response.body["problems"][0]["field"] == "Content-Encoding"
    assert commands.sent == []


async def test_body_not_utf8_is_400_invalid_json() -> None:
    api, _ = _post_api("stored")
    response = await api.create(_raw_request(b'{"customer_id": "\xff\xfe"}'))
    assert response.status == 400
    assert response.body["problems"][0]["code"] == "invalid_json"


async def test_invalid_idempotency_key_format_is_400_naming_the_header() -> None:
    api, commands = _post_api("stored")
    response = await api.create(FakeRequest(order_body(), {"Idempotency-Key": "bad\nkey"}))
    assert response.status == 400
    assert [p["field"] for p in response.body["problems"]] == ["Idempotency-Key"]
    assert commands.sent == []


# -- no 2xx before the command is durably in Kafka ---------------------------------------------


async def test_stored_order_is_201_with_location() -> None:
    api, _ = _post_api("stored")
    response = await api.create(FakeRequest(order_body(), {"Idempotency-Key": "k-201"}))
    assert response.status == 201
    assert response.headers["Location"] == f"/orders/{response.body['order_id']}"
    assert "Idempotent-Replayed" not in response.headers


async def test_unkeyed_post_delivered_but_not_stored_in_time_is_202_with_location() -> None:
    api, commands = _post_api("delivered")
    response = await api.create(FakeRequest(order_body()))
    assert response.status == 202
    assert response.headers["Location"] == f"/orders/{response.body['order_id']}"
    assert len(commands.sent) == 1


async def test_keyed_post_delivered_but_not_stored_in_time_is_202_same_post_again_decides() -> None:
    api, _ = _post_api("delivered")
    response = await api.create(FakeRequest(order_body(), {"Idempotency-Key": "k-202"}))
    assert (response.status, response.headers.get("Retry-After")) == (202, "1")
    assert response.headers["Location"].startswith(f"/orders/{_key_id('k-202')}?placed_at=")
    assert "422" in response.body["message"]


async def test_key_accepted_during_a_move_with_another_body_is_422_once_the_owner_decides() -> None:
    table, watch = FakeOrderStore(), OrderWatch()
    commands, routing = FakeCommandTopic(table, watch, "stored"), FakeRouting()
    api = OrderApi(table, commands, watch, routing, 0.3, move_wait_s=0.05)
    routing.moved = True
    accepted = await api.create(FakeRequest(order_body(), {"Idempotency-Key": "k-move"}))
    assert accepted.status == 202
    routing.moved = False
    other = order_body() | {"customer_id": "c-other"}
    assert (await api.create(FakeRequest(other, {"Idempotency-Key": "k-move"}))).status == 422
    again = await api.create(FakeRequest(order_body(), {"Idempotency-Key": "k-move"}))
    assert (again.status, again.body["order_id"]) == (201, accepted.body["order_id"])


@pytest.mark.parametrize("outcome", ["fails", "hangs", "send_hangs"])
async def test_unkeyed_post_not_durably_delivered_is_never_2xx(outcome: str) -> None:
    api, _ = _post_api(outcome)
    response = await asyncio.wait_for(api.create(FakeRequest(order_body())), timeout=5)
    assert response.status == 503, response.body
    assert response.headers["Retry-After"] == "1"
    order_id = response.body["order_id"]  # so that the client can check before placing again
    assert response.headers["Location"] == f"/orders/{order_id}"


@pytest.mark.parametrize("outcome", ["fails", "hangs", "send_hangs"])
async def test_keyed_post_not_durably_delivered_is_503_retry_same_key(outcome: str) -> None:
    api, _ = _post_api(outcome)
    request = FakeRequest(order_body(), {"Idempotency-Key": f"k-{outcome}"})
    response = await asyncio.wait_for(api.create(request), timeout=5)
    assert (response.status, response.headers.get("Retry-After")) == (503, "1")


# -- long-polls: a partition move, and caps ----------------------------------------------------


def _get_request(
    wait: float,
    remote: str = "10.0.0.9",
    headers: dict[str, str] | None = None,
) -> FakeRequest:
    request = FakeRequest(None, headers, {"wait": str(wait)})
    request.method, request.raw_path = "GET", f"/orders/x?wait={wait}"
    request.remote = remote
    return request


def _get_api(
    table: FakeOrderStore,
    routing: FakeRouting,
    watch: OrderWatch | None = None,
    max_total: int | None = None,
    max_per_peer: int = 100,
) -> OrderApi:
    watch = watch or OrderWatch()
    if max_total is None:  # the default caps
        return OrderApi(table, FakeCommandTopic(table, watch), watch, routing, 0.1)
    from orderflow.web.orders import LongPolls

    return OrderApi(
        table,
        FakeCommandTopic(table, watch),
        watch,
        routing,
        0.1,
        long_polls=LongPolls(max_total, max_per_peer),
    )


async def _until_waiting(watch: OrderWatch, order_id: str) -> None:
    """Until a request waits on the order (polled with a deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not watch.waiting(order_id):
        assert loop.time() < deadline, "the long-poll never started waiting"
        await asyncio.sleep(0.005)


async def test_long_poll_spanning_a_partition_move_answers_503_not_404() -> None:
    table, routing, watch = FakeOrderStore(), FakeRouting(), OrderWatch()
    order = pending_order(order_id="ord_" + "1" * 32)
    table.rows[order.order_id] = order
    api = _get_api(table, routing, watch)
    # Nobody wakes it (the watch is not told): it finds the move when its own wait ends.
    poll = asyncio.ensure_future(api.get(_get_request(0.3), order.order_id))
    await _until_waiting(watch, order.order_id)
    routing.moved = True  # the partition is revoked: the local store no longer has the order
    del table.rows[order.order_id]
    response = await poll
    assert (response.status, response.headers.get("Retry-After")) == (503, "1"), response.body


async def test_long_poll_is_woken_by_a_partition_move() -> None:
    table, routing, watch = FakeOrderStore(), FakeRouting(), OrderWatch()
    order = pending_order(order_id="ord_" + "2" * 32)
    table.rows[order.order_id] = order
    api = _get_api(table, routing, watch)
    poll = asyncio.ensure_future(api.get(_get_request(30), order.order_id))
    await _until_waiting(watch, order.order_id)
    routing.moved = True
    watch.notify_all()
    response = await asyncio.wait_for(poll, timeout=5)  # not the 30 s of the wait
    assert response.status == 503


async def _flood(
    api: OrderApi,
    peers: list[str],
    headers: dict[str, str] | None = None,
) -> list[int]:
    unknown = "ord_" + "3" * 32
    polls = [asyncio.ensure_future(api.get(_get_request(0.3, p, headers), unknown)) for p in peers]
    return [r.status for r in await asyncio.gather(*polls)]


async def test_long_polls_over_the_per_client_cap_get_429_other_clients_do_not() -> None:
    api = _get_api(FakeOrderStore(), FakeRouting(), max_total=100, max_per_peer=3)
    statuses = await _flood(api, ["10.0.0.1"] * 5 + ["10.0.0.2"] * 2)
    assert sorted(statuses) == [404] * 5 + [429] * 2
    assert statuses[5:] == [404, 404]  # the other client is not limited by the first one


async def test_long_polls_over_the_worker_cap_get_429_with_retry_after() -> None:
    api = _get_api(FakeOrderStore(), FakeRouting(), max_total=4, max_per_peer=4)
    unknown = "ord_" + "4" * 32
    polls = [
        asyncio.ensure_future(api.get(_get_request(0.3, f"10.0.1.{i}"), unknown)) for i in range(6)
    ]
    responses = await asyncio.gather(*polls)
    refused = [r for r in responses if r.status == 429]
    assert len(refused) == 2
    assert refused[0].headers["Retry-After"] == "1"
    assert refused[0].body["error"] == "too_many_long_polls"
    # Once the polls are over, the slots are free again.
    assert (await api.get(_get_request(0.05, "10.0.1.0"), unknown)).status == 404


async def test_forwarded_long_polls_from_a_worker_are_not_counted_twice() -> None:
    routing = FakeRouting()
    api = _get_api(FakeOrderStore(), routing, max_total=2, max_per_peer=2)
    statuses = await _flood(api, ["10.0.0.7"] * 5, _signed("GET", "/orders/x?wait=0.3"))
    assert statuses == [404] * 5


async def test_forged_forwarded_header_from_a_client_is_still_counted() -> None:
    api = _get_api(FakeOrderStore(), FakeRouting(), max_total=10, max_per_peer=2)
    statuses = await _flood(api, ["10.0.0.8"] * 4, {FORWARDED_HEADER: "1"})
    assert sorted(statuses) == [404, 404, 429, 429]


async def test_plain_gets_are_not_capped() -> None:
    api = _get_api(FakeOrderStore(), FakeRouting(), max_total=1, max_per_peer=1)
    unknown = "ord_" + "5" * 32
    responses = await asyncio.gather(*(api.get(_get_request(0), unknown) for _ in range(5)))
    assert [r.status for r in responses] == [404] * 5


# -- forwarding to the owner, over a real socket ------------------------------------------------


class _App:
    """The parts of the Faust app that OwnerLookup.forward reads."""

    class conf:
        canonical_url = "http://127.0.0.1:1"

    rebalancing = False
    in_recovery = False


async def _owner_server(handler: Any) -> tuple[Any, Owner]:
    from aiohttp import web
    from yarl import URL

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, Owner(is_local=False, url=URL(f"http://127.0.0.1:{port}"))


async def test_forwarding_keeps_the_owners_location_retry_after_and_replay_headers() -> None:
    from aiohttp import web

    async def owner_answers(request: web.Request) -> web.Response:
        return web.json_response(
            {"ok": True},
            status=201,
            headers={
                "Location": "/orders/ord_x",
                "Retry-After": "7",
                "Idempotent-Replayed": "true",
                "X-Internal": "not forwarded",
            },
        )

    runner, owner = await _owner_server(owner_answers)
    routing = OwnerLookup(_App(), "orders")
    try:
        request = FakeRequest(order_body(), {"Idempotency-Key": "k-fwd"})
        status, payload, content_type, headers = await routing.forward(
            owner, request, Forwarding(timeout=5, body=orjson.dumps(order_body()))
        )
    finally:
        await routing.close()
        await runner.cleanup()
    assert (status, orjson.loads(payload), content_type) == (201, {"ok": True}, "application/json")
    assert headers == {
        "Location": "/orders/ord_x",
        "Retry-After": "7",
        "Idempotent-Replayed": "true",
    }


async def test_forwarded_gzip_post_reaches_the_owner_decoded_without_its_encoding() -> None:
    from aiohttp import web

    received: list[tuple[str | None, bytes]] = []

    async def owner_reads(request: web.Request) -> web.Response:
        received.append((request.headers.get("Content-Encoding"), await request.read()))
        return web.json_response({}, status=201)

    runner, owner = await _owner_server(owner_reads)
    routing = OwnerLookup(_App(), "orders")
    decoded = orjson.dumps(order_body())  # what aiohttp handed the edge, already gunzipped
    try:
        request = FakeRequest(order_body(), {"Idempotency-Key": "k-gz", "Content-Encoding": "gzip"})
        status, *_ = await routing.forward(owner, request, Forwarding(timeout=5, body=decoded))
    finally:
        await routing.close()
        await runner.cleanup()
    assert status == 201
    assert received == [(None, decoded)]


class _OwnedElsewhere(OwnerLookup):
    """Real forwarding; every order is owned by the worker at ``url``."""

    def __init__(self, url: str) -> None:
        from yarl import URL

        super().__init__(_App(), "orders")
        self.url = URL(url)
        self.mark_settled()

    def owner(self, order_id: str) -> Owner:
        return Owner(is_local=False, url=self.url)


async def test_unreachable_owner_post_is_accepted_here_get_waits_its_budget_then_503() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    routing = _OwnedElsewhere(f"http://127.0.0.1:{port}")
    table, watch = FakeOrderStore(), OrderWatch()
    commands = FakeCommandTopic(table, watch, "delivered")
    api = OrderApi(table, commands, watch, routing, post_wait_s=1, move_wait_s=0.3)
    try:
        response = await api.create(FakeRequest(order_body(), {"Idempotency-Key": "k-gone"}))
        polled = await api.get(_get_request(1), "ord_" + "6" * 32)
        assert routing.is_suspect(routing.owner("ord_" + "6" * 32))
    finally:
        await routing.close()
    assert (response.status, response.body["order_id"]) == (202, _key_id("k-gone"))
    assert len(commands.sent) == 1
    assert (polled.status, polled.headers.get("Retry-After")) == (503, "1"), polled
    assert polled.body["error"] == "unavailable"


async def test_forwarded_long_polls_cannot_take_the_connections_of_forwarded_posts() -> None:
    from aiohttp import web

    release = asyncio.Event()
    held = 0

    async def owner(request: web.Request) -> web.Response:
        nonlocal held
        if request.method == "GET":  # a long-poll: holds its connection
            held += 1
            await release.wait()
            return web.json_response({}, status=404)
        return web.json_response({}, status=201)

    runner, where = await _owner_server(owner)
    routing = OwnerLookup(_App(), "orders", max_long_polls=150)
    polls: list[asyncio.Future[Any]] = []
    try:
        for i in range(120):  # more than the whole pool of connections for forwarded requests
            request = _get_request(30, f"10.2.0.{i}")
            polls.append(
                asyncio.ensure_future(
                    routing.forward(where, request, Forwarding(timeout=60, long_poll=True))
                )
            )
        deadline = asyncio.get_running_loop().time() + 30
        while held < 120:  # every poll holds its connection at the owner
            assert asyncio.get_running_loop().time() < deadline, f"only {held} polls arrived"
            await asyncio.sleep(0.01)
        post = FakeRequest(order_body(), {"Idempotency-Key": "k-beside-polls"})
        status, *_ = await routing.forward(
            where, post, Forwarding(timeout=5, body=orjson.dumps(order_body()))
        )
        assert status == 201
    finally:
        release.set()
        await asyncio.gather(*polls, return_exceptions=True)
        await routing.close()
        await runner.cleanup()


@pytest.mark.parametrize(("broker", "status"), [("delivered", 202), ("fails", 503)])
async def test_a_post_forwarded_while_the_worker_stops_is_accepted_here_never_a_bare_500(
    broker: str, status: int
) -> None:
    # Seen in chaos runs: SIGTERM closed the forwarding session while POSTs still came in, and
    # aiohttp's "Session is closed" became "500 Server got itself in trouble". The stopping
    # worker accepts the order itself while its producer still runs (202), else 503.
    from aiohttp import web

    async def owner_answers(request: web.Request) -> web.Response:
        return web.json_response({"ok": True}, status=201)

    runner, owner = await _owner_server(owner_answers)
    routing = _OwnedElsewhere(str(owner.url))
    table, watch = FakeOrderStore(), OrderWatch()
    commands = FakeCommandTopic(table, watch, broker)
    api = OrderApi(table, commands, watch, routing, post_wait_s=1)
    try:
        await routing.close()  # what the worker's shutdown does
        response = await api.create(FakeRequest(order_body(), {"Idempotency-Key": "k-stopping"}))
    finally:
        await runner.cleanup()
    assert (response.status, response.headers.get("Retry-After")) == (status, "1"), response
    if status == 202:
        assert response.body["order_id"] == _key_id("k-stopping")
    else:
        assert response.body["error"] == "unavailable"


# -- GET of an order whose POST was answered before it was stored ------------------------------


async def test_get_of_an_order_whose_command_is_still_unconfirmed_is_503_never_404() -> None:
    # The 503 told the client to GET before placing the order again. The producer keeps trying
    # after the POST gave up, so "404" then would be a lie: the order may still land, and a
    # client placing it again would pay twice.
    api, _ = _post_api("hangs")
    placed = await api.create(FakeRequest(order_body()))
    order_id = placed.body["order_id"]
    polled = await api.get(_get_request(0), order_id)
    assert (polled.status, polled.headers.get("Retry-After")) == (503, "1"), polled.body
    assert polled.body["order_id"] == order_id


async def test_get_of_an_accepted_order_not_stored_yet_is_202_never_404() -> None:
    api, _ = _post_api("delivered")  # in Kafka, but the order service has not stored it yet
    placed = await api.create(FakeRequest(order_body()))
    assert placed.status == 202
    polled = await api.get(_get_request(0), placed.body["order_id"])
    assert (polled.status, polled.body["status"]) == (202, "ACCEPTED"), polled.body


async def test_get_of_an_order_whose_command_failed_for_good_is_404() -> None:
    api, _ = _post_api("fails")
    placed = await api.create(FakeRequest(order_body()))
    polled = await api.get(_get_request(0), placed.body["order_id"])
    assert polled.status == 404, polled.body


# -- GET of an order accepted elsewhere during a move: 404 only once every command is read ------


def _catching_up_api(
    caught_up: bool, table: FakeOrderStore | None = None, store_meanwhile: Any = None
) -> OrderApi:
    table = table or FakeOrderStore()
    asked: list[str] = []

    async def commands_read(order_id: str, timeout: float) -> bool:
        asked.append(order_id)
        if store_meanwhile is not None:
            table.rows[store_meanwhile.order_id] = store_meanwhile
        return caught_up

    return OrderApi(
        table,
        FakeCommandTopic(table),
        OrderWatch(),
        FakeRouting(),
        0.1,
        caught_up=commands_read,
        move_wait_s=0.05,
    )


async def test_unknown_order_before_the_owner_read_every_command_is_503_not_404() -> None:
    response = await _catching_up_api(caught_up=False).get(_get_request(0), "ord_" + "7" * 32)
    assert (response.status, response.headers.get("Retry-After")) == (503, "1"), response.body


async def test_unknown_order_after_every_command_was_read_is_404() -> None:
    response = await _catching_up_api(caught_up=True).get(_get_request(0), "ord_" + "7" * 32)
    assert response.status == 404


async def test_order_stored_while_catching_up_is_200() -> None:
    order = pending_order(order_id="ord_" + "8" * 32)
    api = _catching_up_api(caught_up=True, store_meanwhile=order)
    response = await api.get(_get_request(0), order.order_id)
    assert (response.status, response.body["order_id"]) == (200, order.order_id)


async def test_get_during_a_move_waits_for_the_partition_to_settle_instead_of_503() -> None:
    table, routing = FakeOrderStore(), FakeRouting()
    order = pending_order(order_id="ord_" + "9" * 32)
    table.rows[order.order_id] = order
    api = OrderApi(table, FakeCommandTopic(table), OrderWatch(), routing, 0.1, move_wait_s=5)
    routing.moved = True
    answer = asyncio.ensure_future(api.get(_get_request(0), order.order_id))
    await asyncio.sleep(0.05)
    assert not answer.done()  # waiting, not an immediate 503
    routing.moved = False
    response = await asyncio.wait_for(answer, timeout=5)
    assert (response.status, response.body["order_id"]) == (200, order.order_id)


async def test_post_waits_for_the_store_only_the_store_wait_once_kafka_acknowledged() -> None:
    table, watch = FakeOrderStore(), OrderWatch()
    commands = FakeCommandTopic(table, watch, "delivered")  # acknowledged, never stored
    api = OrderApi(
        table,
        commands,
        watch,
        FakeRouting(),
        post_wait_s=30,
        store_wait_s=0.05,
    )
    response = await asyncio.wait_for(
        api.create(FakeRequest(order_body(), {"Idempotency-Key": "k-store-wait"})), timeout=5
    )  # not the 30 s of the POST wait
    assert response.status == 202, response.body


async def test_post_whose_acknowledgement_took_the_whole_store_wait_answers_202_at_once() -> None:
    # A broker failover delays the ack: the store wait counts from the POST's arrival, so the
    # client is not made to wait for the store on top of the failover.
    table, watch = FakeOrderStore(), OrderWatch()
    commands = FakeCommandTopic(table, watch, "slow_ack")
    api = OrderApi(
        table,
        commands,
        watch,
        FakeRouting(),
        post_wait_s=30,
        store_wait_s=0.1,
    )
    response = await api.create(FakeRequest(order_body(), {"Idempotency-Key": "k-slow-ack"}))
    assert response.status == 202, response.body
    assert len(commands.sent) == 1  # durable: the owner stores it and a GET finds it
