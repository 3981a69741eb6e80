"""OpenTelemetry spans of each hop, exported over OTLP/HTTP when ``BEACON_OTEL_ENDPOINT`` is set.

Off (the default), :func:`start` returns None after one check and the SDK is never imported:
the hops still carry ``traceparent`` with span ids of their own (``beacon.trace``). On, each process
names itself (``gateway-whatsapp``, ``worker``, ``api``...) and records one span per hop of a message,
its trace id the message's ``trace_id`` and its parent the span named by the incoming ``traceparent``;
the span id it writes on the next hop's record or request is its own, so the spans of one message
form one tree across processes.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from beacon.config import Settings
from beacon.trace import now_ms, trace_id_of

log = logging.getLogger("beacon.otel")

_tracer: Any = None
_provider: Any = None
#: The trace id the next root span takes (the message's), read by the id generator.
_root_trace_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("beacon_root_trace_id", default=None)


def setup(settings: Settings, service: str) -> bool:
    """Export this process's spans as ``service`` when BEACON_OTEL_ENDPOINT is set; whether it is."""
    global _tracer, _provider
    if not settings.otel_endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class MessageTraceIds(RandomIdGenerator):
        """Root spans take the message's trace id, so every hop of one message shares it."""

        def generate_trace_id(self) -> int:
            forced = _root_trace_id.get()
            return forced if forced is not None else super().generate_trace_id()

    endpoint = settings.otel_endpoint.rstrip("/") + "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": service}), id_generator=MessageTraceIds())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    _tracer, _provider = provider.get_tracer("beacon"), provider
    log.info("OpenTelemetry: spans of %s exported to %s", service, endpoint)
    return True


def enabled() -> bool:
    return _tracer is not None


class Span:
    """A hop's span, begun; :meth:`end` records it."""

    def __init__(self, span: Any) -> None:
        self._span = span
        self.span_id: str = format(span.get_span_context().span_id, "016x")

    def end(self, end_ms: float | None = None, attributes: Attributes | None = None) -> None:
        if attributes:
            self._span.set_attributes(attributes)
        self._span.end(end_time=int((now_ms() if end_ms is None else end_ms) * 1_000_000))


Attributes = dict[str, str | float | int]


def start(name: str, trace_id: str, parent: tuple[str, str] | None = None, start_ms: float | None = None,
          attributes: Attributes | None = None) -> Span | None:
    """Begin the span ``name`` of message trace ``trace_id``, child of ``parent`` (trace id, span id from a
    ``traceparent``) or a root; None when spans are off."""
    if _tracer is None:
        return None
    from opentelemetry import trace as api
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    tid = int(trace_id_of(trace_id), 16)
    context = None
    if parent is not None:
        remote = SpanContext(trace_id=int(parent[0], 16), span_id=int(parent[1], 16), is_remote=True,
                             trace_flags=TraceFlags(TraceFlags.SAMPLED))
        context = api.set_span_in_context(NonRecordingSpan(remote))
    token = _root_trace_id.set(tid)
    try:
        span = _tracer.start_span(name, context=context, attributes=attributes or None,
                                  start_time=int((now_ms() if start_ms is None else start_ms) * 1_000_000))
    finally:
        _root_trace_id.reset(token)
    return Span(span)


def shutdown() -> None:
    """Export what is left (at a clean stop)."""
    if _provider is not None:
        _provider.shutdown()
