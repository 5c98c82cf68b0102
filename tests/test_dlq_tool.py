"""The dead-letter tool as the SRE on call uses it, on real processes and real RabbitMQ:
an event that cannot be handled is parked, listed, shown with its reason, replayed once
the cause is fixed, and handled exactly once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from sportello_runtime import dlq
from support.probe import BusProbe
from support.system import System
from support.tickets import ticket_body
from support.wait import eventually

pytestmark = pytest.mark.e2e


async def test_a_parked_event_is_listed_shown_and_replayed_once_after_the_fix(
    system: System, probe: BusProbe,
) -> None:
    await system.start("routing")
    await system.start("intake")
    # The cause: the desk's only first-line group is gone, so no new ticket can be routed.
    async with system.client("routing") as routing:
        assert (await routing.delete("/groups/service-desk")).status_code == 204
    async with system.channel_client() as channel:
        ticket = (await channel.post("/tickets", json=ticket_body(1))).json()

    async def parked() -> bool:
        found = await dlq.counts(system.amqp_url, system.namespace, ["routing"])
        return found["routing"] == 1

    await eventually(parked, what="ticket.created parked in routing's DLQ")

    def tool(*args: str, answer: str = "", check: bool = True) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "sportello_runtime.dlq", *args], input=answer,
            env={**os.environ, "AMQP_URL": system.amqp_url, "BUS_NAMESPACE": system.namespace},
            capture_output=True, text=True, timeout=60, check=check)
        return done.stdout

    listed = await asyncio.to_thread(tool, "list")
    assert "routing    1" in listed
    assert "intake     0" in listed
    shown = await dlq.show(system.amqp_url, system.namespace, "routing")
    [entry] = shown
    assert entry.event_type == "ticket.created"
    assert entry.ticket_id == ticket["id"]
    assert "no L1 group configured" in entry.reason
    assert entry.attempts == 3
    printed = await asyncio.to_thread(tool, "show", "routing")
    assert entry.event_id in printed
    assert "no L1 group configured" in printed
    assert (await dlq.counts(system.amqp_url, system.namespace, ["routing"]))["routing"] == 1
    assert probe.of_type("ticket.assigned", ticket["id"]) == []

    # The fix, then the replay of that one event.
    async with system.client("routing") as routing:
        restored = await routing.put("/groups/service-desk", json={
            "name": "L1 Service Desk", "level": "L1", "default_for_level": True})
        assert restored.status_code in (200, 201), restored.text
    replayed = await asyncio.to_thread(tool, "replay", "routing", "--event-id",
                                       entry.event_id)
    assert "replayed 1" in replayed
    await probe.wait_for(lambda _: bool(probe.of_type("ticket.assigned", ticket["id"])),
                         what="the replayed ticket routed")
    assert (await dlq.counts(system.amqp_url, system.namespace, ["routing"]))["routing"] == 0
    # Handled once: a second replay finds nothing, and the ticket was triaged once.
    assert await dlq.replay(system.amqp_url, system.namespace, "routing",
                            lambda _: True) == []
    assert len(probe.of_type("ticket.triaged", ticket["id"])) == 1
    async with system.client("routing") as routing:
        assignment = (await routing.get(f"/assignments/{ticket['id']}")).json()
    assert assignment["group_id"] == "service-desk"

    # Poison that no fix will mend: purged, but only once the operator confirms.
    await probe.publish_raw(b"{not json", "ticket.created")
    await eventually(parked, what="the poison parked")
    refused = await asyncio.to_thread(tool, "purge", "routing", answer="n\n", check=False)
    assert "nothing dropped" in refused
    assert (await dlq.counts(system.amqp_url, system.namespace, ["routing"]))["routing"] == 1
    assert "dropped 1" in await asyncio.to_thread(tool, "purge", "routing", "--yes")
    assert (await dlq.counts(system.amqp_url, system.namespace, ["routing"]))["routing"] == 0
