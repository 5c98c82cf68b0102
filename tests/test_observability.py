"""One trace per ticket journey, and the metrics SREs scrape."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from sportello_intake.app import create_app as create_intake
from sportello_intake.settings import IntakeSettings
from sportello_routing.app import create_app as create_routing
from sportello_routing.settings import RoutingSettings
from support.metrics import samples
from support.proxy import free_port
from support.system import System
from support.tickets import ticket_body, wait_assigned
from support.tracing import in_memory_exporter
from support.wait import eventually

pytestmark = pytest.mark.e2e


async def serve_in_process(app: FastAPI, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())

    async def ready() -> bool:
        async with httpx.AsyncClient() as client:
            try:
                response = await client.get(f"http://127.0.0.1:{port}/health/ready")
            except httpx.HTTPError:
                return False
            return response.status_code == 200

    await eventually(ready, what=f"in-process service on {port}")
    return server, task


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[ReadableSpan]:
    by_id = {s.context.span_id: s for s in spans}
    chain = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        span = by_id[parent.span_id]
        chain.append(span)
        parent = span.parent
    return chain


async def test_one_trace_covers_the_http_request_on_intake_and_the_handler_in_routing(
    system: System,
) -> None:
    """Both services in this process (so one in-memory exporter sees both), over real HTTP,
    real RabbitMQ and the run's MongoDB."""
    exporter = in_memory_exporter()
    key = secrets.token_urlsafe(16)
    common = {
        "amqp_url": system.amqp_url, "mongo_url": system.mongo_url,
        "bus_namespace": system.namespace, "bus_retry_delays_ms": [200, 400],
    }
    intake_port, routing_port = free_port(), free_port()
    intake_app = create_intake(IntakeSettings(
        service_port=intake_port, mongo_database=system.database("intake"),
        channel_keys={"web": key}, **common,  # type: ignore[arg-type]
    ))
    routing_app = create_routing(RoutingSettings(
        service_port=routing_port, mongo_database=system.database("routing"),
        **common,  # type: ignore[arg-type]
    ))
    servers = [await serve_in_process(intake_app, intake_port),
               await serve_in_process(routing_app, routing_port)]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{intake_port}") as intake:
            response = await intake.post("/tickets", json=ticket_body(), headers={"X-Api-Key": key})
            assert response.status_code == 201
            await wait_assigned(intake, response.json()["number"])
    finally:
        for server, _ in servers:
            server.should_exit = True
        await asyncio.gather(*(task for _, task in servers))

    spans = list(exporter.get_finished_spans())
    http = next(s for s in spans if s.kind == SpanKind.SERVER and s.name == "POST /tickets")
    assert (http.attributes or {}).get("http.route") == "/tickets"
    # The readiness probes the test sent are not traced.
    assert not [s.name for s in spans if s.kind == SpanKind.SERVER and "/health" in s.name]
    routing_handler = next(
        s for s in spans
        if s.name == "handle ticket.created"
        and (s.attributes or {}).get("sportello.service") == "routing"
    )
    intake_handler = next(s for s in spans if s.name == "handle ticket.assigned")
    assert routing_handler.context.trace_id == http.context.trace_id
    assert intake_handler.context.trace_id == http.context.trace_id
    # The handler is the consumer span, under intake's publish, under the HTTP request.
    assert routing_handler.kind == SpanKind.CONSUMER
    chain = ancestors(routing_handler, spans)
    assert [s.kind for s in chain[:1]] == [SpanKind.PRODUCER]
    assert chain[0].name == "publish ticket.created"
    assert http in chain


async def test_metrics_expose_http_red_and_events_by_type_and_outcome(system: System) -> None:
    await system.start("intake")
    await system.start("routing")
    async with system.channel_client("web") as channel:
        number = (await channel.post("/tickets", json=ticket_body())).json()["number"]
        assert (await channel.post("/tickets", json={})).status_code == 422
    async with system.client("intake") as intake, system.client("routing") as routing:
        await wait_assigned(intake, number)

        # Counters move just after the writes the ticket shows: poll until both sides counted.
        async def counted() -> tuple[str, str] | None:
            intake_text = (await intake.get("/metrics")).text
            routing_text = (await routing.get("/metrics")).text
            consumed = samples(intake_text, "events_consumed_total")
            published = samples(routing_text, "events_published_total")
            done = (("outcome", "ok"), ("type", "ticket.assigned"))
            return (intake_text, routing_text) if done in consumed and done in published else None

        intake_text, routing_text = await eventually(counted, what="both services counted")

    requests = samples(intake_text, "http_requests_total")
    assert requests[(("method", "POST"), ("route", "/tickets"), ("status", "201"))] == 1
    assert requests[(("method", "POST"), ("route", "/tickets"), ("status", "422"))] == 1
    assert requests[(("method", "GET"), ("route", "/tickets/{number}"), ("status", "200"))] >= 1
    latency = samples(intake_text, "http_request_duration_seconds_count")
    assert latency[(("method", "POST"), ("route", "/tickets"))] == 2

    published = samples(intake_text, "events_published_total")
    assert published[(("outcome", "ok"), ("type", "ticket.created"))] == 1
    assert published[(("outcome", "ok"), ("type", "ticket.status_changed"))] == 1
    consumed = samples(intake_text, "events_consumed_total")
    assert consumed[(("outcome", "ok"), ("type", "ticket.assigned"))] == 1
    assert samples(intake_text, "tickets_created_total")[(("channel", "web"),)] == 1
    # How often and how long the garbage collector stopped the service.
    assert samples(intake_text, "python_gc_collections_total")
    pauses = samples(intake_text, "python_gc_pause_seconds_count")
    assert set(pauses) == {(("generation", "0"),), (("generation", "1"),), (("generation", "2"),)}
    assert pauses[(("generation", "0"),)] >= 1  # the ticket's requests and events allocated

    assert samples(routing_text, "events_consumed_total")[
        (("outcome", "ok"), ("type", "ticket.created"))] == 1
    assert samples(routing_text, "events_published_total")[
        (("outcome", "ok"), ("type", "ticket.assigned"))] == 1
    assert samples(routing_text, "event_handler_duration_seconds_count")[
        (("type", "ticket.created"),)] == 1
    assert samples(routing_text, "tickets_assigned_total")[
        (("group", "service-desk"), ("level", "L1"))] == 1
