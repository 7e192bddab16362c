"""Idempotency-Keys across their retention, orders owned by clients, and who may call.

The order service stores a keyed PlaceOrder in the key's live generation, or in a new one on the
same partition once it expired; a redelivered command decides the same; a durable 202's
``Location`` (generation 0 + the command's time) is resolved by the owner to the same order.
"""

from __future__ import annotations

import dataclasses

import orjson

from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.domain.auth import ApiKeys, hash_key
from orderflow.domain.events import PlaceOrder, rfc3339
from orderflow.keychains import KeyChains
from orderflow.topics import ORDER_COMMANDS
from orderflow.watch import OrderWatch
from orderflow.web.auth import Authenticator, Caller
from orderflow.web.orders import OrderApi
from orderflow.wire import encode_event
from tests.fakes import (
    FakeCommandTopic,
    FakeOrderStore,
    FakePublisher,
    FakeRequest,
    FakeRouting,
    PassingDeadLetters,
    event,
)
from tests.orders_client import order_body
from tests.unit.builders import pending_order, place_command

SECRET = b"k" * 32
RETENTION = 100.0
T0 = 1_800_000_000.0
KEY_A, KEY_B = "ofk_client_a_key", "ofk_client_b_key"


def _service(orders: FakeOrderStore, publisher: FakePublisher, chains: KeyChains) -> OrderService:
    return OrderService(
        orders, publisher, PassingDeadLetters(), OrderWatch(), StalledOrders(30.0), chains=chains
    )


async def _place(service: OrderService, command: PlaceOrder) -> None:
    """The order service handles ``command`` as the order agent hands it over."""
    key = command.order_id.encode()
    await service.handle(event(ORDER_COMMANDS, encode_event(command), key=key))


def _command(gen0: str, at: float, request_id: str, fingerprint: str = "fp-1") -> PlaceOrder:
    return place_command(
        order_id=gen0,
        occurred_at=rfc3339(at),
        request_id=request_id,
        fingerprint=fingerprint,
        client_id="shop-a",
        keyed=True,
    )


async def test_a_key_names_its_order_within_retention_and_a_new_one_on_the_same_partition_after() -> (
    None
):
    chains = KeyChains(SECRET, 8, RETENTION)
    orders, topic = FakeOrderStore(), FakePublisher()
    service = _service(orders, topic, chains)
    gen0 = chains.gen0("shop-a", "key-1")

    await _place(service, _command(gen0, T0, "r-1"))
    await _place(service, _command(gen0, T0 + 50, "r-2"))  # within retention: a replay
    assert list(orders.rows) == [gen0]
    assert orders.rows[gen0].client_id == "shop-a"

    later = _command(gen0, T0 + 150, "r-3")
    await _place(service, later)
    await _place(service, later)  # redelivered: the same decision, no third order
    assert len(orders.rows) == 2
    (gen1,) = set(orders.rows) - {gen0}
    assert chains.partition_of(gen1) == chains.partition_of(gen0)
    assert orders.rows[gen1].request_id == "r-3"
    # order.created goes out under the new order's id (its partition: the same single writer)
    assert {e.order_id for e in topic.created()} == {gen0, gen1}
    assert all(e.client_id == "shop-a" for e in topic.created())

    # Another body under the key while generation 1 is live: refused, nothing stored.
    await _place(service, _command(gen0, T0 + 160, "r-4", fingerprint="fp-other"))
    assert len(orders.rows) == 2 and orders.rows[gen1].fingerprint == "fp-1"


def _auth() -> Authenticator:
    keys = ApiKeys.parse([f"shop-a {hash_key(KEY_A)}", f"shop-b {hash_key(KEY_B)}"])
    return Authenticator(keys, SECRET)


def _api(table: FakeOrderStore, commands: FakeCommandTopic | None = None) -> OrderApi:
    auth = _auth()
    return OrderApi(
        table,
        commands or FakeCommandTopic(table),
        OrderWatch(),
        FakeRouting(),
        0.3,
        move_wait_s=0.05,
        auth=auth,
        chains=KeyChains(SECRET, 8, RETENTION),
    )


def _get(key: str | None, query: dict[str, str] | None = None) -> FakeRequest:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    request = FakeRequest(None, headers, query)
    request.method = "GET"
    return request


async def test_a_202_location_is_resolved_by_the_owner_to_the_generation_its_command_named() -> (
    None
):
    chains = KeyChains(SECRET, 8, RETENTION)
    orders = FakeOrderStore()
    service = _service(orders, FakePublisher(), chains)
    gen0 = chains.gen0("shop-a", "key-1")
    await _place(service, _command(gen0, T0, "r-1"))
    await _place(service, _command(gen0, T0 + 150, "r-2"))
    (gen1,) = set(orders.rows) - {gen0}
    api = _api(orders)

    old = await api.get(_get(KEY_A, {"placed_at": str(int((T0 + 50) * 1000))}), gen0)
    new = await api.get(_get(KEY_A, {"placed_at": str(int((T0 + 150) * 1000))}), gen0)
    assert (old.status, old.body["order_id"]) == (200, gen0)
    assert (new.status, new.body["order_id"]) == (200, gen1)
    assert new.headers["Content-Location"] == f"/orders/{gen1}"
    plain = await api.get(_get(KEY_A), gen0)  # the id itself: generation 0's order
    assert (plain.status, plain.body["order_id"]) == (200, gen0)


async def test_another_clients_order_is_404_exactly_like_an_unknown_one() -> None:
    orders = FakeOrderStore()
    api = _api(orders)
    owned = pending_order(order_id="ord_" + "1" * 32, client_id="shop-a")
    orders.rows[owned.order_id] = owned
    assert (await api.get(_get(KEY_A), owned.order_id)).status == 200
    theirs = await api.get(_get(KEY_B), owned.order_id)
    unknown_id = "ord_" + "9" * 32
    unknown = await api.get(_get(KEY_B), unknown_id)
    assert theirs.status == unknown.status == 404
    assert theirs.body == {**unknown.body, "order_id": owned.order_id}
    assert theirs.headers == unknown.headers
    # An order from before API keys (no owner) is nobody's with keys on.
    orders.rows[owned.order_id] = dataclasses.replace(owned, client_id="")
    assert (await api.get(_get(KEY_A), owned.order_id)).status == 404


async def test_requests_without_a_valid_key_are_401_with_a_json_body_and_a_challenge() -> None:
    api = _api(FakeOrderStore())
    for key in (None, "ofk_wrong", hash_key(KEY_A)):
        post = await api.create(
            FakeRequest(order_body(), {} if key is None else {"Authorization": f"Bearer {key}"})
        )
        get = await api.get(_get(key), "ord_" + "1" * 32)
        for response in (post, get):
            assert response.status == 401
            assert response.body["error"] == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_two_clients_with_the_same_key_place_two_orders() -> None:
    table = FakeOrderStore()
    api = _api(table, FakeCommandTopic(table, OrderWatch(), "stored"))
    a = await api.create(
        FakeRequest(order_body(), {"Authorization": f"Bearer {KEY_A}", "Idempotency-Key": "same"})
    )
    b = await api.create(
        FakeRequest(order_body(), {"Authorization": f"Bearer {KEY_B}", "Idempotency-Key": "same"})
    )
    assert (a.status, b.status) == (201, 201)
    assert a.body["order_id"] != b.body["order_id"]


async def test_forged_forwarding_headers_make_an_ordinary_request() -> None:
    """A client that sends the forwarding headers itself (no signature from the cluster secret)
    is not believed: without its own key it is 401; with it, it acts as itself."""
    table = FakeOrderStore()
    commands = FakeCommandTopic(table, OrderWatch(), "stored")
    api = _api(table, commands)
    forged = {"X-Orderflow-Forwarded": "1", "X-Orderflow-Client": "shop-a"}
    response = await api.create(FakeRequest(order_body(), dict(forged)))
    assert response.status == 401 and commands.sent == []
    stale = Authenticator(None, SECRET, clock=lambda: 0.0).forward_headers(
        Caller("shop-a"), "POST", "/orders", orjson.dumps(order_body())
    )
    response = await api.create(FakeRequest(order_body(), stale))  # signed 56 years ago
    assert response.status == 401 and commands.sent == []
    response = await api.create(
        FakeRequest(order_body(), {**forged, "Authorization": f"Bearer {KEY_B}"})
    )
    assert response.status == 201
    assert orjson.loads(commands.sent[0])["client_id"] == "shop-b"  # not the claimed shop-a


async def test_a_signed_forward_acts_for_the_client_the_first_worker_authenticated() -> None:
    table = FakeOrderStore()
    commands = FakeCommandTopic(table, OrderWatch(), "stored")
    api = _api(table, commands)
    signed = _auth().forward_headers(
        Caller("shop-a"), "POST", "/orders", orjson.dumps(order_body())
    )
    response = await api.create(FakeRequest(order_body(), signed))
    assert response.status == 201
    assert orjson.loads(commands.sent[0])["client_id"] == "shop-a"


async def test_post_with_another_content_type_is_415_json_and_charset_is_fine() -> None:
    table = FakeOrderStore()
    api = _api(table, FakeCommandTopic(table, OrderWatch(), "stored"))
    auth = {"Authorization": f"Bearer {KEY_A}"}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = await api.create(
            FakeRequest(order_body(), {**auth, "Content-Type": content_type})
        )
        assert response.status == 415, content_type
        assert response.body["error"] == "unsupported_media_type"
    ok = await api.create(
        FakeRequest(order_body(), {**auth, "Content-Type": "application/json; charset=utf-8"})
    )
    assert ok.status == 201
