"""Chat, phone and the JSON API through real HTTP: conversations, idempotent retries,
channel authentication and attachments."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json

import httpx
import pytest

from support.probe import BusProbe
from support.system import CHANNEL_SECRETS, System
from support.tickets import count_tickets, fetch_ticket, signature, ticket_body
from support.webhook import WebhookReceiver

pytestmark = pytest.mark.e2e


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Sportello-Signature": signature(secret, body), "Content-Type": "application/json"}


async def test_chat_conversation_opens_one_ticket_and_replies_by_callback(
    system: System, probe: BusProbe
) -> None:
    with WebhookReceiver() as platform:
        intake = await system.start("intake", CHAT_CALLBACK_URL=platform.url)
        first = json.dumps({
            "conversation_id": "conv-42", "message_id": "m1",
            "sender": {"name": "Paolo Verdi", "email": "paolo@example.it", "language": "it"},
            "text": "Ciao, Outlook si chiude appena lo apro.",
        }).encode()
        async with httpx.AsyncClient(base_url=intake.url) as chat:
            opened = await chat.post("/channels/chat/messages", content=first,
                                     headers=signed_headers(CHANNEL_SECRETS["chat"], first))
            assert opened.status_code == 201, opened.text
            assert opened.json()["action"] == "created"
            number = opened.json()["number"]

            second = json.dumps({
                "conversation_id": "conv-42", "message_id": "m2",
                "sender": {"name": "Paolo Verdi", "language": "it"},
                "text": "Succede anche in modalità provvisoria.",
            }).encode()
            joined = await chat.post("/channels/chat/messages", content=second,
                                     headers=signed_headers(CHANNEL_SECRETS["chat"], second))
            assert joined.status_code == 200
            assert joined.json()["action"] == "joined"
            assert joined.json()["number"] == number
            # The platform redelivers m2: nothing new.
            again = await chat.post("/channels/chat/messages", content=second,
                                    headers=signed_headers(CHANNEL_SECRETS["chat"], second))
            assert again.json()["action"] == "duplicate"

            forged = await chat.post("/channels/chat/messages", content=second,
                                     headers=signed_headers("guess", second))
            assert forged.status_code == 401
            tampered = await chat.post(
                "/channels/chat/messages", content=second.replace(b"conv-42", b"conv-43"),
                headers=signed_headers(CHANNEL_SECRETS["chat"], second))
            assert tampered.status_code == 401
            missing = await chat.post("/channels/chat/messages", content=b'{"conversation_id":'
                                      b'"c1","sender":{"name":"x"}}',
                                      headers={"X-Api-Key": "nope"})
            assert missing.status_code == 401

        async with system.channel_client("chat") as chat_keyed:
            bad = await chat_keyed.post("/channels/chat/messages", json={
                "conversation_id": "has spaces", "sender": {"name": "x"}, "text": "hi"})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["field"] == "conversation_id"

        # The acknowledgement goes back into the conversation, signed as the chat's own.
        callbacks = await platform.wait_for(1)
        assert callbacks[0]["conversation_id"] == "conv-42"
        assert callbacks[0]["ticket_number"] == number
        assert callbacks[0]["kind"] == "acknowledged"
        assert number in callbacks[0]["text"]
        assert "Tempo limite" in callbacks[0]["text"]
        headers = platform.received[0][0]
        stamp, digest = (p.split("=", 1)[1] for p in headers["X-Sportello-Signature"].split(","))
        body = json.dumps(callbacks[0]).encode()
        expected = hmac.new(CHANNEL_SECRETS["chat"].encode(), stamp.encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        assert digest == expected

    ticket = await fetch_ticket(system, number)
    assert ticket["channel"] == "chat"
    assert [m["body"] for m in ticket["messages"]] == [
        "Ciao, Outlook si chiude appena lo apro.", "Succede anche in modalità provvisoria."]
    assert ticket["subject"] == "Ciao, Outlook si chiude appena lo apro."
    await probe.wait_for(lambda evs: any(e.type == "ticket.message_added" for e in evs),
                         what="message_added")


async def test_phone_calls_open_join_and_resolve_on_first_contact(system: System) -> None:
    await system.start("intake")
    caller = {"name": "Sara Neri", "phone": "+39 02 1234567", "email": "sara@example.it",
              "language": "it"}
    async with system.channel_client("phone") as phone:
        opened = await phone.post("/channels/phone/calls", json={
            "call_id": "pbx-1", "caller": caller, "agent_id": "agent-7", "duration_s": 240,
            "notes": "Non riceve la posta sul telefono aziendale.", "outcome": "follow_up",
        })
        assert opened.status_code == 201, opened.text
        number = opened.json()["number"]
        retry = await phone.post("/channels/phone/calls", json={
            "call_id": "pbx-1", "caller": caller, "agent_id": "agent-7", "duration_s": 240,
            "notes": "Non riceve la posta sul telefono aziendale.", "outcome": "follow_up",
        })
        assert retry.json() == {**opened.json(), "action": "duplicate",
                                "message_id": retry.json()["message_id"]}

        follow = await phone.post("/channels/phone/calls", json={
            "call_id": "pbx-2", "caller": caller, "agent_id": "agent-7", "duration_s": 60,
            "notes": "Richiamata: riconfigurato l'account, ora funziona.", "outcome": "resolved",
            "ticket_number": number,
        })
        assert follow.status_code == 200, follow.text
        assert follow.json()["action"] == "joined"

        quick = await phone.post("/channels/phone/calls", json={
            "caller": {"name": "Ugo"}, "agent_id": "agent-3", "duration_s": 90,
            "notes": "Password reset done while on the phone.", "outcome": "resolved",
            "subject": "Password reset",
        })
        assert quick.status_code == 201

        unknown = await phone.post("/channels/phone/calls", json={
            "caller": {"name": "Ugo"}, "agent_id": "agent-3", "duration_s": 5, "notes": "x",
            "ticket_number": "HD-2026-999999"})
        assert unknown.status_code == 404
        assert unknown.json()["field"] == "ticket_number"
        negative = await phone.post("/channels/phone/calls", json={
            "caller": {"name": "Ugo"}, "agent_id": "a", "duration_s": -1, "notes": "x"})
        assert negative.status_code == 422
        assert negative.json()["detail"][0]["field"] == "duration_s"
        # The web form's key is not the phone system's.
    async with system.channel_client("web") as web:
        wrong = await web.post("/channels/phone/calls", json={
            "caller": {"name": "Ugo"}, "agent_id": "a", "duration_s": 1, "notes": "x"})
    assert wrong.status_code == 403

    ticket = await fetch_ticket(system, number)
    assert ticket["status"] == "resolved"
    assert ticket["resolution"] == "Richiamata: riconfigurato l'account, ora funziona."
    assert [m["call"]["duration_s"] for m in ticket["messages"]] == [240, 60]
    assert all(m["author"] == "agent" and m["channel"] == "phone" for m in ticket["messages"])
    first_contact = await fetch_ticket(system, quick.json()["number"])
    assert first_contact["status"] == "resolved"
    assert first_contact["subject"] == "Password reset"


async def test_idempotency_key_returns_the_same_ticket_even_when_retries_race(
    system: System,
) -> None:
    await system.start("intake")
    body = ticket_body(1, channel="api")
    async with system.channel_client("api") as api:
        first = await api.post("/tickets", json=body, headers={"Idempotency-Key": "order-991"})
        assert first.status_code == 201
        retry = await api.post("/tickets", json=body, headers={"Idempotency-Key": "order-991"})
        assert retry.status_code == 200
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json()["number"] == first.json()["number"]

        changed = await api.post("/tickets", json={**body, "subject": "something else"},
                                 headers={"Idempotency-Key": "order-991"})
        assert changed.status_code == 422
        assert changed.json()["field"] == "Idempotency-Key"

        racing = await asyncio.gather(*(
            api.post("/tickets", json=ticket_body(2, channel="api"),
                     headers={"Idempotency-Key": "order-992"}) for _ in range(8)))
        assert {r.status_code for r in racing} <= {200, 201}
        assert [r.status_code for r in racing].count(201) == 1
        assert len({r.json()["number"] for r in racing}) == 1

        # The same key from another channel is another request.
    async with system.channel_client("web") as web:
        other = await web.post("/tickets", json=ticket_body(1),
                               headers={"Idempotency-Key": "order-991"})
    assert other.status_code == 201
    assert other.json()["number"] != first.json()["number"]

    assert await count_tickets(system) == 3


async def test_json_attachments_are_kept_and_bad_ones_refused(system: System) -> None:
    await system.start("intake", MAX_ATTACHMENT_BYTES="1024")
    files = [{"filename": "schermata è.png", "content_type": "image/png",
              "content_base64": base64.b64encode(b"\x89PNG small").decode()}]
    async with system.channel_client("web") as web:
        created = await web.post("/tickets", json=ticket_body(3, attachments=files))
        assert created.status_code == 201, created.text
        attachment = created.json()["messages"][0]["attachments"][0]
        assert attachment["size"] == len(b"\x89PNG small")

        not_base64 = await web.post("/tickets", json=ticket_body(4, attachments=[
            {**files[0], "content_base64": "***"}]))
        too_big = await web.post("/tickets", json=ticket_body(5, attachments=[
            {**files[0], "content_base64": base64.b64encode(b"x" * 2048).decode()}]))
        racing = await asyncio.gather(*(
            web.post("/tickets", json=ticket_body(6, attachments=files),
                     headers={"Idempotency-Key": "form-6"}) for _ in range(4)))
    assert {r.json()["number"] for r in racing} == {racing[0].json()["number"]}
    mongo = system.mongo()
    try:
        attachments = mongo[system.database("intake")]["attachments"]
        stored_files = await attachments.count_documents({"ticket_id": racing[0].json()["id"]})
        all_files = await attachments.count_documents({})
    finally:
        await mongo.close()
    assert stored_files == 1  # the losers of the race took their copies back
    assert all_files == 2
    assert not_base64.status_code == 422
    assert not_base64.json()["field"] == "attachments.0.content_base64"
    assert too_big.status_code == 422
    assert "limit is 1024" in too_big.json()["message"]
    async with system.client("intake") as client:
        stored = await client.get(
            f"/tickets/{created.json()['number']}/attachments/{attachment['id']}")
        assert stored.content == b"\x89PNG small"
        assert "UTF-8''schermata%20%C3%A8.png" in stored.headers["content-disposition"]
        async with httpx.AsyncClient(base_url=system.services["intake"].url) as stranger:
            anonymous = await stranger.get(
                f"/tickets/{created.json()['number']}/attachments/{attachment['id']}")
    assert anonymous.status_code == 401
    assert await count_tickets(system) == 2
