"""Small helpers shared by the cross-service tests."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

import httpx

from support.wait import eventually

if TYPE_CHECKING:
    from support.system import System


def ticket_body(n: int = 0, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requester": {"name": f"Giulia Rossi {n}", "email": f"giulia.rossi{n}@example.com",
                      "language": "it", "department": "Finance"},
        "subject": f"La VPN non si connette ({n})",
        "description": "Da stamattina il client VPN dà errore 809 e non riesco a lavorare.",
        "channel": "web",
    }
    body.update(overrides)
    return body


async def wait_assigned(
    client: httpx.AsyncClient, number: str, timeout: float = 20
) -> dict[str, Any]:
    async def assigned() -> dict[str, Any] | None:
        response = await client.get(f"/tickets/{number}")
        response.raise_for_status()
        ticket: dict[str, Any] = response.json()
        return ticket if ticket["status"] == "assigned" else None

    return await eventually(assigned, timeout=timeout, what=f"{number} assigned")


async def fetch_ticket(system: System, number: str) -> dict[str, Any]:
    """The whole record from intake's internal API."""
    async with system.client("intake") as client:
        response = await client.get(f"/tickets/{number}")
    assert response.status_code == 200, response.text
    ticket: dict[str, Any] = response.json()
    return ticket


async def count_tickets(system: System) -> int:
    """Straight from intake's database: what a refused request must not have left behind."""
    client = system.mongo()
    try:
        return await client[system.database("intake")]["tickets"].count_documents({})
    finally:
        await client.close()


def signature(secret: str, body: bytes, stamp: int | None = None) -> str:
    """The X-Sportello-Signature a channel that signs would send."""
    t = str(stamp if stamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


async def post_tickets(system: System, count: int) -> list[dict[str, Any]]:
    """``count`` tickets through the web channel, one after the other; each must get a 201."""
    created = []
    async with system.channel_client("web") as channel:
        for n in range(count):
            response = await channel.post("/tickets", json=ticket_body(n))
            assert response.status_code == 201, response.text
            created.append(response.json())
    return created
