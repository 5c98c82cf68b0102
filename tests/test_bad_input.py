"""Bad input to POST /tickets: a clear 4xx naming the field, and nothing stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.system import System
from support.tickets import count_tickets, ticket_body

pytestmark = pytest.mark.e2e


def without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != field}


CASES = [
    pytest.param(without(ticket_body(), "subject"), "subject", "missing", id="missing-subject"),
    pytest.param(ticket_body(subject=42), "subject", "string_type", id="subject-not-a-string"),
    pytest.param(ticket_body(channel="pigeon"), "channel", "enum", id="unknown-channel"),
    pytest.param(
        ticket_body(requester={"name": {"$ne": None}}),
        "requester.name", "string_type", id="mongo-operator-in-name",
    ),
    pytest.param(
        ticket_body(subject={"$gt": ""}), "subject", "string_type", id="mongo-operator-in-subject"
    ),
    pytest.param(
        {**ticket_body(), "$where": "sleep(1000)"}, "$where", "extra_forbidden",
        id="operator-as-field",
    ),
    pytest.param(
        ticket_body(requester={"name": "Ada", "email": "not-an-address"}),
        "requester.email", "value_error", id="bad-email",
    ),
    pytest.param(ticket_body(subject="x" * 201), "subject", "string_too_long", id="long-subject"),
    pytest.param(ticket_body(subject="   "), "subject", "string_too_short", id="blank-subject"),
]


@pytest.mark.parametrize(("body", "field", "kind"), CASES)
async def test_invalid_fields_are_refused_and_nothing_is_stored(
    system: System, body: dict[str, Any], field: str, kind: str
) -> None:
    if "intake" not in system.services:
        await system.start("intake")
    async with system.channel_client("web") as channel:
        response = await channel.post("/tickets", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["error"] == "validation_failed"
    fields = {d["field"]: d for d in problem["detail"]}
    assert field in fields, problem
    assert kind in fields[field]["type"]
    assert await count_tickets(system) == 0


async def test_oversized_body_is_refused_with_413(system: System) -> None:
    await system.start("intake", MAX_BODY_BYTES="4096", MAX_UPLOAD_BYTES="4096")
    async def stream() -> AsyncIterator[bytes]:
        for chunk in (b'{"description": "', b"z" * 8000, b'"}'):
            yield chunk

    async with system.channel_client("web") as channel:
        response = await channel.post("/tickets", json=ticket_body(description="y" * 5000))
        chunked = await channel.post(
            "/tickets",
            content=stream(),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert chunked.status_code == 413  # no Content-Length to trust: counted while streaming
    assert await count_tickets(system) == 0


async def test_malformed_json_is_refused(system: System) -> None:
    await system.start("intake")
    async with system.channel_client("web") as channel:
        response = await channel.post(
            "/tickets", content=b'{"subject": ', headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert await count_tickets(system) == 0


async def test_channels_must_authenticate(system: System) -> None:
    await system.start("intake")
    async with system.channel_client("web") as channel:
        no_key = await channel.post("/tickets", json=ticket_body(), headers={"X-Api-Key": ""})
        wrong_key = await channel.post(
            "/tickets", json=ticket_body(), headers={"X-Api-Key": "guess"}
        )
        wrong_channel = await channel.post("/tickets", json=ticket_body(channel="email"))
    assert no_key.status_code == 401
    assert wrong_key.status_code == 401
    assert wrong_channel.status_code == 403
    assert wrong_channel.json()["field"] == "channel"
    assert await count_tickets(system) == 0
