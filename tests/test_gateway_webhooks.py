"""Outgoing webhooks through real processes: a receiver gets every subscribed event signed,
again after it answered 500, and again when an admin replays; a receiver that keeps
failing gets its subscription disabled and admins told; private addresses are refused
unless allowed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sportello_gateway.domain.webhooks import verify
from support.gateway import admin_token
from support.proxy import free_port
from support.system import System
from support.tickets import ticket_body
from support.wait import eventually

pytestmark = pytest.mark.e2e

SECRET = "whsec-test-0123456789abcdef"


class Receiver:
    """Answers the first ``fail_first`` deliveries (or all, with ``always_fail``) with 500."""

    def __init__(self, fail_first: int = 0, always_fail: bool = False) -> None:
        self.port = free_port()
        self.attempts: list[tuple[dict[str, str], bytes]] = []
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.attempts.append((headers, body))
                failing = always_fail or len(receiver.attempts) <= fail_first
                if not failing:
                    receiver.accepted.append((headers, body))
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/sportello"

    def types(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.accepted]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    serving = Receiver(fail_first=1)
    yield serving
    serving.close()


async def test_subscribed_events_are_signed_retried_recorded_and_replayed(
    system: System, receiver: Receiver,
) -> None:
    await system.start("routing")
    await system.start("intake")
    await system.start("gateway")
    async with system.gateway(await admin_token(system)) as admin:
        created = await admin.post("/api/admin/webhooks", json={
            "name": "ITSM bridge", "url": receiver.url, "secret": SECRET,
            "event_types": ["ticket.created", "ticket.assigned"]})
        assert created.status_code == 201, created.text
        hook = created.json()
        assert "secret" not in hook
        started = datetime.now(UTC) - timedelta(seconds=1)
        async with system.channel_client() as channel:
            ticket = (await channel.post("/tickets", json=ticket_body(3))).json()

        async def both_delivered() -> bool:
            return {"ticket.created", "ticket.assigned"} <= set(receiver.types())

        await eventually(both_delivered, what="both events delivered")
        for headers, body in receiver.accepted:
            assert verify(SECRET, headers["x-sportello-signature"], body, now=int(time.time()))
            assert not verify("another-secret-0000", headers["x-sportello-signature"], body,
                              now=int(time.time()))
            assert json.loads(body)["ticket_id"] == ticket["id"]
            assert headers["x-sportello-event"] == json.loads(body)["type"]
        assert "ticket.triaged" not in receiver.types()  # not subscribed
        # The first attempt got a 500 and was tried again.
        assert len(receiver.attempts) == len(receiver.accepted) + 1
        deliveries = (await admin.get(f"/api/admin/webhooks/{hook['id']}/deliveries")).json()
        assert {d["status"] for d in deliveries} == {"delivered"}
        assert sorted(d["attempts"] for d in deliveries) == [1, 2]
        retried = next(d for d in deliveries if d["attempts"] == 2)
        assert retried["last_status_code"] == 204
        assert retried["response_ms"] >= 0

        replay = await admin.post(f"/api/admin/webhooks/{hook['id']}/replay",
                                  json={"since": started.isoformat()})
        assert replay.status_code == 202, replay.text
        assert replay.json()["queued"] == 2

        async def replayed() -> bool:
            return len(receiver.accepted) == 4

        await eventually(replayed, what="the replayed deliveries")
        event_ids = [json.loads(body)["event_id"] for _, body in receiver.accepted]
        assert sorted(event_ids[:2]) == sorted(event_ids[2:])  # the same events again
        audit = (await admin.get("/api/admin/audit", params={"action": "webhook.replay"})
                 ).json()
        assert audit["items"][0]["object_id"] == hook["id"]


async def test_a_receiver_that_keeps_failing_is_disabled_and_admins_are_told(
    system: System,
) -> None:
    failing = Receiver(always_fail=True)
    try:
        await system.start("intake")
        await system.start("gateway", WEBHOOK_DISABLE_AFTER="3", WEBHOOK_RETRY_BASE_S="0.05")
        async with system.gateway(await admin_token(system)) as admin:
            hook = (await admin.post("/api/admin/webhooks", json={
                "name": "broken", "url": failing.url, "secret": SECRET,
                "event_types": ["ticket.*"]})).json()
            private = await admin.post("/api/admin/webhooks", json={
                "name": "inside", "url": "http://10.1.2.3/hook", "secret": SECRET,
                "event_types": ["*"]})
            assert private.status_code == 422
            assert private.json()["field"] == "url"
            assert "private" in private.json()["message"]
            async with system.channel_client() as channel:
                await channel.post("/tickets", json=ticket_body(4))

            async def disabled() -> dict[str, Any] | None:
                current = (await admin.get(f"/api/admin/webhooks/{hook['id']}")).json()
                return None if current["active"] else current

            current = await eventually(disabled, what="the subscription disabled")
            assert "3 failed deliveries in a row" in current["disabled_reason"]
            notices = (await admin.get("/api/admin/notices")).json()
            assert notices[0]["kind"] == "webhook_disabled"
            assert notices[0]["webhook_id"] == hook["id"]
            attempts = len(failing.attempts)
            assert attempts >= 3
            enabled = await admin.patch(f"/api/admin/webhooks/{hook['id']}",
                                        json={"active": True})
            assert enabled.json()["failures_in_a_row"] == 0
    finally:
        failing.close()
