"""The acknowledgement and the assignment notice are driven by events, in that order: with
SLA's announced time limit when SLA runs, with the configured default when it does not
answer in time, and never twice."""

from __future__ import annotations

from datetime import datetime

import pytest

from support.mailsink import MailSink, mail_to, text_of
from support.probe import BusProbe
from support.system import System
from support.tickets import fetch_ticket, ticket_body
from support.wait import eventually

pytestmark = pytest.mark.e2e

ADDRESS = "giulia.rossi1@example.com"


async def test_with_sla_down_the_acknowledgement_goes_out_with_the_default_then_the_assignment(
    system: System, probe: BusProbe
) -> None:
    with MailSink() as relay:
        sla = await system.start("sla")  # declares its queue, which keeps what comes
        sla.stop()
        await system.start("routing")
        # SLA is down: its time limit does not come in time.
        await system.start("intake", SMTP_RELAY_URL=relay.url, SLA_URL=sla.url,
                           SLA_WAIT_S="1", ACK_SWEEP_INTERVAL_S="0.2",
                           DEFAULT_TIME_LIMIT_S=str(8 * 3600))
        async with system.channel_client("web") as web:
            created = await web.post("/tickets", json=ticket_body(1))
        assert created.status_code == 201, created.text
        number = created.json()["number"]

        ack = await relay.wait_for(mail_to(ADDRESS, "Abbiamo ricevuto"), what="acknowledgement")
        await relay.wait_for(mail_to(ADDRESS, "presa in carico"), what="assignment notice")
        mine = [m for m in relay.messages if ADDRESS in str(m["To"])]
        assert [("ricevuto" in str(m["Subject"])) for m in mine] == [True, False]
        assert "Tempo limite:" in text_of(ack)
        ticket = await fetch_ticket(system, number)
        assert ticket["status"] == "assigned"
        assert ticket["time_limit"] is None  # nobody announced one

        # SLA comes back: the ticket learns the time limit; the requester is not told twice.
        sla.start()
        await sla.wait_ready()
        ticket = await eventually(lambda: _with_time_limit(system, number), timeout=20,
                                  what="SLA's time limit on the ticket")
        assert datetime.fromisoformat(ticket["time_limit"]) > datetime.fromisoformat(
            ticket["created_at"])
        await probe.wait_for(lambda evs: any(e.type == "sla.time_limit_set"
                                             and e.ticket_id == ticket["id"] for e in evs),
                             what="sla.time_limit_set")
        assert len([m for m in relay.messages if ADDRESS in str(m["To"])]) == 2


async def _with_time_limit(system: System, number: str) -> dict[str, object] | None:
    ticket = await fetch_ticket(system, number)
    return ticket if ticket.get("time_limit") else None


async def test_with_sla_up_the_acknowledgement_tells_the_announced_time_limit_first(
    system: System, probe: BusProbe
) -> None:
    """SLA_WAIT_S is long here: the acknowledgement must not wait for it, only for SLA."""
    with MailSink() as relay:
        sla = await system.start("sla")
        await system.start("routing")
        await system.start("intake", SMTP_RELAY_URL=relay.url, SLA_URL=sla.url,
                           SLA_WAIT_S="600", ACK_SWEEP_INTERVAL_S="0.2")
        async with system.channel_client("web") as web:
            for n in range(1, 4):
                assert (await web.post("/tickets", json=ticket_body(n))).status_code == 201

        for n in range(1, 4):
            address = f"giulia.rossi{n}@example.com"
            await relay.wait_for(mail_to(address, "presa in carico"), timeout=30,
                                 what=f"assignment notice {n}")
            mine = [m for m in relay.messages if address in str(m["To"])]
            assert ["ricevuto" in str(m["Subject"]) for m in mine] == [True, False], n
        events = probe.events
        limits = [e for e in events if e.type == "sla.time_limit_set"]
        assert len({e.ticket_id for e in limits}) == 3


async def test_a_person_filing_many_tickets_on_the_form_is_acknowledged_every_time(
    system: System,
) -> None:
    """The hourly cap on acknowledgements guards against mail loops, and only mail can
    loop: three tickets from the form past a cap of two are all acknowledged."""
    with MailSink() as relay:
        await system.start("routing")
        await system.start("intake", SMTP_RELAY_URL=relay.url, ACK_LIMIT_PER_HOUR="2")
        async with system.channel_client("web") as web:
            for n in range(3):
                body = ticket_body(1, subject=f"La stampante {n} non stampa")
                assert (await web.post("/tickets", json=body)).status_code == 201
        for n in range(3):
            await relay.wait_for(mail_to(ADDRESS, f"ricevuto la tua richiesta: La stampante {n}"),
                                 what=f"acknowledgement {n}")
