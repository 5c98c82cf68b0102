"""Faults injected while tickets flow, through real processes and the real broker; each test
ends with the independent check over every store and the mail received
(``support.audit``), and names in its docstring the protection whose removal makes it
fail."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid

import httpx
import pytest

from support.audit import READ_MODELS, check_nothing_lost_or_doubled
from support.dlq import queue_depth
from support.mailin import SUPPORT, smtp_send
from support.mailsink import MailSink
from support.metrics import metric
from support.probe import BusProbe
from support.proxy import proxy_for, through
from support.system import CHANNEL_SECRETS, System
from support.tickets import signature, ticket_body, wait_assigned
from support.wait import eventually, true_when
from support.webhook import WebhookReceiver

pytestmark = pytest.mark.e2e


def mail(n: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"Requester {n} <requester{n}@example.com>"
    message["To"] = SUPPORT
    message["Subject"] = f"Printer {n} jammed"
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content("The printer on the second floor shows a paper jam.")
    return message.as_bytes(policy=SMTP)


async def consumed(client: httpx.AsyncClient, event_type: str, outcome: str) -> float:
    return await metric(client, "events_consumed_total", type=event_type, outcome=outcome)


async def test_a_database_cut_is_a_503_and_a_451_and_everything_completes_after(
    system: System,
) -> None:
    """Intake's connections to MongoDB are cut through a proxy while routing assigns the
    tickets it has just taken. Protections: the 503 with Retry-After for an unreachable
    database (``install_error_handlers``), the SMTP door's 451, and the bus retrying an
    outage past its attempt limit instead of parking it (``OUTAGES`` in the bus: without
    it the assignments are parked in intake's DLQ and the tickets stay new), and the
    notifier resuming a claim or a record the database did not confirm (``_uncertain``,
    ``_unrecorded``: without them a notice claimed or mailed as the cut came was never
    sent, or its follower never was, in about every other run)."""
    proxy = proxy_for(system.mongo_url)
    try:
        with MailSink() as relay:
            await system.start("routing")
            await system.start("sla")
            intake = await system.start("intake", MONGO_URL=through(proxy, system.mongo_url),
                                        MONGO_TIMEOUT_MS="500", SMTP_RELAY_URL=relay.url)
            acknowledged = []
            async with system.channel_client("web") as channel, \
                    system.client("intake") as internal:
                for n in range(4):
                    response = await channel.post("/tickets", json=ticket_body(n))
                    assert response.status_code == 201, response.text
                    acknowledged.append(response.json()["number"])
                proxy.cut()  # routing is assigning them now; intake cannot record it

                async def refused() -> httpx.Response | None:
                    response = await channel.post("/tickets", json=ticket_body(9))
                    return response if response.status_code == 503 else None

                answer = await eventually(refused, what="a 503 while the database is away")
                assert answer.headers["Retry-After"] == "2"
                assert answer.json()["error"] == "unavailable"
                code, text = await smtp_send(intake.smtp_port, mail(1))
                assert code == 451, text
                ready = await internal.get("/health/ready")
                assert ready.status_code == 503

                async def retried_past_the_limit() -> bool:
                    # Three attempts park an ordinary failure (BUS_MAX_ATTEMPTS in tests).
                    return await consumed(internal, "ticket.assigned", "retried") >= 4

                await eventually(retried_past_the_limit, timeout=30,
                                 what="the assignments retried past the attempt limit")
                proxy.restore()

                async def database_back() -> bool:
                    return (await internal.get("/health/ready")).status_code == 200

                await eventually(database_back, what="intake sees the database again")

                for number in acknowledged:
                    await wait_assigned(internal, number, timeout=30)
                code, text = await smtp_send(intake.smtp_port, mail(2))
                assert code == 250, text
                acknowledged.append(text.split()[-1])
                response = await channel.post("/tickets", json=ticket_body(10))
                assert response.status_code == 201, response.text
                acknowledged.append(response.json()["number"])
                for number in acknowledged[-2:]:
                    await wait_assigned(internal, number, timeout=30)
                assert await consumed(internal, "ticket.assigned", "dead_lettered") == 0
            assert await queue_depth(system.amqp_url, f"{system.namespace}.intake.dlq") == 0
            await relay.wait_for(lambda _: len(relay.messages) >= 2 * len(acknowledged),
                                 timeout=30, what="acknowledgement and assignment for each")
            await check_nothing_lost_or_doubled(system, acknowledged, relay)
    finally:
        proxy.close()


async def rabbitmqctl(*args: str) -> None:
    """The broker's own control tool (the tests' RabbitMQ is this machine's)."""
    tool = shutil.which("rabbitmqctl")
    assert tool is not None, "rabbitmqctl is needed: the broker's faults are made with it"
    await asyncio.to_thread(subprocess.run, [tool, "-q", *args], check=True, timeout=120,
                            capture_output=True)


async def test_the_broker_closing_connections_and_restarting_while_tickets_flow(
    system: System,
) -> None:
    """Tickets arrive by web, mail and chat, one every few tens of milliseconds, while the
    broker first closes every connection and then stops its application and starts it
    again. Protections: the outbox (a ticket is stored with its events and acknowledged
    to its channel whether or not the broker is there; the relay sends them when it is
    back), the robust connections with their consumers restored, and acks after the
    handler."""
    with MailSink() as relay:
        await system.start("routing")
        await system.start("sla")
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url)
        acknowledged: list[str] = []
        enough = asyncio.Event()

        async def flow() -> None:
            """Until told it is enough: a fixed count could end before the broker stops."""
            async with system.channel_client("web") as web, \
                    httpx.AsyncClient(base_url=intake.url, timeout=10) as chat:
                n = 0
                while not enough.is_set():
                    if n % 3 == 0:
                        response = await web.post("/tickets", json=ticket_body(n))
                        assert response.status_code == 201, response.text
                        acknowledged.append(response.json()["number"])
                    elif n % 3 == 1:
                        code, text = await smtp_send(intake.smtp_port, mail(n))
                        assert code == 250, text
                        acknowledged.append(text.split()[-1])
                    else:
                        body = json.dumps({
                            "conversation_id": f"conv-{n}", "message_id": f"m-{n}",
                            "sender": {"name": f"Chat {n}", "email": f"chat{n}@example.com"},
                            "text": "Teams non si avvia dopo l'aggiornamento."}).encode()
                        response = await chat.post(
                            "/channels/chat/messages", content=body,
                            headers={"X-Sportello-Signature": signature(
                                CHANNEL_SECRETS["chat"], body),
                                "Content-Type": "application/json"})
                        assert response.status_code == 201, response.text
                        acknowledged.append(response.json()["number"])
                    n += 1
                    await asyncio.sleep(0.05)  # pacing: a steady flow, not one burst

        async def at_least(count: int) -> bool:
            if flowing.done():
                flowing.result()  # its failure, if it failed
                raise AssertionError("the flow stopped before it was told to")
            return len(acknowledged) >= count

        flowing = asyncio.create_task(flow())
        await eventually(lambda: at_least(8), what="the first tickets taken")
        await rabbitmqctl("close_all_connections", "fault test: connections closed")
        await eventually(lambda: at_least(16), what="tickets taken after the close")
        await rabbitmqctl("stop_app")
        try:
            async with system.client("intake") as internal:

                async def broker_seen_down() -> bool:
                    ready = (await internal.get("/health/ready")).json()
                    return ready["checks"]["broker"] is False

                await eventually(broker_seen_down, what="intake sees the broker down")
            taken_before = len(acknowledged)
            await eventually(lambda: at_least(taken_before + 4),
                             what="tickets still taken with the broker stopped")
        finally:
            await rabbitmqctl("start_app")
        taken_before = len(acknowledged)
        await eventually(lambda: at_least(taken_before + 4), timeout=60,
                         what="tickets taken after the broker is back")
        enough.set()
        await flowing

        async with system.client("intake") as internal:
            for number in acknowledged:
                await wait_assigned(internal, number, timeout=60)
        await relay.wait_for(lambda _: len(relay.messages) >= 2 * len(acknowledged),
                             timeout=60, what="acknowledgement and assignment for each")
        await check_nothing_lost_or_doubled(system, acknowledged, relay)


KILLS = [["knowledge"], ["analytics"], ["gateway"], ["routing"], ["sla"], ["intake"],
         ["routing", "sla"], ["intake", "analytics"]]
"""One at a time, then two at once: every service, each killed while tickets flow."""


async def test_every_service_killed_mid_traffic_alone_and_two_at_once_loses_nothing(
    system: System,
) -> None:
    """SIGKILL, no goodbye: whatever a process held in memory is gone. Protections: the
    outbox and acks after the handler (events), the claims and their sweep for notices
    (``resume_abandoned``: an acknowledgement claimed by a killed intake is sent by the
    restarted one), the channel's Idempotency-Key (a post whose answer was lost with the
    process is posted again and is the same ticket), and each read model catching up from
    its queue."""
    with MailSink() as relay:
        for name in ("knowledge", "routing", "sla", "analytics"):
            await system.start(name)
        await system.start("intake", SMTP_RELAY_URL=relay.url, NOTICE_STALE_SENDING_S="2",
                           ACK_SWEEP_INTERVAL_S="0.5")
        await system.start("gateway")
        acknowledged: list[str] = []
        total = 8 * len(KILLS)

        async def post(n: int, web: httpx.AsyncClient) -> str:
            """As a channel does: again, with the same key, until intake answers."""

            async def taken() -> str | None:
                try:
                    response = await web.post("/tickets", json=ticket_body(n),
                                              headers={"Idempotency-Key": f"fault-{n}"})
                except httpx.TransportError:
                    return None
                if response.status_code >= 500:
                    return None
                assert response.status_code in (200, 201), response.text
                number: str = response.json()["number"]
                return number

            return await eventually(taken, timeout=60, interval=0.1, what=f"ticket {n} taken")

        async def flow() -> None:
            async with system.channel_client("web") as web:
                for n in range(total):
                    acknowledged.append(await post(n, web))
                    await asyncio.sleep(0.03)  # pacing: a steady flow, not one burst

        flowing = asyncio.create_task(flow())
        for round_, names in enumerate(KILLS, start=1):

            async def posted(count: int = round_ * 8 - 4) -> bool:
                assert not flowing.done() or flowing.exception() is None
                return len(acknowledged) >= count

            await eventually(posted, timeout=60, what=f"tickets flowing before kill {names}")
            processes = [system.services[name] for name in names]
            for process in processes:
                process.kill()
            for process in processes:
                process.start()
            for process in processes:
                await process.wait_ready(timeout=60)
        await flowing
        assert len(set(acknowledged)) == total

        async with system.client("intake") as internal:
            for number in acknowledged:
                await wait_assigned(internal, number, timeout=60)

        def notices_in() -> int:
            return len({(str(m["To"]), str(m["Subject"])) for m in relay.messages})

        await eventually(lambda: true_when(notices_in() >= 2 * total), timeout=60,
                         what="acknowledgement and assignment for each")
        await eventually(lambda: read_models_complete(system, total), timeout=60,
                         what="every ticket in analytics, the gateway and knowledge")
        await check_nothing_lost_or_doubled(system, acknowledged, relay)


async def read_models_complete(system: System, tickets: int) -> bool:
    client = system.mongo()
    try:
        for service, collection in READ_MODELS.items():
            if await client[system.database(service)][collection].count_documents({}) < tickets:
                return False
    finally:
        await client.close()
    return True


async def test_a_reopen_delivered_twice_and_an_assignment_delivered_late_change_nothing(
    system: System, probe: BusProbe
) -> None:
    """Protections: the consumers' processed-events record (SLA's reopen counts reopens;
    a second copy would start a second resolution clock, and nothing else guards it) and
    intake's sequence check on assignments (a late copy of the first assignment, after
    the ticket moved on, must not take it back)."""
    await system.start("intake")
    await system.start("routing")
    await system.start("sla")
    async with system.channel_client("web") as channel:
        number = (await channel.post("/tickets", json=ticket_body())).json()["number"]
    async with system.client("intake") as intake, system.client("sla") as sla:
        ticket = await wait_assigned(intake, number)
        await probe.wait_for(lambda _: bool(probe.of_type("ticket.assigned", ticket["id"])),
                             what="the first assignment")
        first_assignment = probe.of_type("ticket.assigned", ticket["id"])[0]
        for status, extra in (("resolved", {"resolution": "Driver reinstalled."}),
                              ("reopened", {})):
            response = await intake.post(f"/tickets/{number}/status",
                                         json={"status": status, **extra})
            assert response.status_code == 200, response.text
        await probe.wait_for(lambda _: len(probe.of_type("ticket.assigned", ticket["id"])) >= 2,
                             what="the reopened ticket assigned again")
        reopened = probe.of_type("ticket.reopened", ticket["id"])[0]

        async def resolution_clocks() -> list[str] | None:
            clocks = (await sla.get(f"/tickets/{ticket['id']}/sla")).json()["clocks"]
            ids = sorted(c["clock_id"] for c in clocks if c["metric"] == "resolution")
            return ids if len(ids) == 2 else None

        before = await eventually(resolution_clocks, what="the reopen's resolution clock")
        await probe.publish(reopened)  # as after a lost ack
        await probe.publish(first_assignment)  # late: the ticket has moved on

        async def copies_consumed() -> bool:
            return (await consumed(sla, "ticket.reopened", "duplicate") == 1
                    and await consumed(intake, "ticket.assigned", "duplicate") >= 1)

        await eventually(copies_consumed, what="both copies consumed")
        assert await resolution_clocks() == before
        current = (await intake.get(f"/tickets/{number}")).json()
        assert current["status"] == "assigned"  # routing's latest: the check compares
    await check_nothing_lost_or_doubled(system, [number])


async def test_the_mail_relay_down_then_slow_delays_the_notices_and_loses_none(
    system: System,
) -> None:
    """The relay is unreachable while tickets come in, then answers slowly. Protection:
    an unreachable relay (or one answering 4xx) defers a notice for as long as it is away
    (``DeliveryDeferred``, an outage to the bus); before, the notice's event was parked
    after its attempts and the requester never heard from us unless someone replayed it."""
    relay = MailSink()  # not listening yet: the relay is down
    await system.start("routing")
    intake = await system.start("intake", SMTP_RELAY_URL=relay.url)
    acknowledged = []
    async with system.channel_client("web") as channel, system.client("intake") as internal:
        for n in range(3):
            response = await channel.post("/tickets", json=ticket_body(n))
            assert response.status_code == 201, response.text
            acknowledged.append(response.json()["number"])

        async def tried_past_the_limit() -> bool:
            failed = await metric(internal, "notifications_failed_total")
            return failed >= 3 * 4  # each past the 3 attempts that park

        await eventually(tried_past_the_limit, timeout=30, what="notices failing on and on")
        relay.delay_s = 0.5
        with relay:
            for number in acknowledged:
                await wait_assigned(internal, number)
            await relay.wait_for(lambda _: len(relay.messages) >= 2 * len(acknowledged),
                                 timeout=60, what="acknowledgement and assignment for each")
        assert await consumed(internal, "ticket.created", "dead_lettered") == 0
    assert intake.process is not None
    assert await queue_depth(system.amqp_url, f"{system.namespace}.intake.dlq") == 0
    await check_nothing_lost_or_doubled(system, acknowledged, relay)


async def test_a_chat_platform_that_hangs_delays_the_replies_and_loses_none(
    system: System,
) -> None:
    """The platform holds the first replies past intake's patience, then answers.
    Protection: a reply that timed out is deferred and tried again, without limit
    (``DeliveryDeferred``), not parked after the bus's attempts."""
    with WebhookReceiver() as platform:
        platform.stalls, platform.stall_s = 5, 1.0
        await system.start("routing")
        intake = await system.start("intake", CHAT_CALLBACK_URL=platform.url,
                                    CHAT_CALLBACK_TIMEOUT_S="0.2")
        body = json.dumps({"conversation_id": "conv-hang", "message_id": "m-1",
                           "sender": {"name": "Chat Hang"},
                           "text": "Il portale HR non carica."}).encode()
        async with httpx.AsyncClient(base_url=intake.url, timeout=10) as chat:
            response = await chat.post("/channels/chat/messages", content=body, headers={
                "X-Sportello-Signature": signature(CHANNEL_SECRETS["chat"], body),
                "Content-Type": "application/json"})
        assert response.status_code == 201, response.text
        number = response.json()["number"]
        replies = await platform.wait_for(2, timeout=60)
        assert [r["kind"] for r in replies[:2]] == ["acknowledged", "assigned"]
        assert all(r["ticket_number"] == number for r in replies)
        assert platform.stalls == 0  # every stall was waited out and tried again
        async with system.client("intake") as internal:
            assert await consumed(internal, "ticket.created", "dead_lettered") == 0
            assert await consumed(internal, "ticket.created", "retried") >= 5
    assert await queue_depth(system.amqp_url, f"{system.namespace}.intake.dlq") == 0
    await check_nothing_lost_or_doubled(system, [number])
