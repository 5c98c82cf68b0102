"""Past its limit of requests at once a service refuses at once with 503 and Retry-After;
health and metrics always answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.types import Message, Scope

from sportello_runtime.app import Service, ServiceWiring, create_service_app
from sportello_runtime.http import LoadShedding, install_error_handlers
from sportello_runtime.settings import ServiceSettings
from support.wait import eventually


def served(gate: asyncio.Event) -> FastAPI:
    """An application with a request held at ``gate``, a quick one and a health check."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await gate.wait()
        return {"served": True}

    @app.get("/quick")
    async def quick() -> dict[str, bool]:
        return {"served": True}

    @app.get("/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    return app


async def test_requests_past_the_limit_are_refused_at_once_and_served_again_after() -> None:
    gate = asyncio.Event()
    shed = LoadShedding(served(gate), max_in_flight=2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shed),
                                 base_url="http://service") as client:
        held = [asyncio.create_task(client.get("/slow")) for _ in range(2)]

        async def both_in_progress() -> bool:
            return shed.in_flight == 2

        await eventually(both_in_progress, what="two requests in progress")
        refused = await client.get("/slow")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"] == "overloaded"
        assert (await client.get("/health/live")).status_code == 200  # never refused
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert shed.in_flight == 0
        assert (await client.get("/slow")).status_code == 200


async def test_a_stream_holds_no_place_once_its_response_has_started() -> None:
    """The consoles' event streams last for hours: counted until they end, they would
    fill the places and refuse everything else. Driven as the server drives it (ASGI
    messages), since a test client waits for a response to end."""
    gate = asyncio.Event()
    app = FastAPI()

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            yield b"data: hello\n\n"
            await gate.wait()

        return StreamingResponse(events(), media_type="text/event-stream")

    shed = LoadShedding(app, max_in_flight=1)
    sent: list[Message] = []

    async def receive() -> Message:
        await gate.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/stream", "headers": [],
             "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
             "server": ("service", 80), "client": ("test", 1)}
    streaming = asyncio.create_task(shed(scope, receive, send))

    async def started() -> bool:
        return any(m["type"] == "http.response.start" for m in sent)

    await eventually(started, what="the stream's response started")
    assert shed.in_flight == 0  # streaming on, holding no place
    gate.set()
    await streaming
    assert shed.in_flight == 0


async def test_a_loop_running_late_refuses_until_it_catches_up() -> None:
    """Asked while the loop is behind, refused; asked once it has caught up (the timer has
    run), served: one long computation refuses nothing after it."""
    shed = LoadShedding(served(asyncio.Event()), max_in_flight=0, max_loop_lag_s=0.2)
    shed.lag.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shed),
                                     base_url="http://service") as client:
            assert (await client.get("/quick")).status_code == 200  # no count: 0 is none
            time.sleep(0.3)  # the loop kept busy, as by CPU work  # noqa: ASYNC251
            assert shed.lag.late_s >= 0.2
            refused = await client.get("/quick")  # the timer has not run since
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "1"
            assert "ms behind" in refused.json()["message"]
            time.sleep(0.3)  # noqa: ASYNC251
            assert (await client.get("/health/live")).status_code == 200  # never refused
            await asyncio.sleep(0.02)  # the timer, long due, runs: the loop has caught up
            assert shed.lag.late_s < 0.05
            assert (await client.get("/quick")).status_code == 200
    finally:
        await shed.lag.stop()


async def test_the_lag_is_measured_for_the_apps_lifetime() -> None:
    """From the application's start to its end (the ASGI lifespan)."""
    app = FastAPI()
    shed = LoadShedding(app, max_in_flight=0, max_loop_lag_s=0.2)
    stopping = asyncio.Event()
    sent: list[Message] = []

    async def receive() -> Message:
        if not sent:
            return {"type": "lifespan.startup"}
        await stopping.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: Message) -> None:
        sent.append(message)

    lifetime = asyncio.create_task(shed({"type": "lifespan", "asgi": {"version": "3.0"}},
                                        receive, send))

    async def measuring() -> bool:
        return bool(sent) and shed.lag._task is not None

    await eventually(measuring, what="the lag measured")
    time.sleep(0.25)  # noqa: ASYNC251
    assert shed.lag.late_s >= 0.2
    stopping.set()
    await lifetime
    assert shed.lag._task is None
    assert shed.lag.late_s == 0.0
    assert [m["type"] for m in sent] == ["lifespan.startup.complete",
                                         "lifespan.shutdown.complete"]


async def test_while_other_requests_are_in_progress_the_last_late_reading_refuses() -> None:
    """Under load the loop is late between two readings too: the last reading counts as
    long as other requests are in progress; with none in progress it is forgiven."""
    gate = asyncio.Event()
    shed = LoadShedding(served(gate), max_in_flight=0, max_loop_lag_s=0.2)
    shed.lag.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shed),
                                     base_url="http://service") as client:
            time.sleep(0.3)  # noqa: ASYNC251
            await asyncio.sleep(0.02)  # the timer wakes, late
            assert shed.lag.last_s >= 0.2
            assert shed.lag.late_s < 0.05
            held = asyncio.create_task(client.get("/slow"))  # none in progress: served

            async def in_progress() -> bool:
                return shed.in_flight == 1

            await eventually(in_progress, what="the first request in progress")
            time.sleep(0.3)  # the loop kept busy again, this time with a request in progress  # noqa: ASYNC251
            await asyncio.sleep(0.02)  # the timer wakes, late
            assert shed.lag.last_s >= 0.2
            assert shed.lag.late_s < 0.05
            refused = await client.get("/slow")
            assert refused.status_code == 503
            gate.set()
            assert (await held).status_code == 200
    finally:
        await shed.lag.stop()


async def test_a_door_the_service_refuses_early_is_refused_before_its_body_is_read() -> None:
    """A service that knows it would refuse a door (intake while its desk is behind) says
    so before the request reaches the routes: nothing of the body is read, and every
    other door is served."""
    asked: list[str] = []

    def refused_early(scope: Scope) -> str | None:
        asked.append(scope["path"])
        return "the desk is behind" if scope["path"] == "/slow" else None

    read = 0
    app = served(asyncio.Event())
    shed = LoadShedding(app, max_in_flight=0, refused_early=refused_early)
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await shed({"type": "http", "method": "GET", "path": "/slow", "headers": [],
                "query_string": b""}, receive, send)
    assert sent[0]["status"] == 503
    assert (b"retry-after", b"1") in sent[0]["headers"]
    assert b"the desk is behind" in sent[1]["body"]
    assert read == 0
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shed),
                                 base_url="http://service") as client:
        assert (await client.get("/quick")).status_code == 200
        assert (await client.get("/health/live")).status_code == 200
    assert asked == ["/slow", "/quick"]  # health is never asked about


def test_a_service_measures_its_loop_once_whoever_reads_the_lag() -> None:
    """LoadShedding (``MAX_LOOP_LAG_MS``) and intake's admission read the same measure, the
    service's own: two timers on one loop would say the same thing twice as often."""
    built: list[Service] = []

    def wire(service: Service) -> ServiceWiring:
        built.append(service)
        return ServiceWiring()

    settings = ServiceSettings(service_name="lagged", service_port=1, mongo_database="db",
                               max_loop_lag_ms=200)
    app = create_service_app(settings, wire, title="lagged", description="one measure")
    layer: object = app.build_middleware_stack()
    sheds = []
    while layer is not None:
        if isinstance(layer, LoadShedding):
            sheds.append(layer)
        layer = getattr(layer, "app", None)
    assert len(sheds) == 1
    assert sheds[0].lag is built[0].loop_lag
