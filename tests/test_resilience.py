"""Nothing accepted is lost: broker outages, redeliveries, crashed consumers, poison messages."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import pytest

from sportello_contracts import EventEnvelope, new_event, utc_now
from sportello_contracts.events import Requester, TicketCreated
from support.dlq import dead_letters
from support.metrics import metric
from support.probe import BusProbe
from support.proxy import TcpProxy, through
from support.system import System
from support.tickets import post_tickets, ticket_body, wait_assigned
from support.wait import eventually, true_when

pytestmark = pytest.mark.e2e


async def test_ticket_posted_while_the_broker_is_down_is_assigned_once_it_is_back(
    system: System,
) -> None:
    target = urlsplit(system.amqp_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    proxy.start()
    try:
        await system.start("intake", AMQP_URL=through(proxy, system.amqp_url))
        await system.start("routing", AMQP_URL=through(proxy, system.amqp_url))
        proxy.cut()

        async with system.client("intake") as intake:

            async def broker_down() -> bool:
                ready = (await intake.get("/health/ready")).json()
                return ready["checks"]["broker"] is False

            await eventually(broker_down, what="intake sees the broker down")
            numbers = [t["number"] for t in await post_tickets(system, 5)]
            for number in numbers:  # accepted, but nobody could be told yet
                assert (await intake.get(f"/tickets/{number}")).json()["status"] == "new"

            proxy.restore()
            for number in numbers:
                ticket = await wait_assigned(intake, number, timeout=30)
                assert ticket["level"] == "L1"
    finally:
        proxy.close()


async def test_redelivered_events_change_nothing_twice(system: System, probe: BusProbe) -> None:
    await system.start("intake")
    await system.start("routing")
    async with system.channel_client("web") as channel:
        number = (await channel.post("/tickets", json=ticket_body())).json()["number"]
    async with system.client("intake") as intake, system.client("routing") as routing:
        ticket = await wait_assigned(intake, number)
        await probe.wait_for(
            lambda evs: len(probe.of_type("ticket.status_changed", ticket["id"])) == 1
        )
        created = probe.of_type("ticket.created", ticket["id"])[0]
        assigned = probe.of_type("ticket.assigned", ticket["id"])[0]

        # The broker delivers both events again (as after a lost ack).
        await probe.publish(created)
        await probe.publish(assigned)

        async def redeliveries_consumed() -> bool:
            return (
                await metric(routing, "events_consumed_total", type="ticket.created") == 2
                and await metric(intake, "events_consumed_total", type="ticket.assigned") == 2
            )

        await eventually(redeliveries_consumed, what="both redeliveries consumed")
        assert await metric(routing, "events_consumed_total", type="ticket.created",
                            outcome="duplicate") == 1
        assignment = (await routing.get(f"/assignments/{ticket['id']}")).json()
        assert [h["kind"] for h in assignment["history"]] == ["triaged", "assigned"]

        async def outbox_emptied() -> bool:  # the clear of what was sent lingers a moment
            response = await routing.get(f"/assignments/{ticket['id']}")
            pending: int = response.json()["pending_events"]
            return pending == 0

        await eventually(outbox_emptied, what="the assignment's outbox emptied")
        assert (await intake.get(f"/tickets/{number}")).json()["version"] == 2
    assert len(probe.of_type("ticket.assigned", ticket["id"])) == 2  # the original + our copy
    assert len(probe.of_type("ticket.status_changed", ticket["id"])) == 1


async def test_a_duplicate_delivered_concurrently_still_assigns_once(
    system: System, probe: BusProbe
) -> None:
    """Both copies in flight at once: the dedupe record cannot help, the unique _id does."""
    await system.start("routing")
    event = new_event(
        TicketCreated(
            ticket_id="4b6c1f7e-dup", number="HD-2026-999999", channel="api",
            requester=Requester(name="Integration"), subject="Disk full",
            description="Server srv-01 disk at 100%", created_at=utc_now(),
        ),
        producer="test", correlation_id="4b6c1f7e-dup",
    )
    await asyncio.gather(probe.publish(event), probe.publish(event))
    async with system.client("routing") as routing:

        async def both_consumed() -> bool:
            return await metric(routing, "events_consumed_total", type="ticket.created") == 2

        await eventually(both_consumed, what="both copies consumed")

        async def published() -> bool:
            response = await routing.get("/assignments/4b6c1f7e-dup")
            return response.status_code == 200 and response.json()["pending_events"] == 0

        await eventually(published, what="assignment event confirmed")
        history = (await routing.get("/assignments/4b6c1f7e-dup")).json()["history"]
        assert [h["kind"] for h in history] == ["triaged", "assigned"]
    await probe.wait_for(lambda _: len(probe.of_type("ticket.assigned", "4b6c1f7e-dup")) >= 1)
    assert len(probe.of_type("ticket.assigned", "4b6c1f7e-dup")) == 1


async def test_routing_killed_while_tickets_flow_loses_nothing(
    system: System, probe: BusProbe
) -> None:
    await system.start("intake")
    routing = await system.start("routing")
    total, posted = 60, []

    async def post_all() -> None:
        async with system.channel_client("web") as channel:
            for n in range(total):
                response = await channel.post("/tickets", json=ticket_body(n))
                assert response.status_code == 201, response.text
                posted.append(response.json()["id"])
                await asyncio.sleep(0.02)  # pacing: a steady flow, not a single burst

    poster = asyncio.create_task(post_all())
    await eventually(lambda: true_when(len(posted) >= 15), what="15 tickets posted")
    routing.kill()
    await poster
    routing.start()
    await routing.wait_ready()

    client = system.mongo()
    try:
        tickets = client[system.database("intake")]["tickets"]
        assignments = client[system.database("routing")]["assignments"]

        async def all_assigned() -> bool:
            return await tickets.count_documents({"status": "assigned"}) == total

        await eventually(all_assigned, timeout=60, what="every ticket assigned")
        async for ticket in tickets.find({}):
            assert ticket["version"] == 2, ticket["number"]
            assert [h["kind"] for h in ticket["history"]] == ["created", "assigned"]
        assert await assignments.count_documents({}) == total
        async for assignment in assignments.find({}):
            assert [h["kind"] for h in assignment["history"]] == ["triaged", "assigned"]
    finally:
        await client.close()
    assert {e.ticket_id for e in probe.of_type("ticket.assigned")} == set(posted)


async def test_invalid_events_are_parked_with_the_reason_and_routing_keeps_going(
    system: System, probe: BusProbe
) -> None:
    await system.start("intake")
    await system.start("routing")
    await probe.publish_raw(b"{not json", "ticket.created")
    broken = EventEnvelope(
        type="ticket.created", producer="test", correlation_id="c-1", ticket_id="t-1",
        payload={"ticket_id": "t-1", "subject": "no number, no requester"},
    )
    await probe.publish(broken)

    async with system.channel_client("web") as channel:
        number = (await channel.post("/tickets", json=ticket_body())).json()["number"]
    async with system.client("intake") as intake:
        await wait_assigned(intake, number)

    parked = await dead_letters(system.amqp_url, f"{system.namespace}.routing.dlq", expected=2)
    reasons = sorted(str(m.headers["x-sportello-reason"]) for m in parked)
    assert all("validation failed" in r for r in reasons), reasons
    assert any("requester" in r and "number" in r for r in reasons), reasons
    assert any("json" in r.lower() for r in reasons), reasons
    bodies = {m.body for m in parked}
    assert b"{not json" in bodies  # parked as received, for a human to inspect or replay
    assert json.loads(broken.to_json())["event_id"] in {
        json.loads(b).get("event_id") for b in bodies if b.startswith(b'{"')
    }


async def test_an_idle_keep_alive_connection_is_still_served(system: System) -> None:
    """Clients and proxies reuse idle connections for up to a minute; the service must not
    close one under them (uvicorn's own default closes after 5 s, which made such a reuse
    fail with a read error)."""
    await system.start("intake")
    address = urlsplit(system.services["intake"].url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    request = f"GET /health/live HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode()

    async def served() -> None:
        writer.write(request)
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        assert status_line.startswith(b"HTTP/1.1 200"), status_line
        headers = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in headers.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)

    try:
        await served()
        await asyncio.sleep(6)  # idle on purpose, past uvicorn's 5 s default
        assert not reader.at_eof(), "the service closed an idle keep-alive connection"
        await served()
    finally:
        writer.close()
