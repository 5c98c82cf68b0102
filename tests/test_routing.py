"""Routing through real processes: admin validation, the escalation journey, load balancing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from support.probe import BusProbe
from support.system import System
from support.tickets import ticket_body, wait_assigned
from support.wait import eventually

pytestmark = pytest.mark.e2e


async def put_agent(routing: httpx.AsyncClient, agent_id: str, **fields: Any) -> dict[str, Any]:
    body = {"name": agent_id.title(), "level": "L1", "groups": ["service-desk"], "capacity": 5,
            **fields}
    response = await routing.put(f"/agents/{agent_id}", json=body)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


async def test_admin_input_is_validated_with_the_field_and_the_reason(system: System) -> None:
    await system.start("routing")
    async with system.client("routing") as routing:
        unknown_group = await routing.put("/agents/ada", json={
            "name": "Ada", "level": "L1", "groups": ["nowhere"], "capacity": 3})
        negative = await routing.put("/agents/ada", json={
            "name": "Ada", "level": "L1", "groups": ["service-desk"], "capacity": -1})
        loop = await routing.put("/groups/l2-network", json={
            "name": "L2 Network", "level": "L2", "categories": ["network"],
            "escalates_to": "service-desk"})
        policy = (await routing.get("/triage/policy")).json()
        broken_rule = await routing.put("/triage/policy", json={
            **{k: v for k, v in policy.items() if k != "version"},
            "rules": [{"category": "network", "when": 'text =~~ "(vpn"'}]})
        stale = await routing.put("/triage/policy", json={
            **{k: v for k, v in policy.items() if k != "version"}, "based_on_version": 0})
        in_use = await routing.delete("/groups/l4-vendor")

    assert unknown_group.status_code == 422
    assert unknown_group.json()["field"] == "groups"
    assert negative.status_code == 422
    assert negative.json()["detail"][0]["field"] == "capacity"
    assert loop.status_code == 422
    assert loop.json()["field"] == "escalates_to"
    assert "higher level" in loop.json()["message"]
    assert broken_rule.status_code == 422
    assert broken_rule.json()["field"] == "rules.0.when"
    assert "regular expression" in broken_rule.json()["message"]
    assert stale.status_code == 409
    assert in_use.status_code == 409  # l3-experts escalates to it
    assert "escalate to l4-vendor" in in_use.json()["message"]


async def test_rules_are_versioned_and_new_tickets_use_the_latest(system: System) -> None:
    await system.start("intake")
    await system.start("routing")
    async with system.client("routing") as routing:
        policy = (await routing.get("/triage/policy")).json()
        edited = {k: v for k, v in policy.items() if k != "version"}
        edited["rules"] = [{"category": "printer", "when": 'text =~~ "plotter"'},
                           *policy["rules"]]
        saved = await routing.put("/triage/policy",
                                  json={**edited, "based_on_version": policy["version"]})
        assert saved.status_code == 201, saved.text
        assert saved.json()["version"] == policy["version"] + 1
        preview = (await routing.post("/triage/preview",
                                      json={"subject": "Il plotter A0 è fermo"})).json()
        assert preview["category"] == "printer"
        assert preview["policy_version"] == policy["version"] + 1

        async with system.channel_client("web") as channel:
            body = ticket_body(subject="Il plotter A0 è fermo", description="carta inceppata")
            ticket = (await channel.post("/tickets", json=body)).json()
        async with system.client("intake") as intake:
            await wait_assigned(intake, ticket["number"])
        assignment = (await routing.get(f"/assignments/{ticket['id']}")).json()
    assert assignment["category"] == "printer"
    assert assignment["history"][0]["policy_version"] == policy["version"] + 1


async def test_a_business_network_ticket_climbs_from_l1_to_the_vendor(
    system: System, probe: BusProbe
) -> None:
    """Every service real: the L2 breach comes from the SLA service's own timer."""
    await system.start("intake")
    await system.start("routing", QUEUE_SWEEP_INTERVAL_S="0.3")  # refreshes the waiting gauge
    await system.start("sla", TIMER_POLL_INTERVAL_S="0.1")
    async with system.client("sla") as sla:
        policy = {k: v for k, v in (await sla.get("/policy")).json().items() if k != "version"}
        policy["level_time_box_s"] = {"L1": 3600, "L2": 3, "L3": 3600}
        assert (await sla.put("/policy", json=policy)).status_code == 201
    async with system.client("routing") as routing:
        await put_agent(routing, "lucia")
        await put_agent(routing, "nico", level="L2", groups=["l2-network"], skills=["network"])
        await put_agent(routing, "elena", level="L3", groups=["l3-experts"])
        await put_agent(routing, "acme-support", level="L4", groups=["l4-vendor"])

        body = ticket_body(
            subject="VPN down for the whole office",
            description="Nessuno riesce a collegarsi alla VPN dalle 8:00",
            requester={"name": "Acme S.p.A.", "email": "it@acme.example",
                       "customer_type": "business", "contract_tier": "gold"},
        )
        async with system.channel_client("web") as channel:
            ticket = (await channel.post("/tickets", json=body)).json()
        tid = ticket["id"]
        async with system.client("intake") as intake:
            first = await wait_assigned(intake, ticket["number"])
            assert (first["level"], first["group_id"], first["agent_id"]) == (
                "L1", "service-desk", "lucia")

            async def at(level: str) -> Any:
                async def check() -> dict[str, Any] | None:
                    t = (await intake.get(f"/tickets/{ticket['number']}")).json()
                    return t if t["level"] == level else None
                return await eventually(check, what=f"ticket at {level}")

            triaged = (await routing.get(f"/assignments/{tid}")).json()
            assert (triaged["category"], triaged["priority"]) == ("network", "P1")

            # L1 cannot solve it: the agent escalates; the chain picks L2 network.
            escalated = await routing.post(f"/assignments/{tid}/escalate",
                                           json={"reason": "needs a network specialist",
                                                 "actor": "lucia"})
            assert escalated.status_code == 200, escalated.text
            assert (escalated.json()["group_id"], escalated.json()["agent_id"]) == (
                "l2-network", "nico")
            await at("L2")

            # Nico cannot fix it within L2's 3-second time box: SLA breaches, routing escalates.
            at_l3 = await at("L3")
            [breach] = probe.of_type("sla.breached", tid)
            assert breach.payload["level"] == "L2"
            await probe.publish(breach)  # and the breach is delivered again
            assert (at_l3["group_id"], at_l3["agent_id"]) == ("l3-experts", "elena")

            # L3 finds a firmware bug and hands it over to the vendor.
            vendor = await routing.post(f"/assignments/{tid}/escalate",
                                        json={"reason": "firmware bug in the VPN appliance",
                                              "actor": "elena", "to_group": "l4-vendor"})
            assert vendor.status_code == 200, vendor.text
            final = await at("L4")
            assert (final["group_id"], final["agent_id"]) == ("l4-vendor", "acme-support")

            # Every step once, in history and on the bus, even with the events delivered again.
            await probe.wait_for(lambda _: len(probe.of_type("ticket.assigned", tid)) == 4)
            for event in [*probe.of_type("ticket.created", tid),
                          *probe.of_type("ticket.assigned", tid)]:
                await probe.publish(event)
            await probe.publish(breach)

            async def redeliveries_consumed() -> bool:
                text = (await routing.get("/metrics")).text
                return 'events_consumed_total{outcome="duplicate",type="ticket.created"}' in text
            await eventually(redeliveries_consumed, what="redeliveries handled")
            assignment = (await routing.get(f"/assignments/{tid}")).json()
            steps = [(h["kind"], h.get("to_level"), h.get("escalation"))
                     for h in assignment["history"]]
            assert steps == [
                ("triaged", None, None),
                ("assigned", "L1", None),
                ("escalated", "L2", "manual"),
                ("escalated", "L3", "automatic"),
                ("escalated", "L4", "manual"),
            ]
            assert assignment["history"][3]["clock_id"] == breach.payload["clock_id"]
            assert (await intake.get(f"/tickets/{ticket['number']}")).json()["version"] == 5
            loads = {a["id"]: a["open_tickets"] for a in (await routing.get("/agents")).json()}
            assert loads == {"lucia": 0, "nico": 0, "elena": 0, "acme-support": 1}

            async def gauge_refreshed() -> str | None:
                text = (await routing.get("/metrics")).text
                return text if 'tickets_waiting{group="l2-network"} 0.0' in text else None

            metrics = await eventually(gauge_refreshed, what="the waiting gauge")

    escalations = probe.of_type("ticket.escalated", tid)
    assert [(e.payload["from_level"], e.payload["to_level"], e.payload["kind"])
            for e in escalations] == [("L1", "L2", "manual"), ("L2", "L3", "automatic"),
                                      ("L3", "L4", "manual")]
    assert sorted({e.payload["sequence"] for e in probe.of_type("ticket.assigned", tid)}) == [
        1, 2, 3, 4]
    for line in [
        'tickets_triaged_total{category="network",priority="P1"} 1.0',
        'ticket_escalations_total{from_level="L1",kind="manual",to_level="L2"} 1.0',
        'ticket_escalations_total{from_level="L2",kind="automatic",to_level="L3"} 1.0',
        'ticket_escalations_total{from_level="L3",kind="manual",to_level="L4"} 1.0',
        'tickets_assigned_total{group="l4-vendor",level="L4"} 1.0',
        'tickets_waiting{group="l2-network"} 0.0',
        "ticket_time_to_assign_seconds_count 1.0",  # only the first time an agent holds it
    ]:
        assert line in metrics, line


async def test_two_hundred_tickets_over_five_agents_respect_capacity_and_leave_nobody_idle(
    system: System,
) -> None:
    await system.start("intake")
    await system.start("routing")
    capacities = {"anna": 2, "bruno": 3, "carla": 4, "dario": 5, "elisa": 6}
    total_capacity, total = sum(capacities.values()), 200
    async with system.client("routing") as routing, system.client("intake") as intake:
        for agent_id, capacity in capacities.items():
            await put_agent(routing, agent_id, capacity=capacity)
        async with system.channel_client("api") as channel:
            semaphore = asyncio.Semaphore(10)

            async def post(n: int) -> None:
                async with semaphore:
                    response = await channel.post("/tickets", json=ticket_body(n, channel="api"))
                    assert response.status_code == 201

            await asyncio.gather(*(post(n) for n in range(total)))

        handled: dict[str, int] = dict.fromkeys(capacities, 0)
        resolved = 0
        while resolved < total:
            expected_busy = min(total_capacity, total - resolved)

            async def settled(expected: int = expected_busy, still_open: int = total - resolved
                              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
                busy = (await routing.get("/queues", params={"state": "assigned",
                                                             "limit": 500})).json()
                waiting = (await routing.get("/queues", params={"state": "queued",
                                                                "limit": 500})).json()
                settled_now = len(busy) == expected and len(busy) + len(waiting) == still_open
                return (busy, waiting) if settled_now else None

            busy, waiting = await eventually(settled, timeout=60,
                                             what=f"{expected_busy} tickets held")
            agents = {a["id"]: a for a in (await routing.get("/agents")).json()}
            for agent_id, capacity in capacities.items():
                assert agents[agent_id]["open_tickets"] <= capacity  # capacity respected
                if waiting:  # nobody idle while tickets wait
                    assert agents[agent_id]["open_tickets"] == capacity, (agent_id, agents)
            assert len(waiting) == total - resolved - expected_busy

            async def resolve(held: dict[str, Any]) -> None:
                response = await intake.post(f"/tickets/{held['number']}/status", json={
                    "status": "resolved", "resolution": "done", "actor": held["agent_id"]})
                assert response.status_code == 200, response.text

            await asyncio.gather(*(resolve(held) for held in busy))
            for held in busy:
                handled[held["agent_id"]] += 1
            resolved += len(busy)

        assert sum(handled.values()) == total
        # Work follows capacity: the agent with 6 slots handled about three times anna's 2.
        assert handled["elisa"] > handled["carla"] > handled["anna"]

        async def all_free() -> bool:
            agents = (await routing.get("/agents")).json()
            return all(a["open_tickets"] == 0 for a in agents)

        await eventually(all_free, what="every agent free once all tickets are resolved")
