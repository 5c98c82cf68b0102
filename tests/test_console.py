"""The operators' console in headless Chromium, through real processes (gateway, intake,
routing, SLA, RabbitMQ, a real SMTP relay): an L1 agent signs in (in Italian), sees a mailed
ticket arrive live, takes it, replies (the requester gets the mail), escalates; the L2 agent
sees it arrive; the coordinator overrides its priority; an admin adds an agent who then
gets work; a vendor sees only its tickets; a stale edit in a second tab shows the conflict.
Screenshots go to .run/test-artifacts/console; axe-core audits the pages."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import axe_playwright_python
import pytest
from playwright.async_api import Browser, BrowserContext, Page

from support.browser import headless_chromium
from support.gateway import PASSWORD, add_user, admin_token, send_mail, support_mail
from support.mailsink import MailSink, text_of
from support.system import ADMIN_PASSWORD, System
from support.tickets import ticket_body
from support.wait import eventually

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ".run/test-artifacts")) / "console"
AXE = Path(axe_playwright_python.__file__).parent / "axe.min.js"
WAIT_MS = 20_000
SCRIPT_ERRORS: list[str] = []
"""Uncaught errors of the console's script, on any page of any user."""


async def signed_in(browser: Browser, url: str, username: str,
                    password: str = PASSWORD) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    context.on("weberror", lambda e: SCRIPT_ERRORS.append(f"{username}: {e.error}"))
    await page.goto(url)
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#top:not([hidden])", timeout=WAIT_MS)
    await page.wait_for_selector("#main h1", timeout=WAIT_MS)  # the first page is drawn
    return context, page


async def send(page: Page, button: str, applied: str) -> None:
    """Submit a command as an operator does: when the system moved the ticket in between
    (an assignment mirrored, a clock announced), the console says so and keeps the form,
    and the operator sends again."""
    for _ in range(4):
        await page.click(button)
        await page.wait_for_selector(f"{applied}, #notice.conflict", timeout=WAIT_MS)
        if await page.locator(applied).count():
            return
    raise AssertionError(f"{button} stayed stale")


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def serious_violations(browser: Browser, url: str, cookies: list[Any],
                             hash_: str) -> list[str]:
    """axe-core on a page as the user sees it (a context that lets the test inject axe
    past the console's Content-Security-Policy)."""
    context = await browser.new_context(bypass_csp=True)
    await context.add_cookies(cookies)
    page = await context.new_page()
    await page.goto(f"{url}/{hash_}")
    await page.wait_for_selector("#main h1", timeout=WAIT_MS)
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    await context.close()
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            f"{[n['target'] for n in v['nodes']][:3]}" for v in result["violations"]
            if v["impact"] in ("serious", "critical")]


WORDS = {"en": {"queue": "Queues", "logout": "Sign out", "away": "Away",
                "left_view": "left your queues"},
         "it": {"queue": "Code", "logout": "Esci", "away": "Assente",
                "left_view": "uscito dalle tue code"}}


@pytest.mark.parametrize("lang", ["it", "en"])
async def test_operators_work_a_ticket_in_the_console(system: System, lang: str) -> None:
    words = WORDS[lang]
    other = "en" if lang == "it" else "it"
    with MailSink() as relay:
        sla = await system.start("sla")
        await system.start("routing")
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url, SLA_URL=sla.url)
        gateway = await system.start("gateway")
        async with system.gateway(await admin_token(system)) as admin:
            # Anna starts in the other language and switches in the console.
            await add_user(admin, "anna", "agent", level="L1", groups=("service-desk",),
                           capacity=0, language=other)
            await add_user(admin, "bruno", "agent", level="L2", groups=("l2-network",),
                           language=lang)
            await add_user(admin, "carla", "coordinator", language=lang)
            await add_user(admin, "vito", "vendor", groups=("l4-vendor",), language=lang)
        url = gateway.url

        async with headless_chromium() as browser:
            # The page itself: nothing from another origin, a strict policy.
            context, anna = await signed_in(browser, url, "anna")
            response = await anna.goto(url)
            assert response is not None
            policy = response.headers["content-security-policy"]
            assert "script-src 'self'" in policy
            assert "frame-ancestors 'none'" in policy
            assert not any(c["httpOnly"] is False and c["name"] == "sportello_session"
                           for c in await context.cookies())
            assert await anna.evaluate("document.cookie.includes('sportello_session')") is False
            await anna.wait_for_selector("#top:not([hidden])", timeout=WAIT_MS)

            await anna.select_option("#language", lang)
            await anna.wait_for_selector(f"html[lang={lang}] #logout:has-text('{words['logout']}')",
                                         timeout=WAIT_MS)
            await anna.goto(f"{url}/#/queue?view=unassigned")
            await anna.wait_for_selector(f"#main h1:has-text('{words['queue']}')",
                                         timeout=WAIT_MS)

            number = await send_mail(intake.smtp_port, support_mail(
                "Mario Rossi <mario.rossi@example.it>", "La VPN non si connette",
                "Da stamattina il client VPN dà errore 809."))
            await anna.wait_for_selector(f"#queue tr[data-number='{number}']", timeout=WAIT_MS)
            await shot(anna, f"1-l1-queue-{lang}")
            await anna.click(f"#queue a:has-text('{number}')")
            await anna.wait_for_selector("#conversation article", timeout=WAIT_MS)
            await send(anna, "#take", "#ticket-agent:has-text('anna')")
            await anna.fill("#reply-body", "Buongiorno Mario, può riavviare il client VPN?")
            await send(anna, "#reply-form button[type=submit]",
                       "#conversation article[data-visibility=public]:has-text('riavviare')")
            mailed = await relay.wait_for(lambda m: "riavviare il client VPN" in text_of(m),
                                          what="the reply mailed to Mario")
            assert "mario.rossi@example.it" in str(mailed["To"])
            await shot(anna, f"2-l1-workspace-{lang}")
            await anna.fill("#escalate-reason", "errore 809: serve la rete")
            # Escalated away from her groups: done, and the ticket has left her queues.
            await send(anna, "#escalate-form button[type=submit]",
                       f"#notice.done:has-text('{words['left_view']}')")

            # Bruno (L2 network) sees it arrive in his own queue, live.
            _, bruno = await signed_in(browser, url, "bruno")
            await bruno.goto(f"{url}/#/queue?view=mine")
            await bruno.wait_for_selector(f"#queue tr[data-number='{number}']",
                                          timeout=WAIT_MS)
            await shot(bruno, f"3-l2-queue-{lang}")

            # Carla, coordinator, raises the priority with a reason.
            carla_context, carla = await signed_in(browser, url, "carla")
            await carla.goto(f"{url}/#/ticket/{number}")
            await carla.wait_for_selector("#priority-form", timeout=WAIT_MS)
            await carla.select_option("#priority-value", "P1")
            await carla.fill("#priority-reason", "the whole office is offline")
            await send(carla, "#priority-form button[type=submit]",
                       "#ticket-priority:has-text('P1')")
            await shot(carla, f"4-coordinator-workspace-{lang}")
            await carla.goto(f"{url}/#/board")
            await carla.wait_for_selector("#agents tr[data-agent=bruno]", timeout=WAIT_MS)
            assert await carla.locator("#group-load tbody tr").count() >= 1
            await carla.click("#agents tr[data-agent=bruno] button")
            await carla.wait_for_selector(
                f"#agents tr[data-agent=bruno] td:text-is('{words['away']}')", timeout=WAIT_MS)
            await shot(carla, f"5-coordinator-board-{lang}")

            # A stale edit: two tabs on the same ticket; the second one's version is old.
            first_tab = await carla_context.new_page()
            await first_tab.goto(f"{url}/#/ticket/{number}")
            second_tab = await carla_context.new_page()
            await second_tab.goto(f"{url}/#/ticket/{number}")
            for tab in (first_tab, second_tab):
                await tab.wait_for_selector("#conversation article", timeout=WAIT_MS)
            await first_tab.fill("#note-body", "Called the ISP.")
            await first_tab.click("#note-form button[type=submit]")
            await first_tab.wait_for_selector("#conversation article:has-text('Called the ISP')",
                                              timeout=WAIT_MS)
            await second_tab.fill("#note-body", "My note written on the old version")
            await second_tab.click("#note-form button[type=submit]")
            await second_tab.wait_for_selector("#notice.conflict", timeout=WAIT_MS)
            assert await second_tab.input_value("#note-body") == \
                "My note written on the old version"  # nothing typed is lost
            await second_tab.wait_for_selector(
                "#conversation article:has-text('Called the ISP')", timeout=WAIT_MS)
            await shot(second_tab, f"6-stale-edit-{lang}")

            # The admin adds an agent in the console; he then gets the next ticket.
            admin_context, admin_page = await signed_in(browser, url, "admin", ADMIN_PASSWORD)
            await admin_page.goto(f"{url}/#/admin")
            await admin_page.wait_for_selector("#user-form", timeout=WAIT_MS)
            await admin_page.fill("#user-username", "dario")
            await admin_page.fill("#user-name", "Dario")
            await admin_page.select_option("#user-role", "agent")
            await admin_page.select_option("#user-level", "L1")
            await admin_page.fill("#user-groups", "service-desk")
            await admin_page.fill("#user-capacity", "3")
            await admin_page.fill("#user-password", PASSWORD)
            await admin_page.click("#user-form button[type=submit]")
            await admin_page.wait_for_selector("#users td:text-is('dario')", timeout=WAIT_MS)
            await shot(admin_page, f"7-admin-{lang}")
            second = await send_mail(intake.smtp_port, support_mail(
                "Lia Verdi <lia@example.it>", "Stampante bloccata", "Non stampa."))
            _, dario = await signed_in(browser, url, "dario")
            await dario.goto(f"{url}/#/queue?view=mine")
            await dario.wait_for_selector(f"#queue tr[data-number='{second}']",
                                          timeout=WAIT_MS)

            # The vendor sees only the tickets handed to its vendor group: none yet.
            _, vito = await signed_in(browser, url, "vito")
            await vito.goto(f"{url}/#/queue?view=all")
            await vito.wait_for_selector("#queue-empty", timeout=WAIT_MS)
            async with system.client("intake") as intake_api, \
                    system.client("routing") as routing:
                ticket_id = (await intake_api.get(f"/tickets/{second}")).json()["id"]
                for group in ("l3-experts", "l4-vendor"):
                    moved = await routing.post(f"/assignments/{ticket_id}/escalate",
                                               json={"reason": "to the vendor",
                                                     "to_group": group})
                    assert moved.status_code == 200, moved.text
            await vito.wait_for_selector(f"#queue tr[data-number='{second}']", timeout=WAIT_MS)
            rows = await vito.locator("#queue tbody tr").count()
            assert rows == 1
            await vito.goto(f"{url}/#/ticket/{number}")
            await vito.wait_for_selector("#notice:not(:empty)", timeout=WAIT_MS)
            assert await vito.locator("#conversation article").count() == 0
            await shot(vito, f"8-vendor-{lang}")

            # Accessibility: no serious violation on the queue, the workspace, the board.
            problems = []
            for who, ctx, place in (("anna", context, "#/queue"),
                                    ("anna", context, f"#/ticket/{number}"),
                                    ("carla", carla_context, "#/board"),
                                    ("admin", admin_context, "#/admin")):
                found = await serious_violations(browser, url, await ctx.cookies(), place)
                problems += [f"{who} {place}: {v}" for v in found]
            assert not problems, "\n".join(problems)
            assert not SCRIPT_ERRORS, SCRIPT_ERRORS

    async with system.gateway(await admin_token(system)) as api:
        log = (await api.get("/api/admin/audit", params={"ticket": number})).json()
    steps = {(e["actor"], e["action"], e["outcome"]) for e in log["items"]}
    assert {("anna", "ticket.take", "ok"), ("anna", "ticket.reply", "ok"),
            ("anna", "ticket.escalate", "ok"), ("carla", "ticket.priority", "ok"),
            ("carla", "ticket.note", "stale")} <= steps


async def test_a_cookie_session_needs_the_csrf_header_for_changes(system: System) -> None:
    await system.start("gateway")
    async with system.gateway() as client:
        signed = await client.post("/api/auth/console/login",
                                   json={"username": "admin", "password": ADMIN_PASSWORD})
        assert signed.status_code == 200
        assert "access_token" not in signed.text
        assert (await client.get("/api/me")).status_code == 200  # the cookie signs in
        forged = await client.put("/api/me/language", json={"language": "it"})
        assert forged.status_code == 403
        assert forged.json()["error"] == "csrf"
        token = client.cookies["sportello_csrf"]
        allowed = await client.put("/api/me/language", json={"language": "it"},
                                   headers={"X-CSRF-Token": token})
        assert allowed.status_code == 200
        assert allowed.json()["language"] == "it"

        async def renewed() -> bool:
            answer = await client.post("/api/auth/console/refresh",
                                       headers={"X-CSRF-Token": client.cookies["sportello_csrf"]})
            return answer.status_code == 204

        await eventually(renewed, timeout=5, what="the session renewed from its cookie")
        assert (await client.post("/api/auth/logout", headers={
            "X-CSRF-Token": client.cookies["sportello_csrf"]})).status_code == 204
        assert "sportello_session" not in client.cookies


async def test_a_session_that_ends_mid_reply_keeps_the_text_and_sends_it_after_sign_in(
    system: System,
) -> None:
    """Also: signing out ends the session; the admin page edits an agent's capacity and
    previews triage; the keyboard shortcuts work; a tablet-sized screen needs no sideways
    scrolling."""
    await system.start("sla")
    await system.start("routing")
    await system.start("intake")
    gateway = await system.start("gateway")
    async with system.gateway(await admin_token(system)) as admin:
        await add_user(admin, "anna", "agent", level="L1", groups=("service-desk",))
        async with system.channel_client() as channel:
            number = (await channel.post("/tickets", json=ticket_body(5))).json()["number"]
        url = gateway.url
        async with headless_chromium() as browser:
            context, anna = await signed_in(browser, url, "anna")
            await anna.set_viewport_size({"width": 768, "height": 1024})
            await anna.goto(f"{url}/#/ticket/{number}")
            await anna.wait_for_selector("#conversation article", timeout=WAIT_MS)
            overflow = await anna.evaluate(
                "document.scrollingElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{overflow}px wider than a tablet"
            await anna.keyboard.press("r")
            assert await anna.evaluate("document.activeElement.id") == "reply-body"
            await anna.keyboard.type("Ho riavviato il servizio: riprova ora.")

            # Meanwhile her session ends (a new password revokes every session).
            changed = await admin.patch("/api/admin/users/anna",
                                        json={"password": "a-brand-new-passphrase"})
            assert changed.status_code == 200, changed.text
            await anna.click("#reply-form button[type=submit]")
            await anna.wait_for_selector("#signin[open]", timeout=WAIT_MS)
            assert await anna.input_value("#reply-body") == \
                "Ho riavviato il servizio: riprova ora."
            await anna.fill("#password", "a-brand-new-passphrase")
            await anna.fill("#username", "anna")
            await anna.click("#signin-form button[type=submit]")
            await anna.wait_for_selector(
                "#conversation article:has-text('Ho riavviato il servizio')", timeout=WAIT_MS)
            await shot(anna, "9-tablet-after-sign-in-en")
            await anna.click("#logout")
            await anna.wait_for_selector("#signin[open]", timeout=WAIT_MS)
            assert (await context.request.get(f"{url}/api/me")).status == 401
            await context.close()

            _, admin_page = await signed_in(browser, url, "admin", ADMIN_PASSWORD)
            await admin_page.goto(f"{url}/#/admin")
            await admin_page.wait_for_selector("#capacity-anna", timeout=WAIT_MS)
            await admin_page.fill("#capacity-anna", "7")
            await admin_page.click("#agent-setup tr[data-agent=anna] button")
            await admin_page.wait_for_selector("#notice:not(.conflict):not(:empty)",
                                               timeout=WAIT_MS)
            await admin_page.fill("#preview-subject", "VPN non funziona")
            await admin_page.click("#preview-form button[type=submit]")
            await admin_page.wait_for_selector("#preview-result:has-text('network')",
                                               timeout=WAIT_MS)
            assert "escalates to" in await admin_page.inner_text("#groups")
            # The SLA policy, edited on its page: a new version is saved.
            before = (await admin.get("/api/admin/sla/policy")).json()["version"]

            async def policy_shown() -> str:
                return await admin_page.input_value("#sla-form textarea")

            edited = json.loads(await eventually(policy_shown, what="the SLA policy on its page"))
            assert edited["based_on_version"] == before
            edited["warning_thresholds"] = [60, 90]
            await admin_page.fill("#sla-form textarea", json.dumps(edited))
            await admin_page.click("#sla-form button[type=submit]")

            async def saved() -> bool:
                policy = (await admin.get("/api/admin/sla/policy")).json()
                return bool(policy["version"] == before + 1
                            and policy["warning_thresholds"] == [60, 90])

            await eventually(saved, what="the SLA policy saved from its page")
            await admin_page.click("#users tr[data-user=anna] button:has-text('Disable')")
            await admin_page.wait_for_selector(
                "#users tr[data-user=anna] button:has-text('Enable')", timeout=WAIT_MS)
            await admin_page.goto(f"{url}/#/queue?view=all")
            await admin_page.select_option("#queue-sort", "-created")
            await admin_page.click("form[role=search] button[type=submit]")
            await admin_page.wait_for_url("**sort=-created**", timeout=WAIT_MS)
            await admin_page.wait_for_selector(f"#queue tr[data-number='{number}']",
                                               timeout=WAIT_MS)
            assert not SCRIPT_ERRORS, SCRIPT_ERRORS
        agent = (await admin.get("/api/staff/agents")).json()
        anna_account = (await admin.get("/api/admin/users/anna")).json()
    assert next(a for a in agent if a["id"] == "anna")["capacity"] == 7
    assert anna_account["disabled"] is True


async def test_queue_countdowns_turn_amber_then_red_as_sla_warns_and_breaches(
    system: System,
) -> None:
    """A first-response target of a few seconds, round the clock: the real SLA service warns
    and then declares the breach, and the agent's open queue shows it without a reload."""
    await system.start("sla")
    await system.start("routing")
    await system.start("intake")
    gateway = await system.start("gateway")
    async with system.gateway(await admin_token(system)) as admin:
        await add_user(admin, "anna", "agent", level="L1", groups=("service-desk",),
                       capacity=0)
        policy = (await admin.get("/api/admin/sla/policy")).json()
        body = {k: v for k, v in policy.items() if k not in ("version", "created_at", "author")}
        body["based_on_version"] = policy["version"]
        for targets in body["targets"].values():
            targets.update({"calendar": "24x7", "first_response_s": 4})
        saved = await admin.put("/api/admin/sla/policy", json=body)
        assert saved.status_code == 201, saved.text
    async with headless_chromium() as browser:
        _, anna = await signed_in(browser, gateway.url, "anna")
        await anna.goto(f"{gateway.url}/#/queue?view=open")
        async with system.channel_client() as channel:
            number = (await channel.post("/tickets", json=ticket_body(8))).json()["number"]
        row = f"#queue tr[data-number='{number}']"
        await anna.wait_for_selector(f"{row} td[data-due=warning]", timeout=WAIT_MS)
        await shot(anna, "10-countdown-warning-en")
        await anna.wait_for_selector(f"{row} td[data-due=breached]", timeout=WAIT_MS)
        await shot(anna, "11-countdown-breached-en")
