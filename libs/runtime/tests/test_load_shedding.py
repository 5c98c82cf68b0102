"""Past its limit of requests at once a service refuses at once with 503 and Retry-After;
health and metrics always answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.types import Message

from sportello_runtime.http import LoadShedding, install_error_handlers
from support.wait import eventually


async def test_requests_past_the_limit_are_refused_at_once_and_served_again_after() -> None:
    gate = asyncio.Event()
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await gate.wait()
        return {"served": True}

    @app.get("/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    shed = LoadShedding(app, max_in_flight=2)
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
