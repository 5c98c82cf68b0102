"""E-mail in and out through real protocols: SMTP to intake's listener, raw RFC 822 to its
webhook, notifications to a real SMTP server; threading, trimming, attachments, loop
protection and bad mail."""

from __future__ import annotations

import asyncio
import smtplib
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

from support.mailsink import MailSink, mail_to, text_of
from support.probe import BusProbe
from support.proxy import TcpProxy, through
from support.system import CHANNEL_KEYS, CHANNEL_SECRETS, System
from support.tickets import count_tickets, fetch_ticket, signature, wait_assigned
from support.wait import eventually

pytestmark = pytest.mark.e2e

SUPPORT = "help@sportello.localhost"


def mail(sender: str, subject: str, text: str, *, html: str | None = None,
         headers: dict[str, str] | None = None,
         attachments: list[tuple[str, str, bytes]] = ()) -> EmailMessage:  # type: ignore[assignment]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.it")
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, content_type, content in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message


async def smtp_send(port: int, message: EmailMessage, envelope_from: str | None = None) -> Any:
    """Send through real SMTP; returns the listener's answer to DATA."""

    def send() -> Any:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo()
            sender = envelope_from if envelope_from is not None else str(message["From"])
            smtp.mail(sender)
            code, reply = smtp.rcpt(SUPPORT)
            assert code == 250, reply
            return smtp.data(message.as_bytes(policy=SMTP))

    return await asyncio.to_thread(send)


async def test_mail_opens_a_ticket_is_acknowledged_with_the_sla_time_limit_and_replies_thread(
    system: System, probe: BusProbe
) -> None:
    with MailSink() as relay:
        sla = await system.start("sla")
        await system.start("routing")
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url, SLA_URL=sla.url)

        first = mail(
            "Mario Rossi <mario.rossi@example.it>", "La stampante del terzo piano non stampa",
            "Buongiorno, la stampante HP del terzo piano non stampa più: perché?\nGrazie, Mario",
            html="<p>Buongiorno, la stampante HP del terzo piano <b>non stampa più</b>: "
                 "perché?</p><p>Grazie, Mario</p>",
            attachments=[("errore-stampa.png", "image/png", b"\x89PNG fake image bytes")],
        )
        code, reply = await smtp_send(intake.smtp_port, first)
        assert code == 250, reply
        assert b"created HD-" in reply
        number = reply.decode().split()[-1]

        # The acknowledgement: on the requester's channel, in Italian, with the number,
        # what happens next, the time limit from SLA's running clock and the status link.
        ack = await relay.wait_for(lambda m: "Abbiamo ricevuto" in str(m["Subject"]),
                                   what="acknowledgement")
        await relay.wait_for(lambda m: "presa in carico" in str(m["Subject"]),
                             what="assignment notice")
        assert relay.messages[0] is ack  # told in order, although routing was faster
        assert ack["Date"] is not None
        body = text_of(ack)
        assert str(ack["To"]) == "Mario Rossi <mario.rossi@example.it>"
        assert number in str(ack["Subject"])
        assert number in body
        assert "Tempo limite:" in body
        assert f"/public/tickets/{number}?token=" in body
        assert ack["Auto-Submitted"] == "auto-replied"  # nobody's autoresponder answers it
        assert ack["In-Reply-To"] == str(first["Message-ID"])
        async with system.client("sla") as sla_client:
            clocks = (await sla_client.get(f"/tickets/{(await fetch_ticket(system, number))['id']}"
                                           "/sla")).json()["clocks"]
        due = next(c["due_at"] for c in clocks if c["metric"] == "resolution")
        assert _shown_time(due) in body, (due, body)

        ticket = await fetch_ticket(system, number)
        assert ticket["channel"] == "email"
        assert ticket["requester"]["email"] == "mario.rossi@example.it"
        assert ticket["requester"]["language"] == "it"
        assert ticket["subject"] == "La stampante del terzo piano non stampa"
        opening = ticket["messages"][0]
        assert "non stampa più: perché?" in opening["body"]  # plain part, accents intact
        assert opening["attachments"][0]["filename"] == "errore-stampa.png"
        async with system.client("intake") as client:
            stored = await client.get(
                f"/tickets/{number}/attachments/{opening['attachments'][0]['id']}")
        assert stored.content == b"\x89PNG fake image bytes"
        assert stored.headers["content-type"] == "image/png"

        # A reply to the acknowledgement, subject tag removed by the client: threaded by
        # In-Reply-To, its quoted history trimmed.
        reply_mail = mail(
            "Mario Rossi <mario.rossi@example.it>", "Re: stampante",
            "Ho provato a riavviarla, niente.\n\nIl giorno lun 23 nov 2026 alle ore 10:00 "
            f"Sportello <{SUPPORT}> ha scritto:\n> Gentile Mario,\n> abbiamo ricevuto la tua "
            "richiesta\n",
            # Only our acknowledgement's Message-ID: threaded by the notice's own record.
            headers={"In-Reply-To": str(ack["Message-ID"]),
                     "References": str(ack["Message-ID"])},
        )
        code, reply = await smtp_send(intake.smtp_port, reply_mail)
        assert code == 250
        assert f"joined {number}".encode() in reply, reply

        # A reply carrying only the [number] tag in its subject joins too (HTML-only body).
        tagged = EmailMessage()
        tagged["From"] = "mario.rossi@example.it"
        tagged["To"] = SUPPORT
        tagged["Subject"] = f"R: [{number}] ancora"
        tagged["Message-ID"] = make_msgid(domain="example.it")
        tagged.set_content("<div>Adesso stampa solo pagine bianche.</div>"
                           "<blockquote>citazione vecchia</blockquote>", subtype="html")
        code, reply = await smtp_send(intake.smtp_port, tagged)
        assert code == 250
        assert f"joined {number}".encode() in reply, reply

        ticket = await fetch_ticket(system, number)
        bodies = [m["body"] for m in ticket["messages"]]
        assert bodies[1] == "Ho provato a riavviarla, niente."
        assert bodies[2] == "Adesso stampa solo pagine bianche."
        assert all(m["channel"] == "email" and m["author"] == "requester"
                   for m in ticket["messages"])
        assert await count_tickets(system) == 1

        # The same message delivered twice (an MTA retry) is stored once.
        code, reply = await smtp_send(intake.smtp_port, reply_mail)
        assert code == 250
        assert b"duplicate" in reply
        assert len((await fetch_ticket(system, number))["messages"]) == 3

        added = await probe.wait_for(
            lambda evs: len([e for e in evs if e.type == "ticket.message_added"]) >= 2,
            what="message events")
        kinds = [e.payload["body"] for e in added if e.type == "ticket.message_added"]
        assert "Ho provato a riavviarla, niente." in kinds


def _shown_time(due_iso: str) -> str:
    local = datetime.fromisoformat(due_iso).astimezone(ZoneInfo("Europe/Rome"))
    return local.strftime("%d/%m/%Y %H:%M")


async def test_machine_written_mail_never_opens_tickets_nor_gets_answers(system: System) -> None:
    with MailSink() as relay:
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url)
        automatic = [
            mail("Mario <mario@example.it>", "Fuori ufficio", "Sono in ferie fino al 30.",
                 headers={"Auto-Submitted": "auto-replied"}),
            mail("news@example.it", "Newsletter", "Offerte", headers={"Precedence": "bulk"}),
            mail("MAILER-DAEMON@mx.example.it", "Undelivered Mail Returned to Sender",
                 "Delivery failed"),
            mail(f"Sportello <{SUPPORT}>", "[HD-2026-000001] loop", "our own mail came back"),
        ]
        for message in automatic:
            code, reply = await smtp_send(intake.smtp_port, message)
            assert code == 250, reply  # accepted: refusing would bounce, and bounces loop
            assert b"automatic" in reply
        # A bounce with the null envelope sender, whatever its headers say.
        code, reply = await smtp_send(
            intake.smtp_port, mail("someone@example.it", "Delivery Status", "failed"),
            envelope_from="")
        assert code == 250
        assert b"automatic" in reply

        # The webhook door says the same, with a 202.
        async with system.channel_client("email") as channel:
            response = await channel.post(
                "/channels/email/messages",
                content=mail("x@example.it", "Auto", "ooo",
                             headers={"Auto-Submitted": "auto-generated"}).as_bytes(),
                headers={"Content-Type": "message/rfc822"})
        assert response.status_code == 202
        assert response.json()["action"] == "ignored"

        # A person's mail after them is taken: the door works, the machines were just ignored.
        code, reply = await smtp_send(intake.smtp_port,
                                      mail("anna@example.com", "Password expired",
                                           "I cannot log in, my password expired."))
        assert code == 250
        assert b"created" in reply
        await relay.wait_for(lambda m: "anna@example.com" in str(m["To"]), what="ack to Anna")
        assert await count_tickets(system) == 1
        assert all("anna@example.com" in str(m["To"]) for m in relay.messages)
        async with system.client("intake") as client:
            metrics = (await client.get("/metrics")).text
        assert 'mail_ignored_total{reason="automatic"} 6.0' in metrics


async def test_raw_mail_webhook_authenticates_and_refuses_bad_mail_clearly(system: System) -> None:
    intake = await system.start("intake", MAX_ATTACHMENT_BYTES="2048", MAIL_MAX_BYTES="65536")
    good = mail("Luca Bianchi <luca@example.com>", "Monitor flickers",
                "My second monitor flickers since the update.").as_bytes()
    async with system.channel_client("email") as channel:
        # Signed by the mail gateway instead of an API key.
        import httpx

        async with httpx.AsyncClient(base_url=intake.url) as anonymous:
            response = await anonymous.post(
                "/channels/email/messages", content=good,
                headers={"Content-Type": "message/rfc822",
                         "X-Sportello-Signature": signature(CHANNEL_SECRETS["email"], good)})
            assert response.status_code == 201, response.text
            number = response.json()["number"]
            assert response.json()["action"] == "created"

            forged = await anonymous.post(
                "/channels/email/messages", content=good,
                headers={"X-Sportello-Signature": signature("not-the-secret", good)})
            assert forged.status_code == 401
            assert "signature" in forged.json()["message"]
            replayed = await anonymous.post(
                "/channels/email/messages", content=good,
                headers={"X-Sportello-Signature": signature(CHANNEL_SECRETS["email"], good,
                                                          int(time.time()) - 3600)})
            assert replayed.status_code == 401
            nobody = await anonymous.post("/channels/email/messages", content=good)
            assert nobody.status_code == 401
            wrong_channel = await anonymous.post(
                "/channels/email/messages", content=good,
                headers={"X-Api-Key": CHANNEL_KEYS["chat"]})
            assert wrong_channel.status_code == 403

        # The same message again: the same ticket.
        again = await channel.post("/channels/email/messages", content=good)
        assert again.status_code == 200
        assert again.json()["number"] == number
        assert again.json()["action"] == "duplicate"

        bad: list[tuple[bytes, int, str]] = [
            # Nothing readable (a multipart without a boundary). Readable text beside a MIME
            # defect is kept with a note instead (issue 23: tests/test_mail_doors_corpus.py).
            (b"From: a@example.com\r\nSubject: x\r\nContent-Type: multipart/mixed\r\n\r\n"
             b"no boundary at all\r\n", 422, "mime"),
            (b"From: a@example.com\r\nSubject: x\r\nContent-Type: text/plain; "
             b"charset=x-klingon\r\n\r\nnuqneH", 422, "charset"),
            (b"Subject: nobody sent this\r\n\r\nhello", 422, "from"),
            (b"", 422, "message"),
            (mail("a@example.com", "big file", "see attached",
                  attachments=[("dump.bin", "application/octet-stream", b"x" * 4096)]).as_bytes(),
             422, "attachments"),
            (mail("a@example.com", "huge", "y" * 70_000).as_bytes(), 413, ""),
        ]
        for raw, status, field in bad:
            response = await channel.post("/channels/email/messages", content=raw)
            assert response.status_code == status, (field, response.text)
            if field:
                assert response.json()["field"] == field, response.text
    assert await count_tickets(system) == 1  # nothing stored half-way

    # The SMTP door refuses the same bad mail with a clear 5xx reason.
    code, reply = await smtp_send_raw(intake.smtp_port, bad[1][0])
    assert code == 554
    assert b"unknown charset 'x-klingon'" in reply
    code, reply = await smtp_send_raw(
        intake.smtp_port, mail("a@example.com", "huge", "z " * 40_000).as_bytes(policy=SMTP))
    assert code == 552  # over the listener's size limit
    assert await count_tickets(system) == 1


async def smtp_send_raw(port: int, raw: bytes) -> Any:
    def send() -> Any:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail("a@example.com")
            smtp.rcpt(SUPPORT)
            return smtp.data(raw)

    try:
        return await asyncio.to_thread(send)
    except smtplib.SMTPDataError as exc:
        return exc.smtp_code, exc.smtp_error


async def test_listener_is_not_an_open_relay(system: System) -> None:
    intake = await system.start("intake")

    def relay_attempt() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", intake.smtp_port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail("spammer@example.net")
            return smtp.rcpt("victim@example.org")

    code, _ = await asyncio.to_thread(relay_attempt)
    assert code == 550


async def test_notices_that_fail_are_retried_and_counted(system: System) -> None:
    with MailSink() as relay:
        relay.refuse = True
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url)
        code, _ = await smtp_send(intake.smtp_port,
                                  mail("eva@example.com", "VPN", "VPN down for me."))
        assert code == 250

        async with system.client("intake") as client:
            async def failed_once() -> bool:
                text = (await client.get("/metrics")).text
                return 'notifications_failed_total{channel="email",kind="acknowledged"}' in text

            await eventually(failed_once, what="a failed notice counted")
            relay.refuse = False
            ack = await relay.wait_for(lambda m: "eva@example.com" in str(m["To"]),
                                       what="the notice after the relay came back")
            assert "We received your request" in str(ack["Subject"])

            # The relay holds the mail before intake counts it as sent: poll, do not read once.
            async def sent_counted() -> str | None:
                text = (await client.get("/metrics")).text
                sent = 'notifications_sent_total{channel="email",kind="acknowledged"} 1.0'
                return text if sent in text else None

            metrics = await eventually(sent_counted, what="the sent notice counted")
        assert 'tickets_created_total{channel="email"} 1.0' in metrics
        assert 'messages_total{author="requester",channel="email"} 1.0' in metrics


async def test_mail_accepted_while_the_broker_is_down_survives_a_crash_and_is_answered_once(
    system: System,
) -> None:
    """250 means stored: a SIGKILL and a broker outage later, every ticket is routed and
    every requester acknowledged exactly once."""
    target = urlsplit(system.amqp_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    proxy.start()
    try:
        with MailSink() as relay:
            await system.start("routing", AMQP_URL=through(proxy, system.amqp_url))
            intake = await system.start("intake", SMTP_RELAY_URL=relay.url,
                                        AMQP_URL=through(proxy, system.amqp_url))
            proxy.cut()
            async with system.client("intake") as client:
                async def broker_down() -> bool:
                    return (await client.get("/health/ready")).json()["checks"]["broker"] is False

                await eventually(broker_down, what="intake sees the broker down")
            senders = [f"user{n}@example.com" for n in range(4)]
            numbers = []
            for sender in senders:
                code, reply = await smtp_send(intake.smtp_port,
                                              mail(sender, "Disk full", "C: is full again."))
                assert code == 250
                numbers.append(reply.decode().split()[-1])

            intake.kill()  # in memory: nothing; on disk: the tickets and their outbox
            intake.start()
            await intake.wait_ready(broker=False)
            proxy.restore()
            async with system.client("intake") as client:
                for number in numbers:
                    ticket = await wait_assigned(client, number, timeout=40)
                    assert ticket["channel"] == "email"
            for sender in senders:
                await relay.wait_for(mail_to(sender, "We received"),
                                     what=f"acknowledgement to {sender}")
                await relay.wait_for(mail_to(sender, "being handled"),
                                     what=f"assignment notice to {sender}")
            for sender in senders:
                acks = [m for m in relay.to(sender) if "We received" in str(m["Subject"])]
                assert len(acks) == 1
            assert await count_tickets(system) == 4
    finally:
        proxy.close()


async def test_an_autoresponder_that_hides_what_it_is_gets_only_a_few_acknowledgements(
    system: System,
) -> None:
    """No Auto-Submitted, no Precedence: every one of its mails is a ticket (nothing is lost),
    but the answers to that address stop at the hourly cap, so the loop dies out."""
    with MailSink() as relay:
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url, ACK_LIMIT_PER_HOUR="2")

        async def not_at_the_top_of_the_hour() -> bool:
            # The cap counts per clock hour: keep the four mails inside one hour.
            now = datetime.now(UTC)
            return not (now.minute == 59 and now.second >= 30)

        await eventually(not_at_the_top_of_the_hour, timeout=40, interval=1,
                         what="a clock hour with room for the test")
        for n in range(4):
            code, _ = await smtp_send(intake.smtp_port, mail(
                "robot@example.org", f"Re: your message {n}", "I am away, back soon."))
            assert code == 250
        async with system.client("intake") as client:
            async def all_decided() -> str | None:
                text = (await client.get("/metrics")).text
                skipped = 'notifications_skipped_total{kind="acknowledged"} 2.0' in text
                return text if skipped else None

            metrics = await eventually(all_decided, what="two acknowledgements skipped")
        assert 'notifications_sent_total{channel="email",kind="acknowledged"} 2.0' in metrics
        assert len(relay.to("robot@example.org")) == 2
        assert await count_tickets(system) == 4
