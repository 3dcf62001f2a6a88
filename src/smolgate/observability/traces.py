"""OpenTelemetry traces: from each finished `RequestRecord`, a server span for the request and a client span per
upstream attempt (so retries and fallbacks show as siblings), with the GenAI semantic conventions, exported in
batches over OTLP/HTTP.

Imported only when `observability.traces.endpoint` is set: with tracing off nothing of OpenTelemetry is loaded
and no request pays for it. Spans are built after the fact with the record's own timestamps, so the request
path carries no tracing code at all; `finished` only hands spans to the batch processor's queue.
"""

from __future__ import annotations

import threading

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..config import TracesConfig
from ..telemetry import AttemptRecord, RequestRecord

# gen_ai.provider.name values of the semantic conventions, by upstream protocol
PROVIDER_NAMES = {
    "openai": "openai",
    "openai-responses": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "ollama": "ollama",
    "local": "smolgate.local",
}
_propagator = TraceContextTextMapPropagator()
EXPORT_TIMEOUT = 10.0  # seconds per export, retries included
FLUSH_TIMEOUT = 3.0  # seconds, at shutdown


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class Tracer:
    """The Observer that turns finished requests into spans."""

    def __init__(self, cfg: TracesConfig) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": cfg.service_name}))
        exporter = OTLPSpanExporter(
            endpoint=cfg.endpoint,
            headers={k: v.reveal() for k, v in cfg.headers.items()},
            timeout=EXPORT_TIMEOUT,
        )
        self._exporter = exporter
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("smolgate")

    def finished(self, rec: RequestRecord) -> None:
        parent = _propagator.extract({"traceparent": rec.traceparent}) if rec.traceparent else Context()
        operation = "chat" if rec.generation else None
        start = _ns(rec.ts)
        attrs: dict[str, str | int | bool] = {
            "http.request.method": rec.method,
            "url.path": rec.path[:200],
            "http.response.status_code": rec.status,
            "smolgate.request_id": rec.request_id,
        }
        if rec.key_id is not None:
            attrs["smolgate.key_id"] = rec.key_id
        if operation is not None:
            attrs["gen_ai.operation.name"] = operation
            attrs["smolgate.client_protocol"] = rec.client_protocol or "none"
            attrs["smolgate.stream"] = rec.stream
            if rec.alias is not None:
                attrs["gen_ai.request.model"] = rec.alias[:200]
            if rec.usage is not None:
                attrs["gen_ai.usage.input_tokens"] = rec.usage.input_tokens
                attrs["gen_ai.usage.output_tokens"] = rec.usage.output_tokens
            if rec.ttft_ms is not None:
                attrs["smolgate.ttft_ms"] = round(rec.ttft_ms, 3)  # type: ignore[assignment]
        if rec.error_kind is not None:
            attrs["error.type"] = rec.error_kind
        name = f"{operation} {rec.alias[:80]}" if operation and rec.alias else f"{rec.method} {rec.path[:80]}"
        span = self.tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attrs, start_time=start
        )
        if rec.error_kind is not None or rec.status >= 500:
            span.set_status(Status(StatusCode.ERROR, rec.error_kind))
        ctx = set_span_in_context(span)
        last = len(rec.attempts) - 1
        for i, a in enumerate(rec.attempts):
            self._attempt(a, rec if i == last else None, ctx, operation or "chat")
        # The record's latency is measured on the monotonic clock, attempts on the wall clock: the request
        # ends no earlier than its last attempt, whatever the two clocks' drift.
        end = max(
            [start + int(rec.latency_ms * 1e6)] + [_ns(a.end) for a in rec.attempts if a.end is not None]
        )
        span.end(end_time=end)

    def _attempt(self, a: AttemptRecord, rec: RequestRecord | None, ctx: Context, operation: str) -> None:
        """One upstream attempt; `rec` for the last one (which produced the answer: it carries the usage)."""
        attrs: dict[str, str | int] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": PROVIDER_NAMES.get(a.upstream_protocol, a.upstream_protocol),
            "gen_ai.system": PROVIDER_NAMES.get(a.upstream_protocol, a.upstream_protocol),
            "gen_ai.request.model": a.upstream_model,
            "smolgate.provider": a.provider,
            "smolgate.account": a.account or "none",
        }
        if a.error_kind is None:
            attrs["gen_ai.response.model"] = a.upstream_model
        if a.status is not None:
            attrs["http.response.status_code"] = a.status
        if a.error_kind is not None:
            attrs["error.type"] = a.error_kind
        if rec is not None and rec.usage is not None:
            attrs["gen_ai.usage.input_tokens"] = rec.usage.input_tokens
            attrs["gen_ai.usage.output_tokens"] = rec.usage.output_tokens
        end = a.end if a.end is not None else rec.ts + rec.latency_ms / 1000 if rec is not None else a.start
        span = self.tracer.start_span(
            f"{operation} {a.upstream_model[:80]}",
            context=ctx,
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=_ns(a.start),
        )
        if a.error_kind is not None:
            span.set_status(Status(StatusCode.ERROR, a.error_kind))
        span.end(end_time=_ns(end))

    def shutdown(self) -> None:
        """Export what is queued, for at most FLUSH_TIMEOUT (a collector that is down must not hold up the
        process's exit), then stop."""
        # force_flush's own timeout does not cut an export that is retrying, hence the thread
        flush = threading.Thread(target=self.provider.force_flush, name="smolgate-trace-flush", daemon=True)
        flush.start()
        flush.join(FLUSH_TIMEOUT)
        if flush.is_alive():  # the collector is down and the export still retrying: end it
            self._exporter.shutdown()  # type: ignore[no-untyped-call]
        self.provider.shutdown()
