"""The worker's metrics: a registry per app, bounded labels, gateway outcomes, valid exposition."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orderflow.domain.order import OrderStatus
from orderflow.domain.payment import Approved, Decline, Declined, GatewayCharge
from orderflow.domain.refund import GatewayRefund, RefundDeclined, Refunded, RefundOutcome
from orderflow.gateway.base import (
    ChargeRequest,
    CircuitOpenError,
    GatewayError,
    PermanentGatewayError,
    RefundRequest,
    TransientGatewayError,
)
from orderflow.metrics import MeteredGateway, Metrics, dead_letter_reason
from tests.unit.builders import pending_order


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the rendered exposition, parsed back (so the output must be valid)."""
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_two_apps_in_one_process_have_their_own_registries() -> None:
    first, second = Metrics(), Metrics()
    first.orders_created.inc()

    assert samples(first)[("orderflow_orders_created_total", ())] == 1
    assert samples(second)[("orderflow_orders_created_total", ())] == 0


def test_terminal_order_counts_status_decline_code_and_latency_from_created_at() -> None:
    metrics = Metrics()
    order = replace(
        pending_order(),
        status=OrderStatus.PAYMENT_FAILED,
        created_at="2026-01-01T00:00:00Z",
        decline=Decline("insufficient_funds", "no", True),
    )
    created = 1767225600.0  # 2026-01-01T00:00:00Z

    metrics.order_terminal(order, now=created + 0.3)

    found = samples(metrics)
    assert found[("orderflow_orders_terminal_total", (("status", "PAYMENT_FAILED"),))] == 1
    assert found[("orderflow_payment_declines_total", (("code", "insufficient_funds"),))] == 1
    latency = (("status", "PAYMENT_FAILED"),)
    assert found[("orderflow_order_completion_seconds_sum", latency)] == pytest.approx(0.3)
    assert found[("orderflow_order_completion_seconds_bucket", (("le", "0.25"), *latency))] == 0
    assert found[("orderflow_order_completion_seconds_bucket", (("le", "0.5"), *latency))] == 1


def test_label_values_stay_bounded_whatever_the_gateway_or_the_error_says() -> None:
    metrics = Metrics()
    order = replace(
        pending_order(),
        status=OrderStatus.PAYMENT_FAILED,
        decline=Decline("made_up_code_1234", "?", False),
    )
    metrics.order_terminal(order)

    assert samples(metrics)[("orderflow_payment_declines_total", (("code", "other"),))] == 1
    assert dead_letter_reason("malformed: bad JSON at byte 12") == "malformed"
    assert dead_letter_reason("refused: amount differs (100 != 200)") == "refused"
    assert dead_letter_reason("payment result for an unknown order") == "unknown_order"
    assert dead_letter_reason("unexpected: KeyError('x')") == "unexpected"
    assert dead_letter_reason("something new") == "other"


class ScriptedGateway:
    """Answers (or raises) what it is told, in order."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)

    async def _next(self) -> object:
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def charge(self, request: ChargeRequest) -> Approved | Declined:
        answer = await self._next()
        assert isinstance(answer, Approved | Declined)
        return answer

    async def find_charge(self, idempotency_key: str) -> GatewayCharge | None:
        answer = await self._next()
        assert answer is None or isinstance(answer, GatewayCharge)
        return answer

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        answer = await self._next()
        assert isinstance(answer, Refunded | RefundDeclined)
        return answer

    async def find_refund(self, idempotency_key: str) -> GatewayRefund | None:
        answer = await self._next()
        assert answer is None or isinstance(answer, GatewayRefund)
        return answer

    async def close(self) -> None:
        pass


def test_gateway_calls_are_counted_by_outcome_and_timed() -> None:
    errors: list[GatewayError] = [
        TransientGatewayError("HTTP 503", status=503),
        TransientGatewayError("no answer in 5s"),
        CircuitOpenError("circuit open"),
        PermanentGatewayError("HTTP 400", status=400),
    ]
    gateway = ScriptedGateway(
        Approved("ch_1"), Declined(Decline("card_declined", "no", False)), *errors, None
    )
    ticks = iter(range(100))
    metrics = Metrics()
    metered = MeteredGateway(gateway, metrics, clock=lambda: float(next(ticks)))
    request = ChargeRequest("key", "ord_1", 100, "EUR", "tok_visa")

    async def run() -> None:
        await metered.charge(request)
        await metered.charge(request)
        for _ in errors:
            with pytest.raises(GatewayError):
                await metered.charge(request)
        assert await metered.find_charge("key") is None

    asyncio.run(run())

    found = samples(metrics)

    def count(operation: str, outcome: str) -> float:
        labels = (("operation", operation), ("outcome", outcome))
        return found.get(("orderflow_gateway_requests_total", labels), 0)

    assert [
        count("charge", o) for o in ("approved", "declined", "transient", "unknown", "rejected")
    ] == [1, 1, 2, 1, 1]
    assert count("lookup", "not_found") == 1
    duration = (("operation", "charge"),)
    assert found[("orderflow_gateway_request_duration_seconds_count", duration)] == 6
    assert found[("orderflow_gateway_request_duration_seconds_sum", duration)] == 6.0


def test_indexed_gauges_and_consumer_lag_are_read_at_scrape_time() -> None:
    unknown = {"ord_a": 1.0}
    lag = {("order.created", 3): 7}
    metrics = Metrics()
    metrics.watch(lambda: len(unknown), lambda: 5, lambda: lag)

    assert samples(metrics)[("orderflow_payments_unknown", ())] == 1
    unknown["ord_b"] = 2.0
    lag[("order.created", 3)] = 2
    found = samples(metrics)

    assert found[("orderflow_payments_unknown", ())] == 2
    assert found[("orderflow_orders_pending", ())] == 5
    assert found[("orderflow_consumer_lag", (("partition", "3"), ("topic", "order.created")))] == 2
