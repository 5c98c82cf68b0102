"""Intake's outbound doors: mail through the SMTP relay, replies to the chat platform,
and the SLA service asked for a ticket's time limit (by the status page)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from email import errors as email_errors
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.policy import compat32
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from urllib.parse import urlsplit

import httpx

from sportello_contracts.enums import SlaMetric
from sportello_intake.doors import signatures
from sportello_intake.requester.notices import Notice
from sportello_intake.requester.relay import (
    RelayCannot,
    RelayConnections,
    RelayRefused,
    RelayUnreachable,
)
from sportello_intake.settings import IntakeSettings
from sportello_runtime.bus import DependencyAway

MAIL_POLICY = compat32.clone(linesep="\r\n", max_line_length=998, cte_type="8bit")
"""The classic message model: headers we encode ourselves (``Header``, ``formataddr``) are
taken as they are instead of being parsed again by the header registry, which cost more
than the rest of a notice. RFC 5322's line limit: long Message-IDs in In-Reply-To stay
verbatim."""
BODY_CHARSET = Charset("utf-8")
BODY_CHARSET.body_encoding = QP  # readable in any client's source view, accents included


def _recipient(name: str, address: str) -> str:
    """``Name <address>``; an internationalised address goes out as UTF-8 in the header
    (RFC 6532, sent with SMTPUTF8), which the classic model writes through as escaped
    bytes; the name, as ever, as an encoded word when it needs one."""
    if address.isascii():
        return formataddr((name, address), charset="utf-8")
    shown = formataddr((name, "a@b"), charset="utf-8").removesuffix(" <a@b>") if name else ""
    value = f"{shown} <{address}>".strip()
    return value.encode().decode("ascii", "surrogateescape")


def _text_header(value: str) -> str:
    """ASCII as it is; anything else (accents, and a line break a header must never hold)
    as an RFC 2047 encoded word."""
    if value.isascii() and "\n" not in value and "\r" not in value:
        return value
    return Header(value, "utf-8").encode()


class DeliveryFailed(Exception):
    """The relay or the chat platform did not take the notice: the bus retries it."""


class DeliveryDeferred(DeliveryFailed, DependencyAway):
    """The relay or the platform is unreachable, or asked to try later (SMTP 4xx, HTTP
    5xx): the notice waits for it however long it is away, instead of being parked after
    the bus's attempts (which a permanent refusal still is)."""


class NoticeNotBuildable(Exception):
    """The notice cannot be written as mail (a value no header may hold): recorded as
    unsendable with the reason, never retried (it would fail the same way)."""


class Outbound:
    def __init__(self, settings: IntakeSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self.sender = parseaddr(settings.mail_from)[1] or "help@sportello.localhost"
        self.domain = self.sender.partition("@")[2] or "sportello.localhost"
        self.relay: RelayConnections | None = None
        if settings.smtp_relay_url:
            relay = urlsplit(settings.smtp_relay_url)
            self.relay = RelayConnections(relay.hostname or "127.0.0.1", relay.port or 25,
                                          local_name=self.domain,
                                          size=settings.smtp_relay_connections)

    async def close(self) -> None:
        if self.relay is not None:
            self.relay.close()
        await self.http.aclose()

    async def send_mail(
        self, to_name: str, to_email: str, notice: Notice, *, in_reply_to: str | None,
        references: Sequence[str], automatic: bool, key: str | None = None,
    ) -> str:
        """Send one notice; returns its Message-ID so that replies thread back to the ticket.
        ``key`` names the notice: sent again (after a crash between the send and its
        record), it is the same message, which mail clients show once."""
        if self.relay is None:
            raise DeliveryFailed("no SMTP_RELAY_URL configured")
        try:
            message = Message(policy=MAIL_POLICY)
            message["From"] = self.settings.mail_from
            message["To"] = _recipient(to_name, to_email)
            message["Subject"] = _text_header(notice.subject)
            message["Date"] = formatdate(localtime=False, usegmt=True)
            message_id = f"<{key}@{self.domain}>" if key else make_msgid(domain=self.domain)
            message["Message-ID"] = message_id
            if in_reply_to:
                message["In-Reply-To"] = f"<{in_reply_to}>"
                message["References"] = " ".join(f"<{r}>" for r in (*references, in_reply_to)[-10:])
            if automatic:
                # RFC 3834: tells other systems not to auto-answer us (no mail loops).
                message["Auto-Submitted"] = "auto-replied" if in_reply_to else "auto-generated"
                message["X-Auto-Response-Suppress"] = "All"
            message["Content-Language"] = notice.language
            message["MIME-Version"] = "1.0"
            message.set_payload(notice.body, BODY_CHARSET)

            data = message.as_bytes()
        except (ValueError, TypeError, UnicodeError, email_errors.MessageError) as exc:
            raise NoticeNotBuildable(f"cannot be written as mail: {exc}") from exc

        try:
            await self.relay.send(self.sender, [to_email], data)
        except RelayUnreachable as exc:
            raise DeliveryDeferred(f"SMTP relay unreachable: {exc}") from exc
        except RelayRefused as exc:
            failure = DeliveryDeferred if 400 <= exc.code < 500 else DeliveryFailed
            raise failure(f"SMTP relay: {exc}") from exc
        except RelayCannot as exc:
            raise DeliveryFailed(f"SMTP relay: {exc}") from exc
        except ValueError as exc:
            raise NoticeNotBuildable(f"cannot be sent: {exc}") from exc
        return message_id.strip("<>")

    async def post_chat(self, conversation_id: str, number: str, notice: Notice) -> None:
        if not self.settings.chat_callback_url:
            raise DeliveryFailed("no CHAT_CALLBACK_URL configured")
        body = json.dumps({"conversation_id": conversation_id, "ticket_number": number,
                           "kind": notice.kind.value, "language": notice.language,
                           "text": notice.body}).encode()
        headers = {"Content-Type": "application/json"}
        secret = self.settings.channel_secrets.get("chat")
        if secret is not None:
            headers[signatures.HEADER] = signatures.sign(secret.get_secret_value(), body)
        try:
            response = await self.http.post(self.settings.chat_callback_url, content=body,
                                            headers=headers,
                                            timeout=self.settings.chat_callback_timeout_s)
        except httpx.HTTPError as exc:
            raise DeliveryDeferred(f"chat callback unreachable: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise DeliveryDeferred(f"chat callback answered {response.status_code}")
        if response.status_code >= 300:
            raise DeliveryFailed(f"chat callback answered {response.status_code}")

    async def time_limit(self, ticket_id: str) -> datetime | None:
        """The running resolution clock's due time, asked of SLA for the status page (one
        request: a page never waits for SLA; notices use the time limit SLA announced)."""
        if not self.settings.sla_url:
            return None
        headers = {}
        if self.settings.service_token is not None:
            headers["Authorization"] = f"Bearer {self.settings.service_token.get_secret_value()}"
        try:
            response = await self.http.get(
                f"{self.settings.sla_url.rstrip('/')}/tickets/{ticket_id}/sla",
                headers=headers, timeout=3)
            if response.status_code == 200:
                for clock in response.json().get("clocks", []):
                    if clock.get("metric") == SlaMetric.RESOLUTION.value and clock.get(
                            "due_at") and clock.get("state") == "running":
                        return datetime.fromisoformat(clock["due_at"])
        except (httpx.HTTPError, ValueError):
            pass
        return None
