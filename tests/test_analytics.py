"""Analytics through real processes: tickets created, answered, escalated by a breached L1
time box, resolved and rated move the numbers as expected; every event is kept once; a
rebuild from the kept events gives exactly the numbers the live path gave."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
import pytest
from test_sla import FAST, shorten_l1

from sportello_contracts import utc_now
from sportello_intake.requester import tokens
from support.probe import BusProbe
from support.system import STATUS_TOKEN_SECRET, System
from support.tickets import ticket_body, wait_assigned
from support.wait import eventually

pytestmark = pytest.mark.e2e


async def kpis(analytics: httpx.AsyncClient, **filters: str) -> dict[str, Any]:
    today = utc_now().date()
    answer = await analytics.get("/kpis", params={
        "from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat(), **filters})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def rate(system: System, number: str, score: int) -> None:
    token = tokens.issue(STATUS_TOKEN_SECRET, number, now=utc_now(), ttl=timedelta(hours=1))
    async with httpx.AsyncClient(base_url=system.services["intake"].url) as requester:
        rated = await requester.post(f"/public/tickets/{number}/rating",
                                     params={"token": token}, json={"score": score})
    assert rated.status_code == 200, rated.text


async def test_tickets_move_the_numbers_and_a_rebuild_gives_the_same(
        system: System, probe: BusProbe) -> None:
    await system.start("intake")
    await system.start("routing")
    await system.start("sla", **FAST)
    analytics = await system.start("analytics", GAUGE_INTERVAL_S="0.5")
    async with system.client("sla") as sla, system.client("intake") as intake, \
            system.client("analytics") as stats:
        await shorten_l1(sla, 8)  # room for the first to be solved in its box, under load too
        async with system.channel_client("web") as web:
            fixed = (await web.post("/tickets", json=ticket_body(1))).json()
        await wait_assigned(intake, fixed["number"])
        answer = await intake.post(f"/tickets/{fixed['number']}/messages", json={
            "author_id": "anna", "body": "Provi a riavviare il client.", "visibility": "public"})
        assert answer.status_code == 201, answer.text
        done = await intake.post(f"/tickets/{fixed['number']}/status", json={
            "status": "resolved", "resolution": "Client riavviato."})
        assert done.status_code == 200, done.text
        await rate(system, fixed["number"], 5)

        # The second waits past its L1 time box: breached, escalated automatically.
        async with system.channel_client("email") as mail:
            slow = (await mail.post("/tickets", json=ticket_body(
                2, channel="email", requester={"name": "Marco", "email": "m@example.com",
                                               "department": "Sales"}))).json()
        await probe.wait_for(lambda evs: any(e.type == "ticket.escalated"
                                             and e.ticket_id == slow["id"] for e in evs),
                             timeout=30, what="automatic escalation")
        done = await intake.post(f"/tickets/{slow['number']}/status", json={
            "status": "resolved", "resolution": "Profilo VPN rigenerato."})
        assert done.status_code == 200, done.text
        await rate(system, slow["number"], 2)

        async def counted() -> dict[str, Any] | None:
            now = await kpis(stats)
            return now if (now["resolved"] == 2 and now["satisfaction"]["distribution"]["2"]
                           and now["sla"]["level_time_box"]["breached"]
                           and now["resolution"]["business"]["count"] == 2) else None
        live = await eventually(counted, timeout=30, what="the numbers moved")
        assert live["created"] == 2
        assert live["escalation"]["automatic"] == 1
        assert live["escalation"]["rate"] == 0.5
        assert live["escalation"]["per_level"]["L1"] == 0.5
        assert live["first_contact_resolution"] == 0.5
        assert live["satisfaction"]["average"] == 3.5
        assert live["first_response"]["count"] == 2
        # SLA's clocks told their business time (round the clock here: about the wall time).
        business = live["resolution"]["business"]
        assert business["count"] == 2
        assert business["mean_s"] <= live["resolution"]["mean_s"] + 1
        assert live["backlog"][-1]["open"] == 0
        assert live["departments_by_sla_breaches"][0]["department"] == "Sales"
        by_channel = await kpis(stats, channel="email")
        assert (by_channel["created"], by_channel["escalation"]["automatic"]) == (1, 1)
        facts = (await stats.get(f"/tickets/{slow['id']}/facts")).json()
        assert facts["levels_passed"] == ["L1", "L2"]
        assert facts["sla"]["level_time_box"] == "breached"

        # The business gauges Prometheus scrapes.
        async def gauges() -> str | None:
            text = (await stats.get("/metrics")).text
            return text if "helpdesk_satisfaction_average 3.5" in text else None
        scraped = await eventually(gauges, what="the business gauges")
        assert 'helpdesk_backlog_tickets{level="L2"} 0.0' in scraped
        compliance = live["sla"]["level_time_box"]["compliance"]  # the first may be in time
        assert f'helpdesk_sla_compliance_ratio{{target="level_time_box"}} {compliance}' in \
            scraped
        assert "analytics_events_total" in scraped

    # From the kept events alone, with the service stopped: the same numbers.
    analytics.stop()
    rebuilt = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "sportello_analytics", "rebuild"],
        env={**os.environ, **analytics.env}, capture_output=True, text=True, timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt" in rebuilt.stderr
    analytics.start()
    await analytics.wait_ready()
    async with system.client("analytics") as stats:
        again = await kpis(stats)
    assert again == live


async def test_bad_periods_and_filters_are_refused_with_the_field(system: System) -> None:
    await system.start("analytics")
    async with system.client("analytics") as stats:
        for params, field in (({"from": "2026-13-01", "to": "2026-12-01"}, "from"),
                              ({"from": "2026-12-02", "to": "2026-12-01"}, "to"),
                              ({"from": "2020-01-01", "to": "2026-01-01"}, "to"),
                              ({"from": "2026-12-01"}, "to")):
            answer = await stats.get("/kpis", params=params)
            assert answer.status_code == 422, (params, answer.text)
            body = answer.json()
            fields = [d["field"] for d in body.get("detail", [])] or [body.get("field")]
            assert field in fields, (params, body)
    async with httpx.AsyncClient(base_url=system.services["analytics"].url) as anyone:
        assert (await anyone.get("/kpis", params={"from": "2026-12-01",
                                                  "to": "2026-12-02"})).status_code == 401
