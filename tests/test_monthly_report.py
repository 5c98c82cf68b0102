"""The monthly improvement report through real processes: tickets opened, answered,
escalated, resolved and rated; the report rendered in headless Chromium in Italian and
English (screenshots in .run/test-artifacts/report, audited by axe-core), its CSV equal to
its JSON, and mailed to the coordinators through a real SMTP server."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import axe_playwright_python
import httpx
import pytest
from playwright.async_api import Page
from test_analytics import kpis, rate

from sportello_contracts import utc_now
from support.browser import headless_chromium
from support.mailsink import MailSink
from support.system import SERVICE_TOKEN, System
from support.tickets import ticket_body, wait_assigned
from support.wait import eventually

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ".run/test-artifacts")) / "report"
AXE = Path(axe_playwright_python.__file__).parent / "axe.min.js"
COORDINATOR = "coordinatrice@example.it"
TITLE = {"en": "Service desk: monthly improvement report",
         "it": "Service desk: rapporto mensile di miglioramento"}


def watched(page: Page) -> tuple[list[str], list[str]]:
    """The page's script errors, and every address it asked for."""
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    return errors, requests


async def a_month_of_work(system: System) -> None:
    async with system.channel_client("web") as web, system.client("intake") as intake:
        for n, score in ((1, 5), (2, 4), (3, 2)):
            ticket = (await web.post("/tickets", json=ticket_body(n))).json()
            await wait_assigned(intake, ticket["number"])
            done = await intake.post(f"/tickets/{ticket['number']}/status", json={
                "status": "resolved", "resolution": "Risolto dal primo livello."})
            assert done.status_code == 200, done.text
            await rate(system, ticket["number"], score)


async def test_the_monthly_report_in_both_languages_as_csv_json_and_mail(
        system: System) -> None:
    with MailSink() as relay:
        await system.start("intake")
        await system.start("routing")
        await system.start("knowledge")
        await system.start("analytics", SMTP_RELAY_URL=relay.url,
                           REPORT_RECIPIENTS=json.dumps([COORDINATOR]))
        await a_month_of_work(system)
        month = utc_now().strftime("%Y-%m")
        async with system.client("analytics") as stats:
            async def rated() -> bool:
                ones: float = (await kpis(stats))["satisfaction"]["distribution"]["2"]
                return ones == 1
            await eventually(rated, timeout=30, what="three tickets counted")

            report = (await stats.get("/reports/monthly", params={
                "month": month, "format": "json"})).json()
            figures = report["kpis"]
            assert figures["created"] == 3
            assert figures["satisfaction"]["average"] == pytest.approx(11 / 3, abs=0.01)
            assert report["recurring_problems"]["available"] is True
            assert set(report["findings"]) == {"worse", "articles_deserved", "training",
                                               "breaching_levels"}
            assert report["findings"]["training"][0]["department"] == "Finance"

            # The CSV holds the JSON's numbers.
            answer = await stats.get("/reports/monthly", params={"month": month,
                                                                 "format": "csv"})
            assert answer.headers["content-type"].startswith("text/csv")
            rows = {(r["section"], r["name"]): r["value"]
                    for r in csv.DictReader(io.StringIO(answer.text))}
            for name, figure in figures["change"].items():
                if ("this month", name) in rows:
                    assert rows[("this month", name)] == ("" if figure["now"] is None
                                                          else str(figure["now"])), name
            for day in figures["per_day"]:
                assert float(rows[("created per day", day["day"])]) == day["created"]
            for category in figures["top_categories"]:
                assert float(rows[("tickets per category", category["category"])]) == \
                    category["tickets"]
            for score, count in figures["satisfaction"]["distribution"].items():
                assert float(rows[("satisfaction", f"rated {score}")]) == count
            assert ("this month", "satisfaction") in rows

            bad = await stats.get("/reports/monthly", params={"month": "2026-13"})
            assert bad.status_code == 422

            sent = await stats.post(f"/reports/monthly/{month}/send")
            assert sent.status_code == 200, sent.text
        mail = await relay.wait_for(lambda m: COORDINATOR in str(m["To"]), what="the report")
        assert TITLE["en"] in str(mail["Subject"])
        parts = {p.get_content_type(): p for p in mail.walk()}
        assert "<svg" in parts["text/html"].get_content()
        assert "section,name,value" in parts["text/csv"].get_content()

    url = f"{system.services['analytics'].url}/reports/monthly?month={month}"
    async with headless_chromium() as browser:
        for lang in ("it", "en"):
            context = await browser.new_context(
                extra_http_headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
                viewport={"width": 1100, "height": 900}, bypass_csp=True)
            page = await context.new_page()
            errors, requests = watched(page)
            await page.goto(f"{url}&lang={lang}")
            assert await page.inner_text("h1") == TITLE[lang]
            assert await page.get_attribute("html", "lang") == lang
            assert await page.locator("svg").count() >= 4
            assert await page.locator("tbody tr").count() >= 10
            assert await page.locator("#training li").count() >= 1
            assert all(r.startswith(system.services["analytics"].url) for r in requests), \
                requests  # nothing loaded from elsewhere
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / f"report-{lang}.png"), full_page=True)
            await page.add_script_tag(path=str(AXE))
            audit = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            serious = [f"{v['id']}: {v['help']}" for v in audit["violations"]
                       if v["impact"] in ("serious", "critical")]
            assert serious == [], serious
            assert errors == []
            await context.close()
    async with httpx.AsyncClient(base_url=system.services["analytics"].url) as anyone:
        unsigned = await anyone.get("/reports/monthly", params={"month": month})
        assert unsigned.status_code == 401  # behind the service token
