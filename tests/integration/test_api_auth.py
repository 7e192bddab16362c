"""The authenticated API across two workers: keys, owners, forged forwarding headers, 415.

Every request to ``/orders`` needs an API key; the worker a client reaches forwards to the owner
with a signature of its own (the cluster secret), and a client sending the forwarding headers
itself gains nothing.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orderflow.domain.auth import hash_key
from tests.harness import (
    OTHER_API_KEY,
    OTHER_CLIENT,
    TEST_API_KEY,
    TEST_CLUSTER_SECRET,
    ManagedProcess,
    auth_headers,
    forwarded_headers,
    http_json,
    key_order_id,
    poll_until,
    start_sandbox,
    start_worker,
)
from tests.orders_client import get_terminal, order_body, place

FORGED = {"X-Orderflow-Forwarded": "1", "X-Orderflow-Client": "test-client"}


@pytest.fixture(scope="module")
def pair(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    tmp: Path = tmp_path_factory.mktemp("auth")
    sandbox = start_sandbox(tmp)
    workers: list[ManagedProcess] = []
    try:
        for name in ("a", "b"):
            workers.append(start_worker(tmp, kafka_bootstrap, sandbox.meta["url"], name=name))
        urls = [w.meta["url"] for w in workers]
        poll_until(
            lambda: all(http_json("GET", f"{u}/ready")[0] == 200 for u in urls),
            120,
            0.3,
            "both workers ready",
        )
        yield urls
    finally:
        for worker in reversed(workers):
            worker.stop()
        sandbox.stop()


def _owned_elsewhere(edge: str, client_id: str) -> str:
    """A key whose order (for ``client_id``) the worker at ``edge`` does not own."""
    for i in itertools.count():
        key = f"auth-{uuid.uuid4()}-{i}"
        order_id = key_order_id(key, client_id)
        status = http_json(
            "GET",
            f"{edge}/orders/{order_id}",
            headers=forwarded_headers("GET", f"/orders/{order_id}"),
        )[0]
        if status == 503:  # a signed forward is answered, never forwarded again
            return key
    raise AssertionError("unreachable")


def test_orders_need_an_api_key_health_and_ready_do_not(pair: list[str]) -> None:
    url = pair[0]
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer ofk_not-a-key"},
        {"Authorization": "Basic dGVzdDp0ZXN0"},
    ):
        for method, path, body in (
            ("POST", "/orders", order_body()),
            ("GET", f"/orders/ord_{'0' * 32}", None),
        ):
            status, answer, response_headers = http_json(method, f"{url}{path}", body, headers)
            assert status == 401, (method, headers, status, answer)
            assert answer["error"] == "unauthorized"
            assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert http_json("GET", f"{url}/health", headers={"Authorization": ""})[0] == 200
    assert http_json("GET", f"{url}/ready", headers={"Authorization": ""})[0] == 200


def test_forged_forwarding_headers_gain_nothing(pair: list[str]) -> None:
    edge = pair[0]
    key = _owned_elsewhere(edge, OTHER_CLIENT)
    # Without a key of its own: refused, whatever client the headers claim.
    status, answer, _ = http_json(
        "POST",
        f"{edge}/orders",
        order_body(),
        {**FORGED, "Authorization": "", "Idempotency-Key": key},
    )
    assert status == 401, answer
    # With its own key: an ordinary request of its own client, forwarded to the owner by the
    # edge (201, not the 202 a request believed forwarded gets from a worker that does not own
    # it), and the order is the caller's, not the claimed client's.
    status, answer, _ = http_json(
        "POST",
        f"{edge}/orders",
        order_body(),
        {**FORGED, **auth_headers(OTHER_API_KEY), "Idempotency-Key": key},
    )
    assert status == 201, answer
    order_id = answer["order_id"]
    assert order_id == key_order_id(key, OTHER_CLIENT)
    for url in pair:
        assert http_json("GET", f"{url}/orders/{order_id}")[0] == 404  # test-client: not its
        assert (
            http_json(
                "GET", f"{url}/orders/{order_id}", headers={**FORGED, **auth_headers(OTHER_API_KEY)}
            )[0]
            == 200
        )
    # A GET of the test client's order by another client claiming to be it: 404.
    mine = place(edge, order_body())
    status, _, _ = http_json(
        "GET",
        f"{edge}/orders/{mine['order_id']}",
        headers={**FORGED, **auth_headers(OTHER_API_KEY)},
    )
    assert status == 404


def test_another_clients_order_is_404_like_an_unknown_one_long_polls_too(pair: list[str]) -> None:
    order = place(pair[0], order_body())
    order_id = order["order_id"]
    get_terminal(pair[0], order_id)
    unknown = "ord_" + uuid.uuid4().hex
    for url in pair:
        for query in ("", "?wait=1"):
            theirs = http_json(
                "GET", f"{url}/orders/{order_id}{query}", headers=auth_headers(OTHER_API_KEY)
            )
            none = http_json(
                "GET", f"{url}/orders/{unknown}{query}", headers=auth_headers(OTHER_API_KEY)
            )
            assert theirs[0] == none[0] == 404
            assert theirs[1] == {**none[1], "order_id": order_id}
        assert http_json("GET", f"{url}/orders/{order_id}")[0] == 200


def test_two_clients_with_the_same_idempotency_key_get_two_orders(pair: list[str]) -> None:
    key = f"shared-{uuid.uuid4()}"
    mine = place(pair[0], order_body(), key=key)
    theirs = place(pair[1], order_body(), key=key, api_key=OTHER_API_KEY)
    assert mine["order_id"] != theirs["order_id"]
    assert get_terminal(pair[0], mine["order_id"])["status"] == "PAID"
    assert get_terminal(pair[1], theirs["order_id"], api_key=OTHER_API_KEY)["status"] == "PAID"


def test_post_that_is_not_json_is_415_with_a_json_body(pair: list[str]) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        status, answer, _ = http_json(
            "POST", f"{pair[0]}/orders", b'{"a": 1}', {"Content-Type": content_type}
        )
        assert status == 415, answer
        assert answer["error"] == "unsupported_media_type"
    status, answer, _ = http_json(
        "POST",
        f"{pair[1]}/orders",
        order_body(),
        {"Content-Type": "application/json; charset=utf-8"},
    )
    assert status == 201, answer


def test_unknown_fields_inside_items_and_payment_are_400_by_path(pair: list[str]) -> None:
    body: dict[str, Any] = order_body()
    body["items"][0]["colour"] = "red"
    body["payment"]["cvc"] = "123"
    status, answer, _ = http_json("POST", f"{pair[0]}/orders", body)
    assert status == 400
    assert {p["field"] for p in answer["problems"]} == {"items[0].colour", "payment.cvc"}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        pytest.param({"ORDERFLOW_API_KEYS_FILE": ""}, "ORDERFLOW_API_KEYS_FILE", id="no-keys"),
        pytest.param(
            {"ORDERFLOW_CLUSTER_SECRET": "short"}, "ORDERFLOW_CLUSTER_SECRET", id="short-secret"
        ),
    ],
)
def test_a_worker_without_keys_or_secret_refuses_to_start_naming_the_variable(
    kafka_bootstrap: str, tmp_path: Path, extra: dict[str, str], named: str
) -> None:
    worker = start_worker(
        tmp_path, kafka_bootstrap, "http://127.0.0.1:9", extra=extra, wait_ready=False
    )
    try:
        poll_until(lambda: not worker.alive, 90, 0.2, "the worker to refuse to start")
        assert worker.proc is not None and worker.proc.returncode != 0
        log = worker.log_tail(200_000)
        assert named in log, log[-3000:]
        # No secret material in the refusal.
        assert TEST_CLUSTER_SECRET not in log and hash_key(TEST_API_KEY) not in log
    finally:
        worker.stop()
