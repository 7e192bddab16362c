"""The webhook API against one real worker: registration, the SSRF refusals, who may see and
change what, the endpoint limit, no delivery after a DELETE, and resend.

One worker at a time: first with private addresses refused (the default, for the SSRF checks),
then restarted with ``ORDERFLOW_WEBHOOK_ALLOW_PRIVATE=true`` for the tests that deliver to a
receiver on 127.0.0.1. Each test first deletes the test client's endpoints: the compacted
endpoints topic outlives the workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orderflow.domain.auth import sign_forward
from orderflow.web.auth import CLIENT_HEADER, FORWARDED_HEADER
from tests.harness import (
    OTHER_API_KEY,
    TEST_CLIENT,
    ManagedProcess,
    auth_headers,
    forwarded_headers,
    http_json,
    poll_until,
    start_sandbox,
    start_worker,
)
from tests.orders_client import get_terminal, order_body, place
from tests.webhook_receiver import (
    Received,
    WebhookReceiver,
    delete_all_endpoints,
    forget_endpoints,
    list_endpoints,
)

_ALLOW_PRIVATE = {
    "ORDERFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
    "ORDERFLOW_WEBHOOK_RETRY_FIRST": "0.5",
    "ORDERFLOW_WEBHOOK_RETRY_CAP": "2",
}
_NO_KEY = {"Authorization": ""}
_PUBLIC_URL = "https://example.com/orderflow-events"


class Stack:
    """A sandbox and one worker on it, restarted (same data dir) when the tests need the other
    ``ORDERFLOW_WEBHOOK_ALLOW_PRIVATE``: two would share the partitions, and an order owned by
    the one refusing private addresses would never reach the receiver."""

    def __init__(self, tmp: Path, bootstrap: str) -> None:
        self.tmp = tmp
        self.bootstrap = bootstrap
        self.sandbox = start_sandbox(tmp)
        self.worker: ManagedProcess | None = None
        self.allow_private: bool | None = None
        self.order_id: str | None = None

    def url(self, allow_private: bool) -> str:
        if self.worker is None or self.allow_private is not allow_private:
            self.stop_worker()
            self.worker = start_worker(
                self.tmp,
                self.bootstrap,
                self.sandbox.meta["url"],
                name="webhooks",
                extra=_ALLOW_PRIVATE if allow_private else {},
            )
            self.allow_private = allow_private
        return str(self.worker.meta["url"])

    def paid_order(self, url: str) -> str:
        """A PAID order of the test client (one for the module)."""
        if self.order_id is None:
            order_id = str(place(url, order_body())["order_id"])
            assert get_terminal(url, order_id)["status"] == "PAID"
            self.order_id = order_id
        return self.order_id

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def stop(self) -> None:
        try:
            if self.worker is not None:  # (later tests' workers must not deliver to them)
                forget_endpoints(str(self.worker.meta["url"]))
            self.stop_worker()
        finally:
            self.sandbox.stop()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("webhook-api"), kafka_bootstrap)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def strict(stack: Stack) -> str:
    """The worker's URL, private addresses refused; the test client has no endpoint."""
    url = stack.url(allow_private=False)
    delete_all_endpoints(url)
    return url


@pytest.fixture
def permissive(stack: Stack) -> str:
    """The worker's URL, private addresses allowed; the test client has no endpoint."""
    url = stack.url(allow_private=True)
    delete_all_endpoints(url)
    return url


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def _register(url: str, endpoint_url: str) -> tuple[int, Any, dict[str, str]]:
    return http_json("POST", f"{url}/webhooks", {"url": endpoint_url}, auth_headers())


def _registered(url: str, endpoint_url: str) -> dict[str, Any]:
    status, endpoint, _ = _register(url, endpoint_url)
    assert status == 201, endpoint
    return dict(endpoint)


def _fields(body: Any) -> list[str]:
    return [problem["field"] for problem in body["problems"]]


def _deliveries(url: str, order_id: str) -> list[dict[str, Any]]:
    status, body, _ = http_json("GET", f"{url}/orders/{order_id}/webhooks")
    assert status in (200, 503), body
    return list(body["deliveries"]) if status == 200 else []


def _delivered(url: str, order_id: str) -> list[dict[str, Any]] | None:
    """The order's deliveries once there is a paid event and all are DELIVERED."""
    deliveries = _deliveries(url, order_id)
    done = any(d["type"] == "order.paid" for d in deliveries) and all(
        d["state"] == "DELIVERED" for d in deliveries
    )
    return deliveries if done else None


def _received_for(receiver: WebhookReceiver, order_id: str) -> list[Received]:
    return [r for r in receiver.snapshot() if r.event["data"]["order"]["order_id"] == order_id]


def test_registration_answers_201_with_location_and_a_secret_shown_once(strict: str) -> None:
    status, endpoint, headers = _register(strict, _PUBLIC_URL)
    assert status == 201, endpoint
    assert headers["Location"] == f"/webhooks/{endpoint['endpoint_id']}"
    assert endpoint["endpoint_id"].startswith("we_")
    assert endpoint["url"] == _PUBLIC_URL
    assert endpoint["secret"].startswith("whsec_")
    listed = list_endpoints(strict)
    assert [e["endpoint_id"] for e in listed] == [endpoint["endpoint_id"]]
    assert listed[0]["url"] == _PUBLIC_URL
    assert all("secret" not in e for e in listed)


@pytest.mark.parametrize(
    "endpoint_url",
    [
        "http://127.0.0.1:8080/hooks",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://localhost/",
        "ftp://example.com/hooks",
        "https://user:pw@example.com/hooks",
        "https://example.com/" + "a" * 2980,
    ],
)
def test_a_private_local_or_malformed_url_is_refused_400_naming_url(
    strict: str, endpoint_url: str
) -> None:
    status, body, _ = _register(strict, endpoint_url)
    assert status == 400, body
    assert body["error"] == "invalid_request"
    assert _fields(body) == ["url"], body
    assert list_endpoints(strict) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (["https://example.com/hooks"], "$"),
        ({}, "url"),
        (b"{not json", "$"),
    ],
    ids=["not-an-object", "url-missing", "not-json"],
)
def test_a_registration_body_that_is_not_an_endpoint_is_refused_400_naming_the_field(
    strict: str, body: Any, field: str
) -> None:
    status, answer, _ = http_json("POST", f"{strict}/webhooks", body, auth_headers())
    assert status == 400, answer
    assert _fields(answer) == [field], answer
    assert list_endpoints(strict) == []


def test_every_webhook_route_without_an_api_key_answers_401(strict: str, stack: Stack) -> None:
    endpoint = _registered(strict, _PUBLIC_URL)
    order_id = stack.paid_order(strict)
    for method, path, body in (
        ("POST", "/webhooks", {"url": _PUBLIC_URL}),
        ("GET", "/webhooks", None),
        ("DELETE", f"/webhooks/{endpoint['endpoint_id']}", None),
        ("GET", f"/orders/{order_id}/webhooks", None),
        ("POST", f"/orders/{order_id}/webhooks/resend", {}),
    ):
        status, answer, _ = http_json(method, f"{strict}{path}", body, _NO_KEY)
        assert status == 401, (method, path, answer)
    assert [e["endpoint_id"] for e in list_endpoints(strict)] == [endpoint["endpoint_id"]]


def test_another_client_neither_sees_nor_deletes_nor_resends_the_clients_webhooks(
    strict: str, stack: Stack
) -> None:
    endpoint = _registered(strict, _PUBLIC_URL)
    other = auth_headers(OTHER_API_KEY)
    status, body, _ = http_json(
        "DELETE", f"{strict}/webhooks/{endpoint['endpoint_id']}", headers=other
    )
    assert status == 404, body
    status, listed, _ = http_json("GET", f"{strict}/webhooks", headers=other)
    assert status == 200, listed
    assert endpoint["endpoint_id"] not in {e["endpoint_id"] for e in listed["endpoints"]}
    assert [e["endpoint_id"] for e in list_endpoints(strict)] == [endpoint["endpoint_id"]]

    order_id = stack.paid_order(strict)
    status, body, _ = http_json("GET", f"{strict}/orders/{order_id}/webhooks", headers=other)
    assert status == 404, body
    status, body, _ = http_json("POST", f"{strict}/orders/{order_id}/webhooks/resend", {}, other)
    assert status == 404, body


def test_a_forged_forwarding_signature_on_order_deliveries_is_not_trusted(
    strict: str, stack: Stack
) -> None:
    order_id = stack.paid_order(strict)
    path = f"/orders/{order_id}/webhooks"
    timestamp, signature = sign_forward(
        b"not-the-cluster-secret", "GET", path, TEST_CLIENT, b"", time.time()
    )
    forged = {FORWARDED_HEADER: f"{timestamp} {signature}", CLIENT_HEADER: TEST_CLIENT}
    status, body, _ = http_json("GET", f"{strict}{path}", headers={**_NO_KEY, **forged})
    assert status == 401, body
    # The same request signed with the cluster secret is a worker's: answered (the only owner).
    signed = forwarded_headers("GET", path)
    status, body, _ = http_json("GET", f"{strict}{path}", headers={**_NO_KEY, **signed})
    assert status == 200, body


def test_the_sixth_endpoint_of_a_client_answers_409(strict: str) -> None:
    for n in range(5):
        _registered(strict, f"{_PUBLIC_URL}/{n}")
    status, body, _ = _register(strict, f"{_PUBLIC_URL}/5")
    assert status == 409, body
    assert _fields(body) == ["url"], body
    assert len(list_endpoints(strict)) == 5


def test_no_event_is_delivered_to_an_endpoint_after_its_delete(
    permissive: str, receiver: WebhookReceiver
) -> None:
    endpoint = _registered(permissive, receiver.url)
    first = str(place(permissive, order_body())["order_id"])
    assert get_terminal(permissive, first)["status"] == "PAID"
    paid_at = time.monotonic()
    delivered = poll_until(lambda: _delivered(permissive, first), 30, 0.1, "first order's events")
    # How long a paid order's events took to arrive: the margin for the second order's.
    margin = max(1.0, 3 * (time.monotonic() - paid_at))
    assert {r.event["id"] for r in _received_for(receiver, first)} == {
        d["event_id"] for d in delivered
    }

    status, body, _ = http_json(
        "DELETE", f"{permissive}/webhooks/{endpoint['endpoint_id']}", headers=auth_headers()
    )
    assert status == 204, body
    second = str(place(permissive, order_body())["order_id"])
    assert get_terminal(permissive, second)["status"] == "PAID"
    deadline = time.monotonic() + margin
    while time.monotonic() < deadline:
        assert _deliveries(permissive, second) == []
        assert _received_for(receiver, second) == []
        time.sleep(0.1)


def test_resend_delivers_the_same_events_again_as_their_second_attempt(
    permissive: str, receiver: WebhookReceiver
) -> None:
    _registered(permissive, receiver.url)
    order_id = str(place(permissive, order_body())["order_id"])
    assert get_terminal(permissive, order_id)["status"] == "PAID"
    delivered = poll_until(lambda: _delivered(permissive, order_id), 30, 0.1, "the events")
    event_ids = {d["event_id"] for d in delivered}
    assert all(d["attempt_count"] == 1 for d in delivered), delivered

    status, body, headers = http_json("POST", f"{permissive}/orders/{order_id}/webhooks/resend")
    assert status == 202, body
    assert body["resending"] == len(delivered)
    assert headers["Location"] == f"/orders/{order_id}/webhooks"

    def again() -> list[Received] | None:
        seconds = [
            r
            for r in _received_for(receiver, order_id)
            if r.headers["Orderflow-Delivery-Attempt"] == "2"
        ]
        return seconds if len(seconds) >= len(event_ids) else None

    resent = poll_until(again, 30, 0.1, "the events sent again")
    assert sorted(r.headers["Orderflow-Event-Id"] for r in resent) == sorted(event_ids)
    assert all(r.event["id"] == r.headers["Orderflow-Event-Id"] for r in resent)

    def counted_twice() -> list[dict[str, Any]] | None:
        deliveries = _delivered(permissive, order_id)
        twice = deliveries and all(d["attempt_count"] == 2 for d in deliveries)
        return deliveries if twice else None

    listed = poll_until(counted_twice, 30, 0.1, "attempt_count 2 in GET .../webhooks")
    assert {d["event_id"] for d in listed} == event_ids

    unknown = {"event_id": "evt_" + "0" * 24}
    url = f"{permissive}/orders/{order_id}/webhooks/resend"
    status, body, _ = http_json("POST", url, unknown)
    assert status == 404, body
    status, body, _ = http_json("POST", url, {"event_id": "not-an-event"})
    assert status == 400, body
    assert _fields(body) == ["event_id"], body
