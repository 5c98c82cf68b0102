"""Real, awkward mail through both doors (issue 23): every message of the fixture folder
(CPython's own e-mail test messages and a few of ours, see its README) is sent through
the SMTP listener and through the raw-mail webhook, twice each. Each must end as a
ticket (250 / 201), a duplicate, a deliberate drop of machine mail, or a refusal that
names the part at fault; never a 5xx, never a notice parked in the dead-letter queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.mailin import smtp_send
from support.mailsink import MailSink, mail_to, text_of
from support.metrics import samples
from support.system import System
from support.tickets import count_tickets, fetch_ticket

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "services/intake/tests/fixtures/mail"
MACHINE_MAIL = {"cpython-msg_16.eml", "cpython-msg_25.eml", "cpython-msg_43.eml"}


async def test_every_message_ends_as_a_ticket_a_duplicate_a_drop_or_a_named_refusal(
    system: System,
) -> None:
    with MailSink() as relay:
        await system.start("routing")
        intake = await system.start("intake", SMTP_RELAY_URL=relay.url)
        numbers: dict[str, str] = {}
        async with system.channel_client("email") as webhook:
            for path in sorted(FIXTURES.glob("*.eml")):
                # On the wire SMTP lines end in CRLF (the stored files have either).
                raw = path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                first = await smtp_send(intake.smtp_port, raw)
                again = await smtp_send(intake.smtp_port, raw)
                # The webhook gets it with LF line ends, as many gateways post it.
                posted = [await webhook.post("/channels/email/messages",
                                             content=raw.replace(b"\r\n", b"\n"))
                          for _ in range(2)]
                outcome: dict[str, Any] = {"smtp": [first, again],
                                           "webhook": [(r.status_code, r.text) for r in posted]}
                assert first[0] == 250, (path.name, outcome)
                assert again[0] == 250, (path.name, outcome)
                actions = {r.json()["action"] for r in posted}
                if path.name in MACHINE_MAIL:  # taken (202) and dropped: no ticket, no reply
                    assert "automatic message" in first[1], (path.name, outcome)
                    assert [r.status_code for r in posted] == [202, 202], (path.name, outcome)
                    assert actions == {"ignored"}, (path.name, outcome)
                    continue
                assert [r.status_code for r in posted] == [200, 200], (path.name, outcome)
                assert " created " in f" {first[1]} ", (path.name, outcome)
                assert " duplicate " in f" {again[1]} ", (path.name, outcome)
                assert actions == {"duplicate"}, (path.name, outcome)  # one ticket per mail
                numbers[path.name] = first[1].split()[-1]

        assert await count_tickets(system) == len(numbers) == 9

        # Nested multiparts: each leaf with its own name and type; a comment-style sender
        # keeps the name; readable text beside a MIME defect is kept, with a note.
        nested = (await fetch_ticket(system, numbers["cpython-msg_13.eml"]))["messages"][0]
        assert ("dingusfish.gif", "image/gif") in {
            (a["filename"], a["content_type"]) for a in nested["attachments"]}
        john = await fetch_ticket(system, numbers["cpython-msg_01.eml"])
        assert john["requester"]["name"] == "John X. Doe"
        kept = (await fetch_ticket(system, numbers["ours-readable-beside-defect.eml"]))
        assert "My badge stopped opening the door" in kept["messages"][0]["body"]
        assert "could not be read" in kept["messages"][0]["body"]
        reused = (await fetch_ticket(system, numbers["cpython-msg_15.eml"]))["messages"][0]
        assert reused["body"].startswith("Some removed test.")  # refused outright before

        # The subject with an encoded line break: stored on one line, and the requester is
        # answered (the acknowledgement was parked in the dead-letter queue before).
        newline = await fetch_ticket(system, numbers["ours-newline-subject.eml"])
        assert newline["subject"] == "Bad subject Bcc: injected@example.com"
        ack = await relay.wait_for(mail_to("anna.bianchi@example.com", "received"),
                                   what="acknowledgement of the newline subject")
        assert "injected@example.com" not in str(ack.get_all("Bcc") or "")
        assert "injected@example.com" not in str(ack["To"])

        # A GroupWise forward: its text, marked, and the whole message attached.
        forward = await fetch_ticket(system, numbers["cpython-msg_46.eml"])
        opening = forward["messages"][0]
        assert "Forwarded message" in opening["body"]
        assert "Testing email forwarding with Groupwise" in opening["body"]
        assert [a["filename"] for a in opening["attachments"]] == ["GroupwiseForwardingTest.eml"]

        # The internationalised sender was taken through SMTPUTF8 and is answered.
        idn = await fetch_ticket(system, numbers["ours-international-sender.eml"])
        assert idn["requester"]["email"] == "főo@bar.com"
        french = await fetch_ticket(system, numbers["ours-french.eml"])
        assert french["requester"]["language"] == "en"
        greeted = await relay.wait_for(mail_to("jeanne.martin@example.fr", "received"),
                                       what="the French requester's acknowledgement")
        assert "Time limit" in text_of(greeted)

        # Every requester with an address is acknowledged; no notice is parked or failed.
        await relay.wait_for(lambda m: len(relay.messages) >= 2 * len(numbers), timeout=30,
                             what="acknowledgement and assignment for every ticket")
        async with system.client("intake") as client:
            text = (await client.get("/metrics")).text
        parked = {k: v for k, v in samples(text, "events_consumed_total").items()
                  if ("outcome", "dead_lettered") in k and v}
        assert parked == {}
        assert not any(samples(text, "notifications_failed_total").values())
