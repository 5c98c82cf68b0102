"""Shared conventions, without broker or database: topology names, errors, size limits."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from sportello_runtime.bus import Topology
from sportello_runtime.http import ApiError, BodySizeLimit, install_error_handlers
from sportello_runtime.settings import ServiceSettings


def test_retry_tiers_climb_and_stay_on_the_last() -> None:
    topology = Topology("sportello", "routing", (1000, 5000, 30000), delivery_limit=10)
    assert topology.work_queue == "sportello.routing"
    assert topology.dead_letter_queue == "sportello.routing.dlq"
    assert [topology.retry_queue_for(n) for n in (1, 2, 3, 4, 9)] == [
        "sportello.routing.retry.1000ms", "sportello.routing.retry.5000ms",
        "sportello.routing.retry.30000ms", "sportello.routing.retry.30000ms",
        "sportello.routing.retry.30000ms",
    ]
    assert len(topology.queue_names()) == 5


class Body(BaseModel):
    subject: str


def small_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(body: Body) -> Body:
        if body.subject == "conflict":
            raise ApiError(409, "conflict", "changed meanwhile", field="version")
        return body

    return app


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = BodySizeLimit(small_app(), max_bytes=2048)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_validation_errors_name_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={"subject": 1})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "subject"
    assert response.json()["error"] == "validation_failed"


async def test_api_errors_are_machine_readable(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", json={"subject": "conflict"})
    assert response.status_code == 409
    assert response.json() == {"error": "conflict", "message": "changed meanwhile",
                               "field": "version"}


async def test_bodies_over_the_limit_get_413_and_under_it_pass(client: httpx.AsyncClient) -> None:
    assert (await client.post("/echo", json={"subject": "x" * 3000})).status_code == 413
    assert (await client.post("/echo", json={"subject": "x" * 1000})).status_code == 200


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@rabbit:5672/")
    monkeypatch.setenv("BUS_RETRY_DELAYS_MS", "[10, 20]")
    monkeypatch.setenv("SERVICE_TOKEN", "s3cret")
    settings = ServiceSettings(service_name="x", service_port=1, mongo_database="db")
    assert settings.amqp_url == "amqp://u:p@rabbit:5672/"
    assert settings.bus_retry_delays_ms == [10, 20]
    assert settings.service_token is not None
    assert "s3cret" not in repr(settings)
    monkeypatch.setenv("BUS_NAMESPACE", "Not Valid!")
    with pytest.raises(ValueError, match="bus_namespace"):
        ServiceSettings(service_name="x", service_port=1, mongo_database="db")
