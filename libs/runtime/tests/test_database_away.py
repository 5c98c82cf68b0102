"""A database that does not answer is a 503 with Retry-After, not a 500."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from sportello_runtime.http import install_error_handlers


async def test_a_database_that_does_not_answer_is_a_503_to_try_again() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/paused")
    async def paused() -> None:
        raise AutoReconnect("connection pool paused")

    @app.get("/gone")
    async def gone() -> None:
        raise ServerSelectionTimeoutError("no server")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://service") as client:
        for path in ("/paused", "/gone"):
            response = await client.get(path)
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "2"
            assert response.json()["error"] == "unavailable"
