"""Notices to the organisation's SMTP relay (RFC 5321): connections kept open between
notices, and the envelope sent in one write where the relay offers PIPELINING (RFC 2920).

A notice took four round trips to the relay through aiosmtplib (MAIL, RCPT, DATA, the
message), and aiosmtplib reads one reply per command, so it cannot pipeline. Postfix,
Exim and the mail catcher offer PIPELINING: the envelope and DATA go together and the
message follows its 354, two round trips, with less of intake's and the relay's CPU per
notice. A relay that does not offer it gets one command at a time, as before.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Self

MAX_REPLY_LINE = 4096
"""RFC 5321 allows 512 octets a reply line; a relay's text is kept short of this."""
_LINE_BREAKS = re.compile(rb"\r\n|\r|\n")
_UNSAFE_IN_COMMAND = re.compile(r"[\r\n\0<>]")


class RelayUnreachable(Exception):
    """No answer from the relay: connection refused, lost, or too slow."""


class RelayRefused(Exception):
    """The relay answered with an error reply (4xx: try later; 5xx: refused)."""

    def __init__(self, code: int, text: str, command: str) -> None:
        super().__init__(f"{command}: {code} {text}")
        self.code = code


class RelayCannot(Exception):
    """The relay lacks what the message needs (SMTPUTF8 for an internationalised address)."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str


def data_block(message: bytes) -> bytes:
    """The message as DATA carries it: CRLF line ends, a leading dot doubled, and the
    closing dot on a line of its own."""
    lines = _LINE_BREAKS.split(message)
    if lines and lines[-1] == b"":
        lines.pop()
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"\r\n".join([*stuffed, b"."]) + b"\r\n"


def _address(address: str) -> str:
    if _UNSAFE_IN_COMMAND.search(address):
        raise ValueError(f"an address with a line break or angle bracket: {address!r}")
    return address


class RelaySession:
    """One open SMTP session: greeted, EHLO said, the relay's extensions known."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout_s: float) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout_s = timeout_s
        self.extensions: dict[str, str] = {}

    @classmethod
    async def open(cls, host: str, port: int, *, timeout_s: float, local_name: str) -> Self:
        """``local_name``: what EHLO says we are (the sender's domain)."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=MAX_REPLY_LINE), timeout_s)
        except (OSError, TimeoutError) as exc:
            raise RelayUnreachable(f"cannot connect to {host}:{port}: {exc}") from exc
        session = cls(reader, writer, timeout_s)
        try:
            greeting = await session._reply()
            if greeting.code != 220:
                raise RelayRefused(greeting.code, greeting.text, "greeting")
            await session._hello(local_name)
        except BaseException:
            session.close()
            raise
        return session

    @property
    def is_open(self) -> bool:
        return not self._writer.is_closing() and not self._reader.at_eof()

    async def send(self, sender: str, recipients: list[str], message: bytes) -> None:
        """One message, to every recipient or to none: a refused recipient refuses it (a
        notice has one). Raises on a refusal after resetting the envelope, so that the
        session can take the next message."""
        utf8 = not all(a.isascii() for a in (sender, *recipients))
        if utf8 and "SMTPUTF8" not in self.extensions:
            raise RelayCannot("the relay does not offer SMTPUTF8, which the address needs")
        block = data_block(message)
        options = " SMTPUTF8" if utf8 else ""
        if "SIZE" in self.extensions:
            options += f" SIZE={len(block)}"
        envelope = [f"MAIL FROM:<{_address(sender)}>{options}",
                    *(f"RCPT TO:<{_address(r)}>" for r in recipients), "DATA"]
        replies = await self._envelope(envelope)
        started = len(replies) == len(envelope) and replies[-1].code == 354
        refusal = _first_refusal(envelope, replies)
        if refusal is not None:
            if started:  # a relay that took DATA after refusing a recipient: end it empty
                await self._exchange(b".\r\n")
            await self._reset()
            raise refusal
        done = await self._exchange(block)
        if done.code != 250:
            await self._reset()
            raise RelayRefused(done.code, done.text, "end of data")

    def close(self) -> None:
        self._writer.close()

    async def _hello(self, local_name: str) -> None:
        ehlo = await self._exchange(f"EHLO {_address(local_name)}\r\n".encode())
        if ehlo.code == 250:
            for line in ehlo.text.split("\n")[1:]:
                keyword, _, value = line.strip().partition(" ")
                self.extensions[keyword.upper()] = value
            return
        helo = await self._exchange(f"HELO {local_name}\r\n".encode())
        if helo.code != 250:
            raise RelayRefused(helo.code, helo.text, "HELO")

    async def _envelope(self, commands: list[str]) -> list[Reply]:
        """Every command's reply; with PIPELINING all are written at once, else each waits
        for the one before and the first refusal ends the envelope."""
        lines = [f"{command}\r\n".encode() for command in commands]
        if "PIPELINING" in self.extensions:
            self._write(b"".join(lines))
            return [await self._reply() for _ in lines]
        replies = []
        for line in lines:
            reply = await self._exchange(line)
            replies.append(reply)
            if reply.code >= 400:
                break
        return replies

    async def _reset(self) -> None:
        """After a refusal; a session that cannot reset is closed (the refusal is what the
        caller hears, not the reset's failure)."""
        try:
            if (await self._exchange(b"RSET\r\n")).code != 250:
                self.close()
        except RelayUnreachable:
            self.close()

    async def _exchange(self, data: bytes) -> Reply:
        self._write(data)
        if len(data) > 65536:  # a large message waits for the socket to take it
            try:
                await asyncio.wait_for(self._writer.drain(), self._timeout_s)
            except (OSError, TimeoutError) as exc:
                self.close()
                raise RelayUnreachable(f"the relay did not take the message: {exc!r}") from exc
        return await self._reply()

    def _write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise RelayUnreachable("the relay closed the connection")
        self._writer.write(data)

    async def _reply(self) -> Reply:
        """One reply, its continuation lines joined by newlines (as EHLO lists extensions)."""
        texts = []
        while True:
            try:
                line = await asyncio.wait_for(self._reader.readline(), self._timeout_s)
            except (OSError, TimeoutError, ValueError) as exc:
                self.close()
                raise RelayUnreachable(f"no reply from the relay: {exc!r}") from exc
            if not line.endswith(b"\n") or len(line) < 4 or not line[:3].isdigit():
                self.close()
                raise RelayUnreachable(f"the relay closed the connection or answered {line!r}")
            texts.append(line[4:].decode("utf-8", "replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return Reply(int(line[:3]), "\n".join(texts))


def _first_refusal(commands: list[str], replies: list[Reply]) -> RelayRefused | None:
    for command, reply in zip(commands, replies, strict=False):
        wanted = (354,) if command == "DATA" else (250, 251)
        if reply.code not in wanted:
            return RelayRefused(reply.code, reply.text, command.split(":")[0])
    return None


class RelayConnections:
    """Sessions with the relay, kept open between notices and shared by at most ``size``
    sends at once. A session per notice (connect, EHLO, QUIT) cost more than the notice
    itself, and as much again on the relay."""

    def __init__(self, host: str, port: int, *, local_name: str, size: int,
                 timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.local_name = local_name
        self.timeout_s = timeout_s
        self._idle: list[RelaySession] = []
        self._slots = asyncio.Semaphore(size)

    async def send(self, sender: str, recipients: list[str], data: bytes) -> None:
        async with self._slots:
            session = self._idle.pop() if self._idle else None
            for last in (False, True):
                if session is None or not session.is_open:
                    session = await RelaySession.open(self.host, self.port,
                                                      timeout_s=self.timeout_s,
                                                      local_name=self.local_name)
                try:
                    await session.send(sender, recipients, data)
                except RelayUnreachable:
                    session.close()
                    session = None
                    if last:
                        raise
                    continue  # the relay closed an idle connection: once more, on a new one
                except (RelayRefused, RelayCannot, ValueError):
                    if session.is_open:  # refused and reset: fit for the next message
                        self._idle.append(session)
                    raise
                except BaseException:  # cancelled mid-exchange: where it stood is unknown
                    session.close()
                    raise
                self._idle.append(session)
                return

    def close(self) -> None:
        for session in self._idle:
            session.close()
        self._idle.clear()
