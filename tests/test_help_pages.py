"""The requesters' self-service pages in headless Chromium, on a real knowledge process:
search in either language, read an article, say whether it solved the problem. A "yes" is
a deflected ticket (counted once, announced); a "no" goes on to the web form pre-filled
with what was searched. Screenshots go to .run/test-artifacts/help; axe-core audits."""

from __future__ import annotations

import os
from pathlib import Path

import axe_playwright_python
import httpx
import pytest
from playwright.async_api import Page, Route

from support.browser import headless_chromium
from support.probe import BusProbe
from support.system import System

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ".run/test-artifacts")) / "help"
AXE = Path(axe_playwright_python.__file__).parent / "axe.min.js"
FORM = "http://forms.invalid/portal/new"

ARTICLES = {
    "it": {"title": "La stampante non stampa",
           "body": "Se la **stampante** è bloccata:\n\n1. spegnerla\n2. togliere la carta "
                   "inceppata\n3. riaccenderla\n\n<script>alert('x')</script>"},
    "en": {"title": "The printer does not print",
           "body": "When the **printer** jams:\n\n1. switch it off\n2. remove the jammed "
                   "paper\n3. switch it on again"},
}
SEARCH = {"it": ("stampanti bloccate", "Sì, risolto", "Bene!"),
          "en": ("printers jammed", "Yes, it did", "Glad it helped")}


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def serious_violations(page: Page) -> list[str]:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']}" for v in result["violations"]
            if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("lang", ["it", "en"])
async def test_a_requester_searches_reads_and_answers_in_the_browser(
        system: System, probe: BusProbe, lang: str) -> None:
    knowledge = await system.start("knowledge", TICKET_FORM_URL=FORM)
    async with system.client("knowledge") as kb:
        ids: dict[str, str] = {}
        for language in ("it", "en"):
            body = {**ARTICLES[language], "language": language, "audience": "public",
                    "owner": "editor", "category": "hardware",
                    **({"translation_of": ids["it"]} if ids else {})}
            created = (await kb.post("/articles", json=body)).json()
            assert (await kb.post(f"/articles/{created['id']}/publish")).status_code == 200
            ids[language] = created["id"]
    words, yes, thanks = SEARCH[lang]
    async with headless_chromium() as browser:
        context = await browser.new_context(bypass_csp=True)  # only to inject axe-core
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{knowledge.url}/help?lang={lang}")
        await page.fill("#q", words)
        await page.press("#q", "Enter")
        await page.wait_for_selector(".hit h2 a")
        assert await page.inner_text(".hit h2 a") == ARTICLES[lang]["title"]
        assert await page.locator(".hit p b").count() >= 1  # the matched words
        assert await serious_violations(page) == []
        await shot(page, f"search-{lang}")

        await page.click(".hit h2 a")
        await page.wait_for_selector("article h1")
        assert await page.locator("article ol li").count() == 3
        assert await page.locator("article script").count() == 0
        assert await page.get_attribute("html", "lang") == lang
        assert await page.locator(f"a[hreflang={'en' if lang == 'it' else 'it'}]").count() == 1
        assert await serious_violations(page) == []
        await shot(page, f"article-{lang}")
        article_url = page.url

        await page.click(f"button:has-text('{yes}')")
        await page.wait_for_selector("h1[role=status]")
        assert await page.inner_text("h1") == thanks
        await shot(page, f"solved-{lang}")
        await page.go_back()
        await page.click(f"button:has-text('{yes}')")  # the same page again: once

        # "No": on to the web form, pre-filled with the words searched.
        followed: list[str] = []

        async def to_the_form(route: Route) -> None:
            followed.append(route.request.url)
            await route.fulfill(body="the web form", content_type="text/plain")

        await page.route(f"{FORM}*", to_the_form)
        await page.goto(article_url)
        await page.click("button[value=no]")
        await page.wait_for_url(f"{FORM}*")
        assert followed
        assert f"lang={lang}" in followed[0]
        assert "subject=" + words.split()[0] in followed[0]
        assert errors == []
        await context.close()
    await probe.wait_for(lambda evs: any(e.type == "kb.deflected" for e in evs),
                         what="kb.deflected")
    async with system.client("knowledge") as kb:
        assert (await kb.get("/stats")).json()["deflections"] == 1
        feedback = (await kb.get(f"/articles/{ids[lang]}/feedback")).json()
        assert (feedback["helpful"], feedback["not_helpful"]) == (1, 1)
    assert len([e for e in probe.events if e.type == "kb.deflected"]) == 1


async def test_the_pages_refuse_drafts_internal_articles_and_foreign_resources(
        system: System) -> None:
    knowledge = await system.start("knowledge")
    async with system.client("knowledge") as kb:
        internal = (await kb.post("/articles", json={
            "title": "Procedura interna", "body": "Solo agenti.", "language": "it",
            "audience": "internal", "owner": "editor"})).json()
        await kb.post(f"/articles/{internal['id']}/publish")
        draft = (await kb.post("/articles", json={
            "title": "Bozza pubblica", "body": "![t](https://tracker.example/t.png)",
            "language": "it", "audience": "public", "owner": "editor"})).json()
    async with httpx.AsyncClient(base_url=knowledge.url) as anyone:
        for article in (internal, draft):
            assert (await anyone.get(f"/help/articles/{article['id']}")).status_code == 404
            assert (await anyone.get(f"/public/articles/{article['id']}")).status_code == 404
        page = await anyone.get("/help", params={"q": "procedura interna", "lang": "it"})
        assert page.status_code == 200
        assert "Procedura interna" not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
