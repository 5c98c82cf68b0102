"""The first slice through real processes: a ticket posted to intake is assigned by routing."""

from __future__ import annotations

import re
import signal

import pytest

from support.probe import BusProbe
from support.system import System
from support.tickets import ticket_body, wait_assigned

pytestmark = pytest.mark.e2e


async def test_posted_ticket_is_assigned_to_the_default_l1_group(
    system: System, probe: BusProbe
) -> None:
    await system.start("intake")
    await system.start("routing")

    async with system.channel_client("web") as channel:
        response = await channel.post("/tickets", json=ticket_body())
    assert response.status_code == 201, response.text
    created = response.json()
    assert re.fullmatch(r"HD-\d{4}-\d{6}", created["number"])
    assert created["status"] == "new"
    assert response.headers["location"] == f"/tickets/{created['number']}"

    async with system.client("intake") as intake:
        ticket = await wait_assigned(intake, created["number"])
    assert ticket["level"] == "L1"
    assert ticket["group_id"] == "service-desk"
    assert ticket["group_name"] == "L1 Service Desk"
    assert ticket["version"] == 2

    events = await probe.wait_for(
        lambda evs: any(e.type == "ticket.status_changed" for e in evs), what="status change"
    )
    ticket_id = created["id"]
    by_type = {e.type: e for e in events if e.ticket_id == ticket_id}
    assert set(by_type) >= {"ticket.created", "ticket.assigned", "ticket.status_changed"}
    # One journey: every hop carries the ticket's correlation id and names its cause.
    assert {e.correlation_id for e in by_type.values()} == {ticket_id}
    assert by_type["ticket.assigned"].causation_id == str(by_type["ticket.created"].event_id)
    assert by_type["ticket.status_changed"].causation_id == str(
        by_type["ticket.assigned"].event_id
    )
    assert by_type["ticket.assigned"].payload["level"] == "L1"
    assert by_type["ticket.status_changed"].payload["to_status"] == "assigned"

    # SIGTERM: stop consuming, finish in-flight work, close connections, then exit.
    # (uvicorn re-raises the signal once its shutdown is complete, hence -SIGTERM.)
    for name in ("routing", "intake"):
        service = system.services[name]
        assert service.stop() in (0, -signal.SIGTERM), service.log_tail()
        tail = service.log_tail(10)
        assert f'"message": "{name} stopped"' in tail
        assert "Application shutdown complete" in tail


async def test_ticket_numbers_are_unique_across_intake_replicas(system: System) -> None:
    first = await system.start("intake", replica="intake-a")
    second = await system.start("intake", replica="intake-b")  # same database
    numbers = set()
    for replica in (first, second):
        async with system.channel_client("web", base_url=replica.url) as channel:
            for n in range(10):
                response = await channel.post("/tickets", json=ticket_body(n))
                assert response.status_code == 201, response.text
                numbers.add(response.json()["number"])
    assert len(numbers) == 20


async def test_internal_api_demands_the_service_token(system: System) -> None:
    await system.start("intake")
    async with system.client("intake") as intake:
        response = await intake.get(
            "/tickets/HD-2026-000001", headers={"Authorization": "Bearer x"}
        )
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
