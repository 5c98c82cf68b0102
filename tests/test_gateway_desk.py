"""The desk through the gateway on real processes: queues filtered and paged with cursors,
the coordinator's and the agent's other commands (assign, priority, category, waiting for the
customer, a logged call, a linked article, hand-back, resolve), and the rate limit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support.gateway import add_user, admin_token, login, workspace
from support.system import System
from support.tickets import ticket_body
from support.wait import eventually

pytestmark = pytest.mark.e2e


async def act(desk: httpx.AsyncClient, number: str, command: str,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read, then act with the ETag; read again when the system moved the ticket in
    between (a 412 says so), as a console does."""
    for _ in range(5):
        _, etag = await workspace(desk, number)
        response = await desk.post(f"/api/tickets/{number}/{command}", json=body,
                                   headers={"If-Match": etag})
        if response.status_code != 412:
            assert response.status_code == 200, response.text
            return dict(response.json())
    raise AssertionError(f"{command} on {number} stayed stale")


async def test_queues_filter_and_page_with_cursors_without_gaps_or_repeats(
    system: System,
) -> None:
    await system.start("sla")
    await system.start("routing")
    await system.start("intake")
    await system.start("gateway")
    async with system.channel_client() as channel:
        numbers = [(await channel.post("/tickets", json=ticket_body(n))).json()["number"]
                   for n in range(7)]
        printer = (await channel.post("/tickets", json=ticket_body(
            99, subject="Printer on floor 3 jams", description="Paper jam, again."))).json()
    async with system.gateway(await admin_token(system)) as admin:

        async def all_lines() -> bool:
            page = (await admin.get("/api/tickets", params={"limit": 50})).json()
            return len(page["items"]) == 8

        await eventually(all_lines, what="every ticket in the queue")
        for sort in ("priority", "created", "-created", "-updated"):
            seen: list[str] = []
            cursor = None
            for _ in range(10):
                params: dict[str, Any] = {"limit": 3, "sort": sort}
                if cursor:
                    params["next"] = cursor
                page = (await admin.get("/api/tickets", params=params)).json()
                seen += [item["number"] for item in page["items"]]
                cursor = page["next"]
                if cursor is None:
                    break
            assert sorted(seen) == sorted([*numbers, printer["number"]]), sort
        oldest = [i["number"] for i in (await admin.get(
            "/api/tickets", params={"sort": "created"})).json()["items"]]
        assert oldest[:7] == numbers

        by_text = (await admin.get("/api/tickets", params={"q": "printer"})).json()
        by_requester = (await admin.get("/api/tickets", params={
            "requester": "Giulia.Rossi3@example.com"})).json()
        by_category = (await admin.get("/api/tickets", params={"category": "network"})).json()
        by_level = (await admin.get("/api/tickets", params={"level": "L2"})).json()
        mixed = await admin.get("/api/tickets", params={"sort": "created", "next": (
            await admin.get("/api/tickets", params={"limit": 1})).json()["next"]})
    assert [i["number"] for i in by_text["items"]] == [printer["number"]]
    assert [i["number"] for i in by_requester["items"]] == [numbers[3]]
    assert printer["number"] not in {i["number"] for i in by_category["items"]}
    assert len(by_category["items"]) == 7
    assert by_level["items"] == []
    assert mixed.status_code == 400  # a cursor of another sort


async def test_coordinators_and_agents_run_the_other_commands_and_each_is_audited(
    system: System,
) -> None:
    await system.start("sla")
    await system.start("routing")
    await system.start("intake")
    await system.start("gateway")
    async with system.gateway(await admin_token(system)) as admin:
        await add_user(admin, "anna", "agent", level="L1", groups=("service-desk",),
                       capacity=0)
        await add_user(admin, "ugo", "agent", level="L1", groups=("service-desk",),
                       capacity=0)
        await add_user(admin, "bruno", "agent", level="L2", groups=("l2-network",))
        await add_user(admin, "carla", "coordinator")
    async with system.channel_client() as channel:
        number = (await channel.post("/tickets", json=ticket_body(1))).json()["number"]
    carla, anna, bruno = [await login(system, n) for n in ("carla", "anna", "bruno")]
    async with (system.gateway(carla) as coordinator, system.gateway(anna) as agent,
                system.gateway(bruno) as l2):

        async def queued() -> bool:
            ws, _ = await workspace(coordinator, number)
            return bool(ws["assignment"]) and ws["assignment"]["state"] == "queued"

        await eventually(queued, what="the ticket queued at L1")
        given = await act(coordinator, number, "assign", {"agent_id": "ugo",
                                                          "reason": "knows this customer"})
        assert given["assignment"]["agent_id"] == "ugo"
        moved = await act(coordinator, number, "assign", {"agent_id": "anna"})
        assert moved["assignment"]["agent_id"] == "anna"
        outsider = await coordinator.post(f"/api/tickets/{number}/assign", json={
            "agent_id": "bruno"}, headers={"If-Match": (await workspace(coordinator,
                                                                        number))[1]})
        assert outsider.status_code == 409
        assert outsider.json()["field"] == "agent_id"
        raised = await act(coordinator, number, "priority", {"priority": "P1",
                                                             "reason": "CEO's laptop"})
        assert raised["assignment"]["priority"] == "P1"
        denied = await agent.post(f"/api/tickets/{number}/priority", json={
            "priority": "P4", "reason": "r"}, headers={"If-Match": '"1.1"'})
        assert denied.status_code == 403
        # The workspace says what chose the category; the coordinator corrects it.
        ws, _ = await workspace(coordinator, number)
        assert ws["assignment"]["history"][0]["decided_by"] == "rule"
        corrected = await act(coordinator, number, "category", {
            "category": "software", "reason": "the VPN client, not the network"})
        assert corrected["assignment"]["category"] == "software"
        assert corrected["assignment"]["history"][-1]["kind"] == "recategorised"
        unknown = await coordinator.post(f"/api/tickets/{number}/category", json={
            "category": "badges", "reason": "r"}, headers={"If-Match": (await workspace(
                coordinator, number))[1]})
        assert unknown.status_code == 409
        assert unknown.json()["field"] == "category"
        not_theirs = await agent.post(f"/api/tickets/{number}/category", json={
            "category": "network", "reason": "r"}, headers={"If-Match": '"1.1"'})
        assert not_theirs.status_code == 403

        waiting = await act(agent, number, "status", {"status": "waiting_customer",
                                                      "reason": "asked for the error"})
        assert waiting["ticket"]["status"] == "waiting_customer"
        called = await act(agent, number, "calls", {
            "duration_s": 240, "notes": "Walked through the VPN settings.", "public": False})
        assert any(m.get("call") for m in called["ticket"]["messages"])
        linked = await act(agent, number, "articles", {
            "article_id": "KB-0042", "title": "VPN error 809",
            "url": "https://kb.example.com/KB-0042"})
        assert "KB-0042" in linked["ticket"]["messages"][-1]["body"]
        assert linked["ticket"]["messages"][-1]["visibility"] == "internal"
        escalated = await act(agent, number, "escalate", {"reason": "network side",
                                                          "to_group": "l2-network"})
        assert escalated["assignment"]["level"] == "L2"

        async def bruno_holds_it() -> bool:
            ws, _ = await workspace(l2, number)
            return bool(ws["assignment"]["agent_id"] == "bruno")

        await eventually(bruno_holds_it, what="Bruno holding the ticket")
        back = await act(l2, number, "hand-back", {"to_group": "service-desk",
                                                   "reason": "customer contact"})
        assert back["assignment"]["owner_group_id"] == "l2-network"
        # Handed back, the ticket is in both groups' sight: L1 talks, L2 owns the fix.
        assert (await agent.get(f"/api/tickets/{number}")).status_code == 200
        assert (await l2.get(f"/api/tickets/{number}")).status_code == 200
        no_resolution = await l2.post(f"/api/tickets/{number}/status", json={
            "status": "resolved"}, headers={"If-Match": (await workspace(l2, number))[1]})
        assert no_resolution.status_code in (409, 422), no_resolution.text
        resolved = await act(l2, number, "status", {
            "status": "resolved", "resolution": "VPN profile rebuilt on the gateway."})
        assert resolved["ticket"]["status"] == "resolved"

    async with system.gateway(await admin_token(system)) as admin:
        log = (await admin.get("/api/admin/audit", params={"ticket": number})).json()
        exported = await admin.get("/api/admin/audit/export", params={"ticket": number,
                                                                      "format": "csv"})
    actions = {(e["actor"], e["action"]) for e in log["items"] if e["outcome"] == "ok"}
    assert actions >= {("carla", "ticket.assign"), ("carla", "ticket.priority"),
                       ("anna", "ticket.status"), ("anna", "ticket.call"),
                       ("anna", "ticket.link_article"), ("anna", "ticket.escalate"),
                       ("bruno", "ticket.hand_back"), ("bruno", "ticket.status")}
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = exported.text.strip().splitlines()
    assert rows[0].startswith("at,actor,role")
    assert len(rows) == 1 + len(log["items"])


async def test_a_user_over_the_rate_limit_is_told_when_to_come_back(system: System) -> None:
    await system.start("gateway", RATE_LIMIT_PER_MINUTE="6", RATE_LIMIT_BURST="3")
    token = await admin_token(system)
    async with system.gateway(token) as admin:
        answers = [await admin.get("/api/me") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[3].headers["Retry-After"]) >= 1
    assert answers[3].json()["error"] == "rate_limited"
