"""A running worker seen from outside: ``/metrics`` moves as orders flow (real broker, sandbox
gateway with faults), and every answer of the API conforms to its own ``/openapi.json``."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from prometheus_client.parser import text_string_to_metric_families
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from orderflow.topics import ORDER_COMMANDS
from tests.harness import ManagedProcess, http_json, poll_until, start_sandbox, start_worker
from tests.orders_client import get_terminal, order_body, set_faults

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def observed(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ManagedProcess, ManagedProcess]]:
    """A worker whose gateway calls give up fast, so that faults show up within seconds."""
    tmp = tmp_path_factory.mktemp("observe")
    sandbox = start_sandbox(tmp)
    try:
        worker = start_worker(
            tmp,
            kafka_bootstrap,
            sandbox.meta["url"],
            extra={"ORDERFLOW_GATEWAY_TIMEOUT": "1", "ORDERFLOW_GATEWAY_DEADLINE": "2"},
        )
        try:
            yield worker, sandbox
        finally:
            worker.stop()
    finally:
        sandbox.stop()


def scrape(url: str) -> tuple[str, Samples]:
    """``/metrics``: its content type and every sample, parsed as the exposition format."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        content_type, text = response.headers["Content-Type"], response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):  # raises on invalid exposition
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return content_type, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


class Conformance:
    """Checks answers against the worker's own OpenAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.registry: Registry[Any] = Registry().with_resource(
            "urn:orderflow:openapi", Resource.from_contents(document, DRAFT202012)
        )
        self.checked: list[tuple[str, str, int]] = []

    def check(
        self, method: str, template: str, status: int, body: Any, headers: dict[str, str]
    ) -> None:
        operation = self.document["paths"][template][method.lower()]
        assert str(status) in operation["responses"], (method, template, status, body)
        answer = operation["responses"][str(status)]
        ref = answer["content"]["application/json"]["schema"]["$ref"]
        schema = {"$ref": "urn:orderflow:openapi" + ref}
        Draft202012Validator(schema, registry=self.registry).validate(body)
        if status in (201, 202):  # the headers a client follows
            assert headers["Location"] == f"/orders/{body['order_id']}"
        self.checked.append((method, template, status))


def _produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=key, value=value)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_openapi_document_served_by_the_worker_is_valid_and_answers_conform_to_it(
    observed: tuple[ManagedProcess, ManagedProcess],
) -> None:
    worker, _ = observed
    url = worker.meta["url"]
    status, document, _ = http_json("GET", f"{url}/openapi.json")
    assert status == 200
    validate_openapi(document)
    api = Conformance(document)

    def call(
        method: str,
        template: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        status, answer, answer_headers = http_json(method, f"{url}{path}", body, headers)
        api.check(method, template, status, answer, answer_headers)
        return status, answer

    key = f"conform-{uuid.uuid4()}"
    status, created = call("POST", "/orders", "/orders", order_body(), {"Idempotency-Key": key})
    assert status == 201, created
    order_id = created["order_id"]
    assert call("POST", "/orders", "/orders", order_body(), {"Idempotency-Key": key})[0] == 201
    assert (
        call("POST", "/orders", "/orders", order_body(quantity=9), {"Idempotency-Key": key})[0]
        == 422
    )
    assert call("POST", "/orders", "/orders", {"items": [{"quantity": 0}], "x": 1})[0] == 400
    assert call("POST", "/orders", "/orders", b"{not json")[0] == 400
    assert (
        call("POST", "/orders", "/orders", order_body(), {"Content-Encoding": "compress"})[0] == 415
    )
    declined = call("POST", "/orders", "/orders", order_body("tok_chargeDeclined"))[1]
    assert call("GET", "/orders/{order_id}", f"/orders/{order_id}?wait=10")[1]["status"] == "PAID"
    terminal = get_terminal(url, declined["order_id"])
    api.check("GET", "/orders/{order_id}", 200, terminal, {})
    assert terminal["payment"]["decline_code"] == "card_declined"
    assert call("GET", "/orders/{order_id}", f"/orders/{order_id}?wait=99")[0] == 400
    assert call("GET", "/orders/{order_id}", f"/orders/ord_{uuid.uuid4().hex}")[0] == 404
    assert call("GET", "/orders/{order_id}", "/orders/nonsense")[0] == 404
    assert call("GET", "/health", "/health")[0] == 200
    assert call("GET", "/ready", "/ready")[0] == 200

    assert {status for _, _, status in api.checked} >= {200, 201, 400, 404, 415, 422}


def test_metrics_move_as_orders_flow_through_the_gateway_and_its_faults(
    observed: tuple[ManagedProcess, ManagedProcess], kafka_bootstrap: str
) -> None:
    worker, sandbox = observed
    url, gateway = worker.meta["url"], sandbox.meta["url"]
    content_type, before = scrape(url)
    assert content_type.startswith("text/plain; version=0.0.4")

    paid = http_json("POST", f"{url}/orders", order_body("tok_visa"))[1]
    failed = http_json("POST", f"{url}/orders", order_body("tok_chargeDeclinedExpiredCard"))[1]
    assert get_terminal(url, paid["order_id"])["status"] == "PAID"
    assert get_terminal(url, failed["order_id"])["status"] == "PAYMENT_FAILED"
    assert http_json("POST", f"{url}/orders", {"currency": "EUR"})[0] == 400
    assert http_json("GET", f"{url}/orders/ord_{uuid.uuid4().hex}")[0] == 404

    # The gateway answers 5xx: the charge is "transient", the payment UNKNOWN (a gauge).
    set_faults(gateway, error_rate=1.0)
    try:
        troubled = http_json("POST", f"{url}/orders", order_body("tok_visa"))[1]

        def transient_and_unknown() -> bool:
            samples = scrape(url)[1]
            transient = moved(
                before,
                samples,
                "orderflow_gateway_requests_total",
                operation="charge",
                outcome="transient",
            )
            return transient >= 1 and value(samples, "orderflow_payments_unknown") >= 1

        poll_until(
            transient_and_unknown, 60, 0.5, "a transient charge and an UNKNOWN payment in /metrics"
        )
        # No answer in time (a charge may have happened): "unknown". The UNKNOWN payment is
        # looked up before any new charge, so the lookup meets the timeouts first.
        set_faults(gateway, timeout_rate=1.0, hang_s=3.0)

        def unknowns(samples: Samples) -> float:
            return sum(
                moved(
                    before,
                    samples,
                    "orderflow_gateway_requests_total",
                    operation=operation,
                    outcome="unknown",
                )
                for operation in ("charge", "lookup")
            )

        poll_until(
            lambda: unknowns(scrape(url)[1]) >= 1, 60, 0.5, "an unknown gateway outcome in /metrics"
        )
    finally:
        set_faults(gateway)
    assert get_terminal(url, troubled["order_id"])["status"] == "PAID"

    # A poison command: dead-lettered, counted by its bounded reason.
    _produce(kafka_bootstrap, ORDER_COMMANDS, b"ord_poison", b"not json")
    poll_until(
        lambda: (
            moved(before, scrape(url)[1], "orderflow_dead_letters_total", reason="malformed") >= 1
        ),
        60,
        0.5,
        "the dead letter counted",
    )

    def settled() -> Samples | None:
        samples = scrape(url)[1]
        return samples if value(samples, "orderflow_payments_unknown") == 0 else None

    after = poll_until(settled, 60, 0.5, "no UNKNOWN payment left")

    def delta(name: str, **labels: str) -> float:
        return moved(before, after, name, **labels)

    assert delta("orderflow_orders_created_total") >= 3
    assert delta("orderflow_orders_terminal_total", status="PAID") >= 2
    assert delta("orderflow_orders_terminal_total", status="PAYMENT_FAILED") >= 1
    assert delta("orderflow_payment_declines_total", code="expired_card") >= 1
    assert delta("orderflow_order_completion_seconds_count", status="PAID") >= 2
    for outcome in ("approved", "declined", "transient"):
        assert delta("orderflow_gateway_requests_total", operation="charge", outcome=outcome) >= 1
    assert unknowns(after) >= 1
    # UNKNOWN payments are looked up before any new charge.
    assert (
        sum(
            delta("orderflow_gateway_requests_total", operation="lookup", outcome=outcome)
            for outcome in ("found", "not_found")
        )
        >= 1
    )
    assert delta("orderflow_gateway_request_duration_seconds_count", operation="charge") >= 4
    assert delta("orderflow_reconciliations_total") >= 1
    assert delta("orderflow_http_requests_total", method="POST", route="/orders", status="201") >= 3
    assert delta("orderflow_http_requests_total", method="POST", route="/orders", status="400") >= 1
    assert (
        delta(
            "orderflow_http_requests_total", method="GET", route="/orders/{order_id}", status="200"
        )
        >= 3
    )
    assert (
        delta(
            "orderflow_http_requests_total", method="GET", route="/orders/{order_id}", status="404"
        )
        >= 1
    )
    assert delta("orderflow_http_requests_total", method="GET", route="/metrics", status="200") >= 1
    # Never a raw path as a label value (unbounded cardinality).
    assert not [key for key in after if any("ord_" in v for _, v in key[1])]
    # Known at any time since the worker settled: its assignment and how long it took.
    assert value(after, "orderflow_rebalances_total") >= 1
    assert value(after, "orderflow_partitions_unready_seconds_count") >= 1
    lags = {dict(labels)["topic"] for name, labels in after if name == "orderflow_consumer_lag"}
    assert ORDER_COMMANDS in lags
    assert ("orderflow_stall_nudges_total", frozenset()) in after
    assert ("orderflow_orders_pending", frozenset()) in after
    # The excerpt a reader of `pytest -s` sees (the docs quote such a run).
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        print(response.read().decode())
