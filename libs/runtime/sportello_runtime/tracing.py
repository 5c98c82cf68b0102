"""OpenTelemetry: one trace per ticket journey, from the HTTP request through every event hop.

The HTTP spans come from FastAPI's own support (``app.py``), the publish and handler
spans from the bus (``bus.py``), which carries the context in ``traceparent``.

Exports over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set. Otherwise no span
is recorded (nobody would read it): the spans are the SDK's non-recording ones, which
still carry the trace and span ids, so ``traceparent`` still crosses every hop and the
log lines still name their trace. Recording them for nothing was about a tenth of the
bus's CPU per event. A tracer provider installed before (tests install one with an
in-memory exporter) is kept.
"""

from __future__ import annotations

import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

_lock = threading.Lock()


def configure_tracing(service_name: str, otlp_endpoint: str | None) -> trace.TracerProvider:
    with _lock:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            return current
        provider = tracer_provider(service_name, otlp_endpoint)
        trace.set_tracer_provider(provider)
        return provider


def tracer_provider(service_name: str, otlp_endpoint: str | None) -> TracerProvider:
    """Recording and exporting with an endpoint; ids alone without one."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                              sampler=None if otlp_endpoint else ALWAYS_OFF)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider
