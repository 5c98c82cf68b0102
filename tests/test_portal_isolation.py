"""The requester portal keeps requesters apart, through real processes (gateway, intake,
routing, SLA, RabbitMQ) and a real SMTP relay: another requester's request, a used
link, a made-up link, a forged session, a cross-site or token-less form post: each is
refused and shows nothing. Also: a double send opens one ticket, links are rate limited
per address, and a notice's signed link signs its requester in (a forged one does not)."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from support.gateway import add_user, admin_token, login
from support.mailsink import MailSink, text_of
from support.portal import (
    ask,
    ask_for_link,
    csrf_of,
    follow,
    form_key_of,
    links_mailed,
    mailed_link,
    signed_in,
    token_of,
)
from support.system import System
from support.wait import eventually

pytestmark = pytest.mark.e2e

MARIO = "mario.rossi@example.it"
GIULIA = "giulia.bianchi@example.it"
LEAD = "it-lead@example.it"
"""A business customer's contact: may read, not answer, every example.it request."""


async def test_requesters_see_only_their_own_requests_and_forged_access_shows_nothing(
        system: System) -> None:
    with MailSink() as relay:
        await system.start("sla")
        await system.start("routing")
        await system.start("intake", SMTP_RELAY_URL=relay.url)
        gateway = await system.start("gateway", SMTP_RELAY_URL=relay.url,
                                     PORTAL_LINKS_PER_ADDRESS="3",
                                     PORTAL_ORGANISATION_CONTACTS=json.dumps(
                                         {LEAD: "example.it"}))
        mario = httpx.AsyncClient(base_url=gateway.url, timeout=10)
        giulia = httpx.AsyncClient(base_url=gateway.url, timeout=10)
        stranger = httpx.AsyncClient(base_url=gateway.url, timeout=10)
        async with mario, giulia, stranger:
            # The address as Mario types it, capitals and all, is the same requester.
            await signed_in(mario, relay, MARIO.upper().replace("EXAMPLE.IT", "example.it"))
            await signed_in(giulia, relay, GIULIA)

            page = await mario.get("/portal/new")
            key = page.text.split('name="form_key" value="')[1].split('"')[0]
            first = await ask(mario, "Il badge non apre la porta", "Da ieri il badge non "
                              "funziona al terzo piano.", form_key=key, reach="me",
                              hurry="slowed", category="hardware")
            assert first.status_code == 303, first.text
            number = first.headers["location"].split("/")[-1].split("?")[0]
            # The same form sent again (a double click, a reload): the same ticket.
            again = await ask(mario, "Il badge non apre la porta", "Da ieri il badge non "
                              "funziona al terzo piano.", form_key=key, reach="me",
                              hurry="slowed", category="hardware")
            assert again.headers["location"].split("/")[-1].split("?")[0] == number
            mine = await mario.get("/portal/requests")
            assert mine.text.count(f'data-number="{number}"') == 1

            # Giulia: not in her list, not by its number, not by answering or rating it.
            theirs = await giulia.get("/portal/requests")
            assert number not in theirs.text
            peek = await giulia.get(f"/portal/requests/{number}")
            assert peek.status_code == 404
            assert "badge" not in peek.text
            csrf = csrf_of(theirs.text)
            for action, data in (("reply", {"body": "mine now"}), ("confirm", {}),
                                 ("rating", {"score": "1"})):
                posted = await giulia.post(f"/portal/requests/{number}/{action}",
                                           data={"csrf": csrf, "form_key": "k" * 20, **data})
                assert posted.status_code == 404, (action, posted.text)
                assert "badge" not in posted.text
            ticket = (await mario.get(f"/portal/requests/{number}")).text
            assert "mine now" not in ticket
            assert "Il badge non apre la porta" in ticket

            # A forged session cookie: signed out, nothing shown.
            stranger.cookies.set("sportello_portal", "made-up-session-value-" + "x" * 20,
                                 path="/portal")
            forged = await stranger.get(f"/portal/requests/{number}")
            assert forged.status_code == 303
            assert forged.headers["location"] == "/portal"
            assert (await stranger.get("/portal/requests")).status_code == 303

            # Cross-site posts: another Origin, or no CSRF token, change nothing.
            csrf = csrf_of((await mario.get(f"/portal/requests/{number}")).text)
            cross = await mario.post(f"/portal/requests/{number}/reply",
                                     data={"csrf": csrf, "body": "from evil"},
                                     headers={"Origin": "https://evil.example"})
            assert cross.status_code == 403
            bare = await mario.post(f"/portal/requests/{number}/reply",
                                    data={"body": "no token"})
            assert bare.status_code == 403
            wrong = await mario.post(f"/portal/requests/{number}/reply",
                                     data={"csrf": csrf_of((await giulia.get(
                                         "/portal/requests")).text), "body": "her token"})
            assert wrong.status_code == 403
            ticket = (await mario.get(f"/portal/requests/{number}")).text
            assert "from evil" not in ticket
            assert "no token" not in ticket
            assert "her token" not in ticket

            # A link works once; a made-up one never.
            before = links_mailed(relay, GIULIA)
            await ask_for_link(stranger, GIULIA)
            token = token_of(await mailed_link(relay, GIULIA, already=before))
            async with httpx.AsyncClient(base_url=gateway.url) as someone:
                used = await follow(someone, token)
            assert used.status_code == 303
            replay = await follow(stranger, token)
            assert replay.status_code == 401
            assert "sportello_portal=" not in \
                replay.headers.get("set-cookie", "")
            made_up = await follow(stranger, "A" * 43)
            assert made_up.status_code == 401
            assert (await stranger.get("/portal/requests")).status_code == 303

            # Links are rate limited per address: the fourth within the hour is refused
            # and mails nothing.
            assert (await ask_for_link(stranger, GIULIA)).status_code == 200  # the third
            await mailed_link(relay, GIULIA, already=before + 1)
            before = links_mailed(relay, GIULIA)
            throttled = await ask_for_link(stranger, GIULIA)
            assert throttled.status_code == 429
            assert links_mailed(relay, GIULIA) == before


async def test_the_signed_link_of_a_notice_signs_its_requester_in_and_a_forged_one_does_not(
        system: System) -> None:
    with MailSink() as relay:
        await system.start("sla")
        await system.start("routing")
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url,
                                    PORTAL_URL="https://portal.invalid")
        # Served over TLS (as the portal's address says): the session cookie is Secure.
        gateway = await system.start("gateway", SMTP_RELAY_URL=relay.url,
                                     PORTAL_URL="https://portal.invalid")
        async with system.channel_client("web") as web:
            created = await web.post("/tickets", json={
                "requester": {"name": "Mario Rossi", "email": MARIO, "language": "it"},
                "subject": "Il monitor sfarfalla", "description": "Da stamattina.",
                "channel": "web"})
            assert created.status_code == 201, created.text
            number = created.json()["number"]
        acknowledgement = await relay.wait_for(
            lambda m: MARIO in str(m["To"]) and "/public/tickets/" in text_of(m),
            what="the acknowledgement with the status link")
        status_link = re.search(r"/public/tickets/\S+", text_of(acknowledgement))
        assert status_link
        async with httpx.AsyncClient(base_url=intake.url) as browser:
            status_page = await browser.get(status_link.group(0),
                                            headers={"Accept": "text/html"})
        assert status_page.status_code == 200
        portal_link = re.search(r'id="portal" href="https://portal\.invalid([^"]+)"',
                                status_page.text)
        assert portal_link, "the status page links to the portal"
        async with httpx.AsyncClient(base_url=gateway.url) as mario:
            page = await mario.get(html.unescape(portal_link.group(1)))
            assert page.status_code == 200
            form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page.text))
            # httpx keeps Secure cookies for https; this test speaks http to the gateway.
            mario.cookies.set("sportello_portal_csrf", form["csrf"], path="/portal")
            signed = await mario.post("/portal/from-notice", data=form)
            assert signed.status_code == 303, signed.text
            assert signed.headers["location"] == f"/portal/requests/{number}"
            session = next(c for c in signed.headers.get_list("set-cookie")
                           if c.startswith("sportello_portal="))
            assert "Secure" in session
            assert "HttpOnly" in session
            assert "SameSite=lax" in session
            assert "Path=/portal" in session
            mario.cookies.set("sportello_portal",
                              session.split(";")[0].split("=", 1)[1], path="/portal")
            shown = await mario.get(f"/portal/requests/{number}")
            assert shown.status_code == 200
            assert "Il monitor sfarfalla" in shown.text

        async with httpx.AsyncClient(base_url=gateway.url) as forger:
            page = await forger.get("/portal/from-notice",
                                    params={"number": number, "token": "forged.token.value"})
            form = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page.text))
            forger.cookies.set("sportello_portal_csrf", form["csrf"], path="/portal")
            refused = await forger.post("/portal/from-notice", data=form)
            assert refused.status_code == 401
            assert "sportello_portal=" not in refused.headers.get("set-cookie", "")
            assert (await forger.get(f"/portal/requests/{number}")).status_code == 303


async def test_an_expired_link_internal_notes_and_agents_stay_hidden_and_answers_reopen(
        system: System) -> None:
    """What a requester's answer does after the resolution (reopens; on a closed ticket,
    a follow-up), and what the page never shows (internal notes, agent ids)."""
    with MailSink() as relay:
        await system.start("sla")
        await system.start("routing")
        await system.start("intake")
        gateway = await system.start("gateway", SMTP_RELAY_URL=relay.url,
                                     PORTAL_LINKS_PER_CLIENT="3")
        async with system.gateway(await admin_token(system)) as admin:
            await add_user(admin, "anna", "agent", level="L1", groups=("service-desk",))
        anna = await login(system, "anna")
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as mario:
            # A link past its time: refused, though never used (its expiry is moved back
            # in the store: no test waits on the clock).
            before = links_mailed(relay, MARIO)
            await ask_for_link(mario, MARIO)
            stale = token_of(await mailed_link(relay, MARIO, already=before))
            mongo = system.mongo()
            try:
                moved = await mongo[system.database("gateway")]["portal_links"].update_many(
                    {}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)}})
            finally:
                await mongo.close()
            assert moved.modified_count == 1
            expired = await follow(mario, stale)
            assert expired.status_code == 401
            assert "expired" in expired.text

            await signed_in(mario, relay, MARIO)
            asked = await ask(mario, "Outlook chiede la password", "Ogni cinque minuti.")
            number = asked.headers["location"].split("/")[-1].split("?")[0]
            async with system.gateway(anna) as desk:
                for command, body in (
                        ("notes", {"body": "INTERNAL: his mailbox is on the old server"}),
                        ("replies", {"body": "Abbiamo spostato la casella."}),
                        ("status", {"status": "resolved", "resolution": "Mailbox moved."})):
                    async def acted(command: str = command,
                                    body: dict[str, str] = body) -> bool | None:
                        read = await desk.get(f"/api/tickets/{number}")
                        if read.status_code != 200:
                            return None
                        done = await desk.post(f"/api/tickets/{number}/{command}", json=body,
                                               headers={"If-Match": read.headers["ETag"]})
                        return True if done.status_code == 200 else None

                    await eventually(acted, what=f"anna's {command}")
            page = (await mario.get(f"/portal/requests/{number}")).text
            assert "Abbiamo spostato la casella" in page
            assert "INTERNAL" not in page
            assert "anna" not in page  # no agent id
            assert 'id="confirm-form"' in page

            # "No, it is not solved": the answer reopens the resolved ticket.
            answered = await mario.post(f"/portal/requests/{number}/reply", data={
                "csrf": csrf_of(page), "form_key": form_key_of(page),
                "body": "Chiede ancora la password."})
            assert answered.status_code == 303
            # A resolved ticket leaves "resolved" only by closing or reopening (the
            # lifecycle); once reopened, routing may at once assign it again.
            page = (await mario.get(f"/portal/requests/{number}")).text
            status = re.search(r'id="request-status">([^<]+)<', page)
            assert status
            assert status.group(1) in {"Reopened", "Assigned", "In progress"}
            assert 'id="confirm-form"' not in page

            # Resolved again and confirmed: closed; an answer now opens a follow-up.
            async with system.gateway(anna) as desk:
                async def resolved() -> bool | None:
                    read = await desk.get(f"/api/tickets/{number}")
                    done = await desk.post(f"/api/tickets/{number}/status", json={
                        "status": "resolved", "resolution": "Password saved again."},
                        headers={"If-Match": read.headers["ETag"]})
                    return True if done.status_code == 200 else None

                await eventually(resolved, what="resolved again")
            page = (await mario.get(f"/portal/requests/{number}")).text
            confirmed = await mario.post(f"/portal/requests/{number}/confirm",
                                         data={"csrf": csrf_of(page)})
            assert confirmed.status_code == 303
            page = (await mario.get(f"/portal/requests/{number}")).text
            later = await mario.post(f"/portal/requests/{number}/reply", data={
                "csrf": csrf_of(page), "form_key": form_key_of(page),
                "body": "Di nuovo, da oggi."})
            assert later.status_code == 303
            follow_up = later.headers["location"].split("/")[-1].split("?")[0]
            assert follow_up != number
            shown = (await mario.get(f"/portal/requests/{follow_up}")).text
            assert f"Follow-up of {number}" in shown

            # Links per client: two went to Mario; a third address gets one, a fourth
            # request from the same client is refused whatever the address.
            async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
                assert (await ask_for_link(client, GIULIA)).status_code == 200
                refused = await ask_for_link(client, "someone.else@example.it")
                assert refused.status_code == 429
                assert links_mailed(relay, "someone.else@example.it") == 0
