"""The gateway call is a CLIENT span of the order's trace and carries its ``traceparent``; the
span holds the order id, never the token or the API key (an in-process server records headers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from orderflow import tracing
from orderflow.domain.payment import idempotency_key_for
from orderflow.gateway.base import ChargeRequest, GatewayError
from orderflow.gateway.http import HttpPaymentGateway
from orderflow.logs import order_context

KEY = "sk_test_traced_0123456789"
TOKEN = "tok_visa_traced_secret"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, in this process, into memory (no global provider is installed)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield exporter


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A gateway that records each request's headers and refuses it (the answer is not tested)."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"error": {"code": "nope"}}, status=400)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_the_gateway_request_carries_the_traceparent_of_its_client_span(
    spans: InMemorySpanExporter, recorder: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = recorder
    client = HttpPaymentGateway(url, api_key=KEY, deadline=2)
    request = ChargeRequest(idempotency_key_for("ord_t1"), "ord_t1", 500, "EUR", TOKEN)
    try:
        with (
            tracing._tracer.start_as_current_span("order.created process") as parent,
            order_context("ord_t1"),
            pytest.raises(GatewayError),
        ):
            await client.charge(request)
    finally:
        await client.close()
    finished = spans.get_finished_spans()
    calls = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert seen and len(calls) == len(seen)
    for call, headers in zip(calls, seen, strict=True):
        assert call.parent is not None
        assert call.parent.span_id == parent.get_span_context().span_id
        assert call.context.trace_id == parent.get_span_context().trace_id
        version, trace_id, span_id, flags = headers["traceparent"].split("-")
        assert (version, trace_id, span_id) == (
            "00",
            f"{call.context.trace_id:032x}",
            f"{call.context.span_id:016x}",
        )
        assert int(flags, 16) & 1  # sampled
        assert call.attributes is not None and call.attributes["order_id"] == "ord_t1"
        assert call.name == "POST /v1/charges"
    text = repr([(s.name, dict(s.attributes or {}), s.status) for s in finished])
    assert KEY not in text and TOKEN not in text and "Bearer" not in text


async def test_with_tracing_off_the_request_has_no_traceparent(
    recorder: tuple[str, list[dict[str, str]]],
) -> None:
    assert not tracing.enabled()
    url, seen = recorder
    client = HttpPaymentGateway(url, api_key=KEY, deadline=2)
    try:
        with pytest.raises(GatewayError):
            await client.charge(ChargeRequest("k", "ord_t2", 500, "EUR", TOKEN))
    finally:
        await client.close()
    assert seen and not any("traceparent" in h for h in seen)
