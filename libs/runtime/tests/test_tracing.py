"""Spans are recorded only where something exports them; their ids cross every hop anyway."""

from __future__ import annotations

from opentelemetry import propagate
from opentelemetry.sdk.trace.sampling import Decision

from sportello_runtime.tracing import tracer_provider


def test_without_an_endpoint_spans_are_not_recorded_but_carry_their_trace() -> None:
    tracer = tracer_provider("test", None).get_tracer("test")
    with tracer.start_as_current_span("publish") as parent:
        assert not parent.is_recording()
        assert parent.get_span_context().is_valid  # the logs' trace_id
        headers: dict[str, str] = {}
        propagate.inject(headers)
    assert headers["traceparent"].split("-")[1] == format(
        parent.get_span_context().trace_id, "032x")
    with tracer.start_as_current_span("handle", context=propagate.extract(headers)) as child:
        assert child.get_span_context().trace_id == parent.get_span_context().trace_id


def test_with_an_endpoint_spans_are_recorded() -> None:
    provider = tracer_provider("test", "http://127.0.0.1:1")
    try:
        decision = provider.sampler.should_sample(None, trace_id=1, name="publish").decision
        assert decision is Decision.RECORD_AND_SAMPLE
    finally:
        provider.shutdown()  # nothing recorded: nothing to send to the endpoint
