"""Keeping the requester informed through a whole journey: notices by real SMTP, the status
page that shows nothing it should not, the rating, reopen on reply, auto-close, follow-ups."""

from __future__ import annotations

import asyncio
import re
import smtplib
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from typing import Any

import httpx
import jwt
import pytest

from sportello_contracts import new_event
from sportello_contracts.events import ArticleSuggestion, KbSuggestionsReady
from support.browser import headless_chromium
from support.mailsink import MailSink, mail_to, text_of
from support.probe import BusProbe
from support.system import STATUS_TOKEN_SECRET, System
from support.tickets import ticket_body, wait_assigned
from support.wait import eventually

pytestmark = pytest.mark.e2e

SUPPORT = "help@sportello.localhost"


async def reply_by_mail(port: int, sender: str, subject: str, text: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content(text)

    def send() -> bytes:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail(sender)
            smtp.rcpt(SUPPORT)
            code, reply = smtp.data(message.as_bytes(policy=SMTP))
            assert code == 250, reply
            return bytes(reply)

    return await asyncio.to_thread(send)


def link_in(message: EmailMessage, path: str = "") -> str:
    match = re.search(r"(http://\S+/public/tickets/[A-Z]+-\d{4}-\d+" + re.escape(path)
                      + r"\?token=[\w.-]+)", text_of(message))
    assert match, text_of(message)
    return match.group(1)


async def test_requester_is_told_every_step_and_sees_only_public_things(
    system: System, probe: BusProbe
) -> None:
    with MailSink() as relay:
        await system.start("routing")
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url,
                                    PUBLIC_URL="http://127.0.0.1:9")
        async with system.channel_client("web") as web:
            mine = (await web.post("/tickets", json=ticket_body(1))).json()
            other = (await web.post("/tickets", json=ticket_body(2))).json()
        number = mine["number"]
        address = "giulia.rossi1@example.com"

        ack = await relay.wait_for(mail_to(address, "Abbiamo ricevuto"), what="acknowledgement")
        assert "Tempo limite:" in text_of(ack)  # the configured default: no SLA here
        await relay.wait_for(mail_to(address, "presa in carico"), what="assignment notice")

        async with system.client("intake") as intake_api, system.client("routing") as routing:
            await wait_assigned(intake_api, number)
            escalated = await routing.post(f"/assignments/{mine['id']}/escalate",
                                           json={"reason": "needs network specialists"})
            assert escalated.status_code == 200, escalated.text
            escalation = await relay.wait_for(mail_to(address, "livello L2"),
                                              what="escalation notice")
            assert "L2" in text_of(escalation)

            note = await intake_api.post(f"/tickets/{number}/messages", json={
                "author_id": "agent-1", "visibility": "internal",
                "body": "INTERNAL: the requester's laptop is on the old VPN profile"})
            assert note.status_code == 201
            answer = await intake_api.post(f"/tickets/{number}/messages", json={
                "author_id": "agent-1", "author_name": "Luca (L2)",
                "body": "Puoi provare a reinstallare il profilo VPN dal portale?"})
            assert answer.status_code == 201
            agent_mail = await relay.wait_for(
                lambda m: address in str(m["To"]) and "reinstallare il profilo" in text_of(m),
                what="the agent's reply by mail")
            assert agent_mail["Auto-Submitted"] is None  # a person wrote it
            assert all("INTERNAL" not in text_of(m) for m in relay.messages)

            waiting = await intake_api.post(f"/tickets/{number}/status", json={
                "status": "waiting_customer", "reason": "Dicci se il profilo nuovo funziona"})
            assert waiting.status_code == 200, waiting.text
            ask = await relay.wait_for(mail_to(address, "Ci serve una tua risposta"),
                                       what="waiting notice")
            assert "Dicci se il profilo nuovo funziona" in text_of(ask)

            # The requester answers the notice: the ticket goes back to work.
            await reply_by_mail(intake.smtp_port, address, str(ask["Subject"]),
                                "Reinstallato, ma ancora errore 809.")
            ticket = (await intake_api.get(f"/tickets/{number}")).json()
            assert ticket["status"] == "in_progress"

            # The status page: the requester's own ticket, public messages only.
            status_url = link_in(ack).replace("http://127.0.0.1:9", intake.url)
            async with httpx.AsyncClient() as browser:
                page = await browser.get(status_url)
                assert page.status_code == 200, page.text
                view = page.json()
                assert view["number"] == number
                assert view["status"] == "in_progress"
                assert view["level"] == "L2"
                bodies = [m["body"] for m in view["messages"]]
                assert "Reinstallato, ma ancora errore 809." in bodies
                assert "Puoi provare a reinstallare il profilo VPN dal portale?" in bodies
                text = page.text
                assert "INTERNAL" not in text
                assert "agent-1" not in text
                assert other["number"] not in text
                assert "giulia.rossi2" not in text

                token = status_url.split("token=")[1]
                someone_else = await browser.get(
                    f"{intake.url}/public/tickets/{other['number']}?token={token}")
                assert someone_else.status_code == 401
                assert someone_else.json()["field"] == "token"
                guessed = jwt.encode({"sub": number, "aud": "sportello-requester", "exp": 4e9},
                                     "a-guessed-secret-of-enough-length-0123", algorithm="HS256")
                forged = await browser.get(
                    f"{intake.url}/public/tickets/{number}?token={guessed}")
                assert forged.status_code == 401
                expired_token = jwt.encode(
                    {"sub": number, "aud": "sportello-requester",
                     "exp": datetime.now(UTC) - timedelta(minutes=1)},
                    STATUS_TOKEN_SECRET, algorithm="HS256")
                expired = await browser.get(
                    f"{intake.url}/public/tickets/{number}?token={expired_token}")
                assert expired.status_code == 401
                assert "expired" in expired.json()["message"]
                no_token = await browser.get(f"{intake.url}/public/tickets/{number}")
                assert no_token.status_code == 422
                early = await browser.post(status_url.replace("?", "/rating?"),
                                           json={"score": 5})
                assert early.status_code == 409  # not resolved yet

            resolved = await intake_api.post(f"/tickets/{number}/status", json={
                "status": "resolved", "resolution": "Profilo VPN rigenerato dal team di rete."})
            assert resolved.status_code == 200
            done = await relay.wait_for(mail_to(address, "risolta"), what="resolution notice")
            assert "Profilo VPN rigenerato" in text_of(done)
            rating_page = link_in(done).replace("http://127.0.0.1:9", intake.url)
            assert f"{link_in(done)}#rating" in text_of(done)  # the page's rating form
            rating_url = rating_page.replace("?", "/rating?")
            async with httpx.AsyncClient() as browser:
                bad_score = await browser.post(rating_url, json={"score": 6})
                assert bad_score.status_code == 422
                rated = await browser.post(rating_url, json={"score": 4,
                                                             "comment": "Veloci, grazie"})
                assert rated.status_code == 200, rated.text
                assert rated.json()["rating"] == 4
                twice = await browser.post(rating_url, json={"score": 1})
                assert twice.status_code == 409
            rating_events = await probe.wait_for(
                lambda evs: any(e.type == "ticket.rated" for e in evs), what="ticket.rated")
            rated_event = next(e for e in rating_events if e.type == "ticket.rated")
            assert rated_event.payload["score"] == 4
            assert rated_event.payload["comment"] == "Veloci, grazie"

            # A reply after the resolution reopens the ticket.
            await reply_by_mail(intake.smtp_port, address, str(done["Subject"]),
                                "Purtroppo il problema si è ripresentato.")
            ticket = (await intake_api.get(f"/tickets/{number}")).json()
            assert ticket["status"] == "reopened"
        await probe.wait_for(lambda evs: any(e.type == "ticket.reopened" for e in evs),
                             what="ticket.reopened")


async def test_quiet_resolved_tickets_close_and_later_replies_open_a_follow_up(
    system: System, probe: BusProbe
) -> None:
    intake = await system.start("intake", AUTO_CLOSE_AFTER_S="1", AUTO_CLOSE_INTERVAL_S="0.2")
    async with system.channel_client("web") as web:
        quiet = (await web.post("/tickets", json=ticket_body(1))).json()
        answered = (await web.post("/tickets", json=ticket_body(2))).json()
    async with system.client("intake") as api:
        for ticket in (quiet, answered):
            response = await api.post(f"/tickets/{ticket['number']}/status", json={
                "status": "resolved", "resolution": "Cache del client svuotata."})
            assert response.status_code == 200
        # The second requester answers within the quiet period: reopened, so never auto-closed.
        await reply_by_mail(intake.smtp_port, "giulia.rossi2@example.com",
                            f"Re: [{answered['number']}]", "Non ha funzionato.")

        async def closed() -> dict[str, Any] | None:
            ticket: dict[str, Any] = (await api.get(f"/tickets/{quiet['number']}")).json()
            return ticket if ticket["status"] == "closed" else None

        ticket = await eventually(closed, timeout=15, what="auto-close")
        assert ticket["version"] == 3
        events = await probe.wait_for(
            lambda evs: any(e.type == "ticket.closed" for e in evs), what="ticket.closed")
        closing = next(e for e in events if e.type == "ticket.closed")
        assert closing.payload["resolution"] == "Cache del client svuotata."
        assert "automatically" in closing.payload["reason"]
        still_open = (await api.get(f"/tickets/{answered['number']}")).json()
        assert still_open["status"] == "reopened"

        illegal = await api.post(f"/tickets/{quiet['number']}/status",
                                 json={"status": "in_progress"})
        assert illegal.status_code == 409
        assert illegal.json()["allowed"] == []

        # Mail about a closed ticket opens a new one that points back to it.
        reply = await reply_by_mail(intake.smtp_port, "giulia.rossi1@example.com",
                                    f"Re: [{quiet['number']}] ancora", "Di nuovo lento.")
        assert b"follow_up" in reply
        follow_number = reply.decode().split()[-1]
        assert follow_number != quiet["number"]
        follow = (await api.get(f"/tickets/{follow_number}")).json()
        assert follow["description"].startswith(f"Follow-up of {quiet['number']}")
        assert follow["status"] == "new"
        assert (await api.get(f"/tickets/{quiet['number']}")).json()["status"] == "closed"


async def test_suggestions_reach_the_requester_and_stale_updates_are_refused(
    system: System, probe: BusProbe
) -> None:
    with MailSink() as relay:
        await system.start("intake", SMTP_RELAY_URL=relay.url)
        async with system.channel_client("web") as web:
            ticket = (await web.post("/tickets", json=ticket_body(
                7, requester={"name": "Tom", "email": "tom@example.com", "language": "en"}))
            ).json()
        # The acknowledgement first (no SLA here: it goes at once), so the articles come
        # in a mail of their own; ones that arrive before it go with it (another test).
        await relay.wait_for(lambda m: "tom@example.com" in str(m["To"]),
                             what="the acknowledgement")
        # What the knowledge service will publish (its contract is in libs/contracts).
        await probe.publish(new_event(
            KbSuggestionsReady(ticket_id=ticket["id"], suggestions=[
                ArticleSuggestion(article_id="kb-12", title="Reset the VPN profile",
                                  url="https://help.example.com/kb/12", score=0.91)]),
            producer="knowledge", correlation_id=ticket["id"]))
        tips = await relay.wait_for(lambda m: "Articles that may help" in str(m["Subject"]),
                                    what="suggestions notice")
        assert "Reset the VPN profile: https://help.example.com/kb/12" in text_of(tips)
        assert str(tips["To"]) == "Tom <tom@example.com>"

    async with system.client("intake") as api:
        first = await api.post(f"/tickets/{ticket['number']}/status", json={
            "status": "resolved", "resolution": "done", "expected_version": 1})
        assert first.status_code == 200
        stale = await api.post(f"/tickets/{ticket['number']}/status", json={
            "status": "closed", "expected_version": 1})
        assert stale.status_code == 409
        assert stale.json()["version"] == 2
        stale_note = await api.post(f"/tickets/{ticket['number']}/messages", json={
            "author_id": "agent-1", "body": "late", "expected_version": 1})
        assert stale_note.status_code == 409
        current = (await api.get(f"/tickets/{ticket['number']}")).json()
    assert current["status"] == "resolved"
    assert [m["body"] for m in current["messages"]] == [ticket["description"]]


async def test_the_requester_follows_the_link_in_a_real_browser_and_rates_the_ticket(
    system: System, probe: BusProbe
) -> None:
    with MailSink() as relay:
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url)
        async with system.channel_client("web") as web:
            ticket = (await web.post("/tickets", json=ticket_body(
                3, subject="La <b>stampante</b> non stampa"))).json()
        number = ticket["number"]
        async with system.client("intake") as api:
            await api.post(f"/tickets/{number}/messages", json={
                "author_id": "agent-9", "visibility": "internal",
                "body": "INTERNAL: driver HP vecchio"})
            await api.post(f"/tickets/{number}/messages", json={
                "author_id": "agent-9", "body": "Abbiamo aggiornato il driver della stampante."})
            await api.post(f"/tickets/{number}/status", json={
                "status": "resolved", "resolution": "Driver aggiornato alla versione 7."})
        done = await relay.wait_for(lambda m: "risolta" in str(m["Subject"]),
                                    what="resolution notice")
        link = link_in(done) + "#rating"
        assert link in text_of(done)

        async with headless_chromium() as browser:
            page = await browser.new_page()
            response = await page.goto(link)
            assert response is not None
            assert response.status == 200
            assert response.headers["referrer-policy"] == "no-referrer"
            assert await page.title() == f"Richiesta {number} · Sportello"
            assert await page.inner_text("#status") == "Risolta"
            assert await page.inner_text("#subject") == "La <b>stampante</b> non stampa"
            conversation = await page.inner_text("#conversation")
            assert "Abbiamo aggiornato il driver della stampante." in conversation
            assert "INTERNAL" not in await page.content()
            assert "agent-9" not in await page.content()
            assert "Driver aggiornato alla versione 7." in await page.inner_text("#resolution")

            await page.check("input[name=score][value='5']")
            await page.fill("#comment", "Gentilissimi, grazie!")
            await page.click("button[type=submit]")
            await page.wait_for_selector("#rated")
            assert await page.inner_text("#rated") == "Grazie: il tuo voto è 5/5."
            assert page.url.startswith(f"{intake.url}/public/tickets/{number}?token=")

            expired = await page.goto(f"{intake.url}/public/tickets/{number}?token=" + jwt.encode(
                {"sub": number, "aud": "sportello-requester",
                 "exp": datetime.now(UTC) - timedelta(minutes=1)},
                STATUS_TOKEN_SECRET, algorithm="HS256"))
            assert expired is not None
            assert expired.status == 401

        rated = await probe.wait_for(lambda evs: any(e.type == "ticket.rated" for e in evs),
                                     what="ticket.rated")
        event = next(e for e in rated if e.type == "ticket.rated")
        assert event.payload["score"] == 5
        assert event.payload["comment"] == "Gentilissimi, grazie!"
