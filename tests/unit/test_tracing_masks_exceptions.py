"""A span records a failure without the payment token an exception message may quote."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orderflow import tracing


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def test_a_failing_handler_span_never_records_the_token_in_its_exception(
    spans: InMemorySpanExporter,
) -> None:
    # Regression: start_as_current_span recorded the exception (message, stack trace) unmasked.
    message = SimpleNamespace(
        topic="order.created", partition=0, offset=7, key=b"ord-1", headers=[]
    )
    with pytest.raises(ValueError), tracing.consuming(SimpleNamespace(message=message)):
        raise ValueError('bad event {"payment": {"token": "tok_secretVisa4242"}}')
    (span,) = spans.get_finished_spans()
    shown = repr([dict(e.attributes or {}) for e in span.events]) + repr(span.status)
    assert "tok_secretVisa4242" not in shown
    assert span.status.status_code.name == "ERROR"
    assert "ValueError" in shown
