"""An agent's day through the gateway, on real processes (gateway, intake, routing, SLA,
RabbitMQ, a real SMTP relay): a new e-mail ticket arrives live in the L1 queue, is taken,
answered (the requester gets the mail), escalated to L2; a stale version is refused; the
workspace survives SLA being down; every step is in the audit log; nobody of another group
ever hears of the ticket."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support.gateway import add_user, admin_token, live, login, send_mail, support_mail, workspace
from support.mailsink import MailSink, mail_to, text_of
from support.system import System
from support.wait import eventually

pytestmark = pytest.mark.e2e


async def act(desk: httpx.AsyncClient, number: str, command: str,
              body: dict[str, Any] | None = None) -> httpx.Response:
    """As the console does: read the workspace, send the command with its ETag."""
    _, etag = await workspace(desk, number)
    return await desk.post(f"/api/tickets/{number}/{command}", json=body,
                           headers={"If-Match": etag})


async def in_queue(desk: httpx.AsyncClient, number: str, **params: str) -> bool:
    response = await desk.get("/api/tickets", params=params)
    assert response.status_code == 200, response.text
    return number in {item["number"] for item in response.json()["items"]}


async def test_an_email_ticket_is_worked_from_the_l1_queue_to_l2_through_the_gateway(
    system: System,
) -> None:
    with MailSink() as relay:
        sla = await system.start("sla")
        await system.start("routing")
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url, SLA_URL=sla.url)
        await system.start("gateway")
        async with system.gateway(await admin_token(system)) as admin:
            # Anna has no free slot, so the ticket waits in the L1 queue for her to take it.
            await add_user(admin, "anna", "agent", level="L1", groups=("service-desk",),
                           capacity=0)
            await add_user(admin, "bruno", "agent", level="L2", groups=("l2-network",))
            await add_user(admin, "olga", "agent", level="L2", groups=("l2-software",))
        anna, bruno, olga = [await login(system, name) for name in ("anna", "bruno", "olga")]

        async with (live(system, anna) as anna_live, live(system, bruno) as bruno_live,
                    live(system, olga) as olga_live,
                    system.gateway(anna) as anna_desk, system.gateway(bruno) as bruno_desk,
                    system.gateway(olga) as olga_desk):
            number = await send_mail(intake.smtp_port, support_mail(
                "Mario Rossi <mario.rossi@example.it>", "La VPN non si connette",
                "Da stamattina il client VPN dà errore 809."))

            # It reaches Anna's open console live, and her unassigned queue.
            await eventually(lambda: _async(number in anna_live.numbers("ticket.assigned")),
                             what="the new ticket on Anna's live stream")
            await eventually(lambda: in_queue(anna_desk, number, view="unassigned"),
                             what="the ticket in Anna's unassigned queue")
            opened, first_etag = await workspace(anna_desk, number)
            assert opened["ticket"]["channel"] == "email"
            assert opened["assignment"]["state"] == "queued"
            assert "first_response" in {c["metric"] for c in opened["sla"]["clocks"]}
            assert opened["unavailable"] == []

            taken = await anna_desk.post(f"/api/tickets/{number}/take",
                                         headers={"If-Match": first_etag})
            assert taken.status_code == 200, taken.text
            assert taken.json()["assignment"]["agent_id"] == "anna"

            # A command based on what she saw before taking it is refused, never applied.
            stale = await anna_desk.post(f"/api/tickets/{number}/notes",
                                         json={"body": "based on an old read"},
                                         headers={"If-Match": first_etag})
            assert stale.status_code == 412, stale.text
            assert stale.json()["etag"] != first_etag
            assert stale.headers["ETag"] == stale.json()["etag"]
            without = await anna_desk.post(f"/api/tickets/{number}/notes",
                                           json={"body": "no version"})
            assert without.status_code == 428

            async def reflects_take() -> bool:
                ws, _ = await workspace(anna_desk, number)
                return bool(ws["ticket"]["agent_id"] == "anna")

            await eventually(reflects_take, what="intake's record showing Anna")
            replied = await act(anna_desk, number, "replies",
                                {"body": "Buongiorno Mario, può riavviare il client VPN?"})
            assert replied.status_code == 200, replied.text
            answer = await relay.wait_for(lambda m: "riavviare il client VPN" in text_of(m),
                                          what="the reply mailed to Mario")
            assert mail_to("mario.rossi@example.it", number)(answer)

            escalated = await act(anna_desk, number, "escalate",
                                  {"reason": "errore 809: serve la rete"})
            assert escalated.status_code == 200, escalated.text
            assert escalated.json()["assignment"]["group_id"] == "l2-network"

            # Bruno, at L2 network, sees it arrive on his console and in his queue.
            await eventually(lambda: _async(number in bruno_live.numbers("ticket.assigned")),
                             what="the ticket on Bruno's live stream")
            await eventually(lambda: in_queue(bruno_desk, number, view="mine"),
                             what="the ticket in Bruno's own queue")
            # Anna's group no longer holds it: she no longer sees it.
            gone = await anna_desk.get(f"/api/tickets/{number}")
            assert gone.status_code == 404

            # With SLA down, the workspace still answers, with the clocks marked unavailable.
            system.services["sla"].stop()
            without_sla = await bruno_desk.get(f"/api/tickets/{number}")
            assert without_sla.status_code == 200, without_sla.text
            assert without_sla.json()["unavailable"] == ["sla"]
            assert without_sla.json()["sla"]["unavailable"] is True
            assert without_sla.json()["ticket"]["number"] == number

            # Olga (L2 software) never heard of it, on the stream or anywhere else.
            assert number not in olga_live.numbers()
            assert (await olga_desk.get(f"/api/tickets/{number}")).status_code == 404
            assert not await in_queue(olga_desk, number, view="all")

        async with system.gateway(await admin_token(system)) as admin:
            log = (await admin.get("/api/admin/audit", params={"ticket": number})).json()
            steps = [(e["actor"], e["action"], e["outcome"]) for e in log["items"]]
            signed_in = (await admin.get("/api/admin/audit",
                                         params={"action": "auth.login"})).json()
    assert ("anna", "ticket.take", "ok") in steps
    assert ("anna", "ticket.note", "stale") in steps
    assert ("anna", "ticket.reply", "ok") in steps
    assert ("anna", "ticket.escalate", "ok") in steps
    escalation = next(e for e in log["items"] if e["action"] == "ticket.escalate")
    assert escalation["before"]["group_id"] == "service-desk"
    assert escalation["after"]["group_id"] == "l2-network"
    assert escalation["ip"] == "127.0.0.1"
    assert {e["actor"] for e in signed_in["items"]} >= {"anna", "bruno", "olga", "admin"}


async def _async(value: bool) -> bool:
    return value


async def test_every_replica_streams_every_event_to_its_own_consoles(system: System) -> None:
    """Two gateway replicas share the work queue (queue lines, webhooks) but each binds its
    own live queue: a console on either one hears of a ticket of its group."""
    await system.start("routing")
    intake = await system.start("intake")
    await system.start("gateway")
    await system.start("gateway", replica="gateway-b")
    async with system.gateway(await admin_token(system)) as admin:
        await add_user(admin, "anna", "agent", level="L1", groups=("service-desk",),
                       capacity=0)
        await add_user(admin, "ugo", "agent", level="L1", groups=("service-desk",),
                       capacity=0)
    anna, ugo = await login(system, "anna"), await login(system, "ugo")
    async with live(system, anna) as on_a, live(system, ugo, replica="gateway-b") as on_b:
        numbers = [await send_mail(intake.smtp_port, support_mail(
            f"Requester {n} <r{n}@example.it>", f"Stampante {n} guasta", "Non stampa."))
            for n in range(4)]

        async def both_heard() -> bool:
            return all(set(numbers) <= s.numbers("ticket.assigned") for s in (on_a, on_b))

        await eventually(both_heard, what="every new ticket on both replicas' consoles")
