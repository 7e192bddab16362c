"""OpenTelemetry tracing of one order's path, off unless ``ORDERFLOW_TRACING`` asks for it.

One trace follows one order: the POST's server span, the ``order.place`` publish, the order
service's handling, the ``order.created`` publish, the payment service's handling, the gateway HTTP
call, the payment result's publish and the order service's terminal transition. The W3C
``traceparent`` travels in Kafka record headers and in HTTP headers (forwarded requests between
workers, gateway requests).

``faust.contrib.opentelemetry`` (faust-streaming 0.15) gives a sensor that opens a span per event
Faust *delivers* to a stream and reads ``traceparent`` from the record's headers; it writes none.
Our agents take batches (``take_events``) and handle each event later, after the sensor's span
has ended, so its span would not parent the handling; the spans here are opened around each
event's handling instead (``consuming``), and every record we produce carries the context
(``TracedTopic``). HTTP spans come from an aiohttp server middleware and a client ``TraceConfig``.

Off (the default) nothing of OpenTelemetry is imported and every hook is a no-op. Spans carry
the order id (``order_id``) and never a body or a header value: no payment token, API key or
gateway secret can reach a span.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web

from orderflow.domain.tokens import mask_text
from orderflow.logs import current_order

__all__ = [
    "TracedTopic",
    "client_trace_configs",
    "consuming",
    "enabled",
    "server_middlewares",
    "setup",
]

#: The tracer once ``setup`` has configured one; None: tracing is off.
_tracer: Any = None

#: Spans on the console: one JSON object per line, after this marker (easy to grep and parse).
CONSOLE_MARKER = "otel-span "

# Only the order API is traced: probes (/health, /ready, /metrics) would bury the orders.
_TRACED_PATHS = ("/orders",)


def enabled() -> bool:
    """Whether spans are recorded (``setup`` was called with a mode other than "off")."""
    return _tracer is not None


def setup(mode: str, service_name: str = "orderflow") -> None:
    """Install the SDK and its exporter: ``console`` (stdout) or ``otlp`` (OTLP/HTTP, configured
    by the standard ``OTEL_EXPORTER_OTLP_*`` variables). ``off``: nothing is imported."""
    global _tracer
    if mode == "off" or _tracer is not None:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if mode == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:

        def one_line(span: ReadableSpan) -> str:
            return f"{CONSOLE_MARKER}{span.to_json(indent=None)}\n"

        exporter = ConsoleSpanExporter(out=sys.stdout, formatter=one_line)
    # shutdown_on_exit (the default): the last spans are exported when the worker exits.
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("orderflow")


@contextlib.contextmanager
def _span(name: str, **kwargs: Any) -> Iterator[Any]:
    """``start_as_current_span`` whose failure is recorded masked: OpenTelemetry's own recording
    keeps the exception's message and stack trace, which may quote an event (a card token)."""
    with _tracer.start_as_current_span(
        name, record_exception=False, set_status_on_exception=False, **kwargs
    ) as span:
        try:
            yield span
        except BaseException as exc:
            from opentelemetry import trace

            span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
            stack = "".join(traceback.format_exception(exc))
            span.record_exception(
                exc,
                attributes={
                    "exception.message": mask_text(str(exc)),
                    "exception.stacktrace": mask_text(stack),
                },
            )
            raise


def _order_id(key: Any) -> str | None:
    if isinstance(key, bytes):
        return key.decode(errors="replace")
    return key if isinstance(key, str) else None


def _header_items(headers: Any) -> list[tuple[str, Any]]:
    if not headers:
        return []
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def _carrier(headers: Any) -> dict[str, str]:
    """Kafka record headers as the text map the propagator reads (first value of a key wins)."""
    carrier: dict[str, str] = {}
    for key, value in _header_items(headers):
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        carrier.setdefault(str(key).lower(), str(value))
    return carrier


@contextlib.contextmanager
def consuming(event: Any) -> Iterator[None]:
    """A CONSUMER span, child of the producer's (record headers), current while ``event`` is
    handled: what the handler sends or calls nests under it."""
    if _tracer is None:
        yield
        return
    from opentelemetry import propagate, trace

    message = event.message
    parent = propagate.extract(_carrier(getattr(message, "headers", None)))
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": message.topic,
        "messaging.destination.partition.id": str(message.partition),
        "messaging.kafka.message.offset": message.offset,
    }
    order_id = _order_id(message.key)
    if order_id is not None:
        attributes["order_id"] = order_id
    with _span(
        f"{message.topic} process",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    ):
        yield


class TracedTopic:
    """Wraps a Faust topic: each ``send`` is a PRODUCER span whose context the record carries
    (``traceparent`` header), so the consumer's span continues the same trace."""

    def __init__(self, topic: Any) -> None:
        self.topic = topic

    async def send(self, *, key: bytes, value: bytes, headers: Any = None) -> Any:
        if _tracer is None:
            return await self.topic.send(key=key, value=value, headers=headers)
        from opentelemetry import propagate, trace

        name = ",".join(getattr(self.topic, "topics", None) or ("?",))
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": name,
        }
        order_id = _order_id(key)
        if order_id is not None:
            attributes["order_id"] = order_id
        with _span(f"{name} publish", kind=trace.SpanKind.PRODUCER, attributes=attributes):
            context: dict[str, str] = {}
            propagate.inject(context)
            traced = [(k, v) for k, v in _header_items(headers) if k.lower() not in context]
            traced += [(k, v.encode()) for k, v in context.items()]
            return await self.topic.send(key=key, value=value, headers=traced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.topic, name)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _server_span(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _tracer is None or not request.path.startswith(_TRACED_PATHS):
        return await handler(request)
    from opentelemetry import propagate, trace

    # The route template, never the raw path, names the span (an order id per name would make
    # every span name unique); the id itself is an attribute.
    route = "/orders" if request.path.rstrip("/") == "/orders" else "/orders/{order_id}"
    parent = propagate.extract(dict(request.headers))
    with _span(
        f"{request.method} {route}",
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes={
            "http.request.method": request.method,
            "http.route": route,
            "orderflow.forwarded": "X-Orderflow-Forwarded" in request.headers,
        },
    ) as span:
        order_id = request.match_info.get("order_id")
        if order_id:
            span.set_attribute("order_id", order_id)
        response = await handler(request)
        location = response.headers.get("Location", "")
        if not order_id and location.startswith("/orders/"):  # a POST names its order here
            span.set_attribute("order_id", location.rsplit("/", 1)[-1])
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(trace.StatusCode.ERROR)
        return response


def server_middlewares() -> list[Any]:
    """The aiohttp middlewares of the worker's web server (none when tracing is off)."""
    return [_server_span] if _tracer is not None else []


def _order_in_path(path: str) -> str | None:
    """The order id of an ``/orders/{id}`` path (a URL or a ``Location``), else None."""
    prefix, _, rest = path.partition("/orders/")
    return rest.split("/", 1)[0] or None if not prefix and rest else None


async def _on_request_start(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
) -> None:
    from opentelemetry import propagate, trace

    # No query string in the attributes: nothing secret goes there today, nor may tomorrow.
    attributes: dict[str, Any] = {
        "http.request.method": params.method,
        "server.address": params.url.host or "",
        "url.path": params.url.path,
    }
    order_id = current_order.get() or _order_in_path(params.url.path)
    if order_id:
        attributes["order_id"] = order_id
    # Named by the route, never the raw path (one name per order would defeat grouping).
    path = params.url.path.replace(order_id, "{order_id}") if order_id else params.url.path
    span = _tracer.start_span(
        f"{params.method} {path}", kind=trace.SpanKind.CLIENT, attributes=attributes
    )
    ctx.otel_span, ctx.otel_order = span, order_id
    context: dict[str, str] = {}
    propagate.inject(context, context=trace.set_span_in_context(span))
    for key, value in context.items():
        params.headers[key] = value  # replaces any traceparent copied from an inbound request


async def _on_request_end(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
) -> None:
    span = getattr(ctx, "otel_span", None)
    if span is not None:
        span.set_attribute("http.response.status_code", params.response.status)
        placed = _order_in_path(params.response.headers.get("Location", ""))
        if placed and not ctx.otel_order:  # a forwarded POST learns its order id from the owner
            span.set_attribute("order_id", placed)
        span.end()


async def _on_request_exception(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceRequestExceptionParams,
) -> None:
    span = getattr(ctx, "otel_span", None)
    if span is not None:
        from opentelemetry import trace

        # The exception's type only: a message may quote a URL or a reply.
        span.set_status(trace.StatusCode.ERROR, type(params.exception).__name__)
        span.end()


def client_trace_configs() -> list[aiohttp.TraceConfig]:
    """For an ``aiohttp.ClientSession``: a CLIENT span per request, and its ``traceparent``
    header on the request (none when tracing is off)."""
    if _tracer is None:
        return []
    config = aiohttp.TraceConfig()
    config.on_request_start.append(_on_request_start)
    config.on_request_end.append(_on_request_end)
    config.on_request_exception.append(_on_request_exception)
    return [config]
