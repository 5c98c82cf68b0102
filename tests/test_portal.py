"""The requester portal in headless Chromium, in Italian and English, through real
processes (gateway, intake, routing, SLA, knowledge, RabbitMQ) and a real SMTP relay: a
requester signs in by the mailed link, searches while typing, reads an article and says
it solved the problem (a deflection, no ticket); asks anyway with a file; sees the
ticket; gets the agent's reply by mail and on the page; answers from the page with a
file; confirms the resolution and rates it. Every page passes axe-core with no serious
violation, loads nothing from another origin, and fits a phone's width. Screenshots go to
.run/test-artifacts/portal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import axe_playwright_python
import httpx
import pytest
from playwright.async_api import FilePayload, Page

from support.browser import headless_chromium
from support.gateway import add_user, admin_token, login
from support.mailsink import MailSink, text_of
from support.portal import mailed_link
from support.system import System
from support.wait import eventually

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ".run/test-artifacts")) / "portal"
AXE = Path(axe_playwright_python.__file__).parent / "axe.min.js"
WAIT_MS = 20_000

ARTICLE = {
    "it": {"title": "Stampante inceppata: cosa fare",
           "body": "Se la stampante segnala carta inceppata, aprire il cassetto, togliere il "
                   "foglio e riaccenderla."},
    "en": {"title": "Jammed printer: what to do",
           "body": "When the printer reports a paper jam, open the tray, remove the sheet "
                   "and switch it on again."},
}
WORDS = {
    "it": {"sign_in": "Accedi", "sent": "un link sta arrivando", "typed": "stampante inceppata",
           "glad": "Non è stata aperta nessuna richiesta", "subject": "Stampante ancora bloccata",
           "received": "Ricevuta", "resolved": "Risolta", "closed": "Chiusa",
           "agent_reply": "Abbiamo sostituito il rullo: può riprovare?",
           "answer": "Ora stampa, grazie.", "rated": "Hai dato 5 su 5"},
    "en": {"sign_in": "Sign in", "sent": "a link is on its way", "typed": "printer jam",
           "glad": "No request was opened", "subject": "Printer still stuck",
           "received": "Received", "resolved": "Resolved", "closed": "Closed",
           "agent_reply": "We replaced the roller: could you try again?",
           "answer": "It prints now, thank you.", "rated": "You rated it 5 out of 5"},
}


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def audited(page: Page, name: str) -> None:
    """A screenshot, axe-core with no serious violation, and no wider than a phone."""
    await shot(page, name)
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    serious = [f"{v['id']} ({v['impact']}): {v['help']}" for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
    assert serious == [], f"{name}: {serious}"
    overflow = await page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name}: {overflow}px wider than the phone"


async def desk_act(system: System, token: str, number: str, command: str,
                   body: dict[str, Any]) -> None:
    """An agent's command through the gateway, read-then-act with the ETag."""
    async with system.gateway(token) as desk:
        async def done() -> bool | None:
            read = await desk.get(f"/api/tickets/{number}")
            if read.status_code != 200:
                return None
            answer = await desk.post(f"/api/tickets/{number}/{command}", json=body,
                                     headers={"If-Match": read.headers["ETag"]})
            if answer.status_code == 412:
                return None
            assert answer.status_code == 200, answer.text
            return True

        await eventually(done, what=f"{command} on {number}")


@pytest.mark.parametrize("lang", ["it", "en"])
async def test_a_requester_signs_in_searches_asks_follows_answers_and_rates(
        system: System, lang: str) -> None:
    words = WORDS[lang]
    email = f"requester-{lang}@example.it"
    with MailSink() as relay:
        await system.start("knowledge")
        await system.start("sla")
        await system.start("routing")
        await system.start("intake", SMTP_RELAY_URL=relay.url)
        gateway = await system.start("gateway", SMTP_RELAY_URL=relay.url)
        async with system.client("knowledge") as kb:
            created = await kb.post("/articles", json={
                **ARTICLE[lang], "language": lang, "audience": "public",
                "category": "printer", "owner": "editor"})
            assert created.status_code == 201, created.text
            article_id = created.json()["id"]
            assert (await kb.post(f"/articles/{article_id}/publish")).status_code == 200
        async with system.gateway(await admin_token(system)) as admin:
            await add_user(admin, "anna", "agent", level="L1", groups=("service-desk",))
        anna = await login(system, "anna")
        origin = urlsplit(gateway.url).netloc

        async with headless_chromium() as browser:
            # A phone, in the requester's language; bypass_csp only lets axe-core in.
            context = await browser.new_context(
                locale="it-IT" if lang == "it" else "en-GB", bypass_csp=True,
                viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            page = await context.new_page()
            elsewhere: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: elsewhere.append(r.url)
                    if urlsplit(r.url).netloc != origin else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            # Signing in: the browser's language, a link by mail, a button to use it.
            response = await page.goto(f"{gateway.url}/portal")
            assert response is not None
            policy = response.headers["content-security-policy"]
            assert "script-src 'self'" in policy
            assert "frame-ancestors 'none'" in policy
            await page.wait_for_selector(f"html[lang={lang}] h1:has-text('{words['sign_in']}')")
            await audited(page, f"1-sign-in-{lang}")
            await page.fill("#email", email)
            await page.click("#sign-in-form button[type=submit]")
            await page.wait_for_selector(f"#notice:has-text('{words['sent']}')")
            link = await mailed_link(relay, email)
            await page.goto(f"{gateway.url}{urlsplit(link).path}?{urlsplit(link).query}")
            await page.click("#link-form button[type=submit]")
            await page.wait_for_selector("#requests-empty")
            cookies = {c["name"]: c for c in await context.cookies()}
            session = cookies["sportello_portal"]
            assert session["httpOnly"]
            assert session["sameSite"] == "Lax"
            assert session["path"] == "/portal"
            await audited(page, f"2-my-requests-empty-{lang}")

            # Search first: the article shows while typing; it solved it, no ticket.
            await page.click("a.button[href='/portal/new']")
            await page.type("#subject", words["typed"], delay=20)
            await page.wait_for_selector(
                f"#suggestion-list a:has-text('{ARTICLE[lang]['title']}')", timeout=WAIT_MS)
            assert await page.locator("#suggestion-list .snippet b").count() >= 1
            await audited(page, f"3-ask-with-suggestions-{lang}")
            await page.click(f"#suggestion-list a:has-text('{ARTICLE[lang]['title']}')")
            await page.wait_for_selector("#article")
            await audited(page, f"4-article-{lang}")
            await page.click("#solved")
            await page.wait_for_selector(f"h1:has-text('{words['glad']}')")
            async with system.client("knowledge") as kb:
                assert (await kb.get("/stats")).json()["deflections"] == 1
            await page.goto(f"{gateway.url}/portal/requests")
            await page.wait_for_selector("#requests-empty")

            # Asking anyway, with a file: the ticket is shown with its status.
            await page.goto(f"{gateway.url}/portal/new")
            await page.fill("#subject", words["subject"])
            await page.fill("#description", "HP LaserJet 3rd floor: paper jam light stays on.")
            await page.fill("#name", "Mario Rossi")
            await page.select_option("#reach", "team")
            await page.select_option("#hurry", "slowed")
            await page.set_input_files("#files", files=[FilePayload(
                name="printer.txt", mimeType="text/plain", buffer=b"error 13.20 paper jam")])
            await page.click("#ask-form button[type=submit]")
            await page.wait_for_selector("#request-status")
            title = await page.inner_text("h1")
            number = title.split(" · ")[0]
            assert words["subject"] in title
            assert await page.locator(".file:has-text('printer.txt')").count() == 1
            # The time limit SLA set is on the page (once SLA has announced it).
            async def time_limit_shown() -> str | None:
                await page.goto(f"{gateway.url}/portal/requests/{number}")
                shown = await page.inner_text("#request-time-limit")
                return shown if shown.strip() not in ("", "—") else None

            assert "/" in await eventually(time_limit_shown, what="the time limit on the page")
            await audited(page, f"5-request-{lang}")

            # The agent replies: the requester gets the mail and sees it on the page.
            await desk_act(system, anna, number, "replies", {"body": words["agent_reply"]})
            await relay.wait_for(lambda m: email in str(m["To"])
                                 and words["agent_reply"] in text_of(m),
                                 what="the agent's reply mailed to the requester")
            await page.goto(f"{gateway.url}/portal/requests/{number}")
            await page.wait_for_selector(
                f"#conversation .message.agent:has-text('{words['agent_reply']}')")

            # The requester answers from the page, with a file.
            await page.fill("#reply-body", "Still jammed after the restart.")
            await page.set_input_files("#files", files=[FilePayload(
                name="photo.txt", mimeType="text/plain", buffer=b"a photo, honestly")])
            await page.click("#reply-form button[type=submit]")
            await page.wait_for_selector(
                "#conversation .message.requester:has-text('Still jammed after the restart')")
            assert await page.locator(".file:has-text('photo.txt')").count() == 1

            # Resolved by the agent; the requester confirms and rates.
            await desk_act(system, anna, number, "status",
                           {"status": "resolved", "resolution": "Roller replaced."})
            await page.goto(f"{gateway.url}/portal/requests/{number}")
            await page.wait_for_selector(f"#request-status:has-text('{words['resolved']}')")
            await audited(page, f"6-resolved-{lang}")
            await page.click("#confirm-form button[type=submit]")
            await page.wait_for_selector(f"#request-status:has-text('{words['closed']}')")
            await page.check("#rating-form input[name=score][value='5']")
            await page.fill("#rating-comment", words["answer"])
            await page.click("#rating-form button[type=submit]")
            await page.wait_for_selector(f"#rated:has-text('{words['rated']}')")
            await audited(page, f"7-rated-{lang}")
            await page.goto(f"{gateway.url}/portal/requests?state=closed")
            await page.wait_for_selector(f"#requests tr[data-number='{number}']")

            # Switching language from the page.
            other = "en" if lang == "it" else "it"
            await page.click(f"header .languages a[lang={other}]")
            await page.wait_for_selector(f"html[lang={other}]")
            await context.close()

        assert elsewhere == [], f"requests to another origin: {elsewhere}"
        assert errors == [], errors
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            metrics = (await client.get("/metrics")).text
        assert 'portal_requests_total{action="asked"} 1.0' in metrics
        assert "portal_deflections_total 1.0" in metrics
