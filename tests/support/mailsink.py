"""A real SMTP server (aiosmtpd) standing in for the organisation's mail relay in tests."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from support.proxy import free_port
from support.wait import eventually


def mail_to(recipient: str, subject_part: str) -> Callable[[EmailMessage], bool]:
    """For ``MailSink.wait_for``: a message to this recipient whose subject holds
    ``subject_part``."""
    return lambda m: recipient in str(m["To"]) and subject_part in str(m["Subject"])


class MailSink:
    """Records every message it is sent; ``wait_for`` polls with a deadline."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.refuse = False
        self.delay_s = 0.0
        """A slow relay: each message is answered this long after its data."""
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return "451 4.3.0 relay is down for the test"
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def __enter__(self) -> MailSink:
        self._controller.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]

    async def wait_for(self, predicate: Callable[[EmailMessage], bool], timeout: float = 20,
                       what: str = "a message") -> EmailMessage:
        async def found() -> EmailMessage | None:
            return next((m for m in self.messages if predicate(m)), None)

        return await eventually(found, timeout=timeout, what=what)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())
