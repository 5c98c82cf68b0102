"""Intake's SMTP client against real SMTP servers (aiosmtpd, and the mail catcher as
`make up` runs it): pipelined where the relay offers it, one command at a time where it
does not, refusals reported with their code and the session fit for the next message."""

from __future__ import annotations

import asyncio
import email
import mailbox
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from sportello_intake.requester.relay import (
    RelayCannot,
    RelayConnections,
    RelayRefused,
    RelaySession,
    RelayUnreachable,
    data_block,
)
from support.proxy import free_port

MESSAGE = (b"From: help@sportello.localhost\r\nTo: anna@example.com\r\n"
           b"Subject: [HD-2026-000001] We received your request\r\n\r\n"
           b"Hello Anna,\r\n.a line that starts with a dot\r\n.\r\nthe end\r\n")


class Relay:
    """aiosmtpd as a relay: records what it takes; offers PIPELINING when asked to."""

    def __init__(self, *, pipelining: bool, smtputf8: bool = False, port: int = 0) -> None:
        self.pipelining = pipelining
        self.taken: list[tuple[str, list[str], bytes]] = []
        self.refuse_rcpt: str | None = None
        self.port = port or free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                     enable_SMTPUTF8=smtputf8)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None
        self.taken.append((envelope.mail_from, list(envelope.rcpt_tos),
                           envelope.original_content or b""))
        return "250 OK"


@pytest.fixture(params=[True, False], ids=["pipelining", "one-at-a-time"])
def relay(request: pytest.FixtureRequest) -> Iterator[Relay]:
    server = Relay(pipelining=request.param)
    server.controller.start()
    yield server
    server.controller.stop()


async def open_session(relay: Relay) -> RelaySession:
    return await RelaySession.open("127.0.0.1", relay.port, timeout_s=5,
                                   local_name="sportello.localhost")


def test_the_data_block_doubles_leading_dots_and_ends_with_a_lone_dot() -> None:
    assert data_block(b"a\n.b\r\n..c\rd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert data_block(b"a\r\n") == b"a\r\n.\r\n"


async def test_messages_go_through_one_session_whole(relay: Relay) -> None:
    session = await open_session(relay)
    assert ("PIPELINING" in session.extensions) is relay.pipelining
    for n in range(3):
        await session.send("help@sportello.localhost", [f"r{n}@example.com"], MESSAGE)
    session.close()
    assert [(sender, to) for sender, to, _ in relay.taken] == [
        ("help@sportello.localhost", [f"r{n}@example.com"]) for n in range(3)]
    # Dot-stuffing undone by the relay: the message arrives as it was written.
    assert all(raw == MESSAGE for _, _, raw in relay.taken)


@pytest.mark.parametrize("reply", ["550 5.1.1 no such user", "451 4.3.0 try later"])
async def test_a_refused_recipient_is_reported_and_the_session_takes_the_next(
    relay: Relay, reply: str
) -> None:
    session = await open_session(relay)
    relay.refuse_rcpt = reply
    with pytest.raises(RelayRefused) as refused:
        await session.send("help@sportello.localhost", ["gone@example.com"], MESSAGE)
    assert refused.value.code == int(reply[:3])
    assert session.is_open
    relay.refuse_rcpt = None
    await session.send("help@sportello.localhost", ["anna@example.com"], MESSAGE)
    session.close()
    assert [to for _, to, _ in relay.taken] == [["anna@example.com"]]


async def test_an_internationalised_address_needs_the_relays_smtputf8() -> None:
    for offered in (False, True):
        server = Relay(pipelining=True, smtputf8=offered)
        server.controller.start()
        try:
            session = await open_session(server)
            if offered:
                await session.send("help@sportello.localhost", ["jürgen@example.de"], MESSAGE)
                assert [to for _, to, _ in server.taken] == [["jürgen@example.de"]]
            else:
                with pytest.raises(RelayCannot):
                    await session.send("help@sportello.localhost", ["jürgen@example.de"],
                                       MESSAGE)
            session.close()
        finally:
            server.controller.stop()


async def test_an_address_that_would_inject_a_command_is_refused_before_sending(
    relay: Relay,
) -> None:
    session = await open_session(relay)
    with pytest.raises(ValueError, match="line break"):
        await session.send("help@sportello.localhost", ["a@b.c>\r\nRCPT TO:<x@y.z"], MESSAGE)
    session.close()
    assert relay.taken == []


@pytest.fixture
async def scripted_relay() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A relay that answers MAIL only once RCPT and DATA have arrived too: a client that
    waits for each reply before the next command never gets there."""
    reads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted\r\n")
        buffer = b""
        while data := await reader.read(65536):
            reads.append(data)
            buffer += data
            if buffer.startswith(b"EHLO"):
                writer.write(b"250-scripted\r\n250 PIPELINING\r\n")
                buffer = b""
            elif buffer.startswith(b"MAIL") and b"DATA\r\n" in buffer:
                writer.write(b"250 ok\r\n250 ok\r\n354 go on\r\n")
                buffer = b""
            elif buffer.endswith(b"\r\n.\r\n"):
                writer.write(b"250 queued\r\n")
                buffer = b""
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], reads
    server.close()


async def test_with_pipelining_the_envelope_goes_in_one_write(
    scripted_relay: tuple[int, list[bytes]],
) -> None:
    port, reads = scripted_relay
    session = await RelaySession.open("127.0.0.1", port, timeout_s=5,
                                      local_name="sportello.localhost")
    await session.send("help@sportello.localhost", ["anna@example.com"], MESSAGE)
    session.close()
    assert reads[1] == (b"MAIL FROM:<help@sportello.localhost>\r\n"
                        b"RCPT TO:<anna@example.com>\r\nDATA\r\n")


async def test_an_idle_connection_the_relay_closed_is_replaced_once() -> None:
    before = Relay(pipelining=True)
    before.controller.start()
    connections = RelayConnections("127.0.0.1", before.port, local_name="sportello.localhost",
                                   size=1, timeout_s=5)
    await connections.send("help@sportello.localhost", ["a@example.com"], MESSAGE)
    before.controller.stop()  # the relay restarts: the session kept open is gone
    after = Relay(pipelining=True, port=before.port)
    after.controller.start()
    try:
        await connections.send("help@sportello.localhost", ["b@example.com"], MESSAGE)
    finally:
        connections.close()
        after.controller.stop()
    assert [to for _, to, _ in before.taken] == [["a@example.com"]]
    assert [to for _, to, _ in after.taken] == [["b@example.com"]]


async def test_a_relay_that_is_not_there_is_unreachable() -> None:
    connections = RelayConnections("127.0.0.1", free_port(), local_name="sportello.localhost",
                                   size=1, timeout_s=5)
    with pytest.raises(RelayUnreachable):
        await connections.send("help@sportello.localhost", ["a@example.com"], MESSAGE)


async def test_the_mail_catcher_takes_pipelined_notices(tmp_path: Path) -> None:
    """The relay `make up` runs offers PIPELINING, and takes what comes that way."""
    port, out = free_port(), tmp_path / "out.txt"
    with out.open("w") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sportello_mailcatcher", "--port", str(port),
            "--maildir", str(tmp_path / "mail"), stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "mail catcher on" not in out.read_text():
            assert time.monotonic() < deadline, out.read_text()
            await asyncio.sleep(0.05)
        session = await RelaySession.open("127.0.0.1", port, timeout_s=5,
                                          local_name="sportello.localhost")
        assert "PIPELINING" in session.extensions
        await session.send("help@sportello.localhost", ["anna@example.com"], MESSAGE)
        await session.send("help@sportello.localhost", ["bruno@example.com"], MESSAGE)
        session.close()
        while out.read_text().count("HD-2026-000001") < 2:
            assert time.monotonic() < deadline, out.read_text()
            await asyncio.sleep(0.05)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
    kept = [m.get_payload() for m in mailbox.Maildir(tmp_path / "mail")]
    written = str(email.message_from_bytes(MESSAGE).get_payload()).replace("\r\n", "\n")
    assert kept == [written, written]  # dots and all
    assert "to anna@example.com: [HD-2026-000001]" in out.read_text()
    assert "to bruno@example.com: [HD-2026-000001]" in out.read_text()
