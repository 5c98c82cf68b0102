"""Working the desk through the gateway as operators do: sign in, create staff, read the
workspace with its ETag, listen to the live stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from typing import Any

import httpx

from support.system import ADMIN_PASSWORD, System

PASSWORD = "correct-horse-battery-staple"


async def login(system: System, username: str, password: str = PASSWORD) -> str:
    async with system.gateway() as client:
        response = await client.post("/api/auth/login",
                                     json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def admin_token(system: System) -> str:
    return await login(system, "admin", ADMIN_PASSWORD)


async def add_user(admin: httpx.AsyncClient, username: str, role: str, *,
                   level: str | None = None, groups: tuple[str, ...] = (),
                   capacity: int = 5, password: str | None = PASSWORD,
                   language: str = "en") -> dict[str, Any]:
    body: dict[str, Any] = {"username": username, "name": username.title(), "role": role,
                            "password": password, "level": level, "groups": list(groups),
                            "language": language}
    if role in ("agent", "vendor"):
        body["agent"] = {"capacity": capacity}
    response = await admin.post("/api/admin/users", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def workspace(client: httpx.AsyncClient, number: str) -> tuple[dict[str, Any], str]:
    response = await client.get(f"/api/tickets/{number}")
    assert response.status_code == 200, response.text
    return response.json(), response.headers.get("ETag", "")


@dataclass
class LiveStream:
    """One console's live connection: every event it was sent, as (type, data)."""

    client: httpx.AsyncClient
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        async with self.client.stream("GET", "/api/stream", timeout=None) as response:
            assert response.status_code == 200, await response.aread()
            kind = ""
            async for line in response.aiter_lines():
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.received.append((kind, json.loads(line[6:])))

    def numbers(self, event_type: str | None = None) -> set[str]:
        return {data.get("number") or "" for kind, data in self.received
                if event_type is None or kind == event_type}


@contextlib.asynccontextmanager
async def live(system: System, token: str,
               replica: str = "gateway") -> AsyncIterator[LiveStream]:
    async with system.gateway(token, replica=replica) as client:
        stream = LiveStream(client)
        task = asyncio.create_task(stream.read())
        try:
            await asyncio.wait_for(stream.connected.wait(), 10)
            yield stream
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task


def support_mail(sender: str, subject: str, text: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "help@sportello.localhost"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.it")
    message.set_content(text)
    return message


async def send_mail(port: int, message: EmailMessage) -> str:
    """Through intake's SMTP door; the ticket number from its answer."""

    def send() -> str:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail(str(message["From"]))
            smtp.rcpt(str(message["To"]))
            code, reply = smtp.data(message.as_bytes(policy=SMTP))
            assert code == 250, reply
            return reply.decode().split()[-1]

    return await asyncio.to_thread(send)
