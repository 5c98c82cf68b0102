"""Small helpers shared by the cross-service tests."""

from __future__ import annotations

from typing import Any

import httpx

from support.wait import eventually


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
