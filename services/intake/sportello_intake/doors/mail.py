"""Reading an inbound e-mail: pure functions from raw RFC 822 bytes to what the help desk needs.

Both mail doors (the SMTP listener and the raw-message webhook) go through
``read_mail``; it refuses what it cannot read faithfully (malformed MIME,
unknown charsets, oversized attachments) with a reason, and it says when a
message was written by a machine (auto-replies, bounces, bulk) so that it
never opens a ticket nor gets an answer: that is what stops mail loops.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import errors, policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses

from bs4 import BeautifulSoup
from mailparser_reply import EmailReplyParser
from pydantic import EmailStr, TypeAdapter, ValidationError

from sportello_contracts.events import LONG, SHORT

REPLY_LANGUAGES = ["it", "en"]
"""Quoted-history markers the trimmer knows ("Il giorno ... ha scritto:", "On ... wrote:")."""

STRUCTURAL_DEFECTS = (
    errors.NoBoundaryInMultipartDefect,
    errors.StartBoundaryNotFoundDefect,
    errors.CloseBoundaryNotFoundDefect,
    errors.MultipartInvariantViolationDefect,
    errors.InvalidBase64LengthDefect,
    errors.MissingHeaderBodySeparatorDefect,
)
"""Defects that mean we would store something other than what the sender wrote."""

BOUNCE_SENDERS = frozenset({"mailer-daemon", "postmaster"})
BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
MAX_REFERENCES = 30
MESSAGE_ID_MAX = 250
MESSAGE_ID = re.compile(r"<([^<>\s]{1,250})>")


class MailRejected(ValueError):
    """The message cannot be taken as it is; ``field`` names the part at fault."""

    def __init__(self, reason: str, field: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass(frozen=True)
class MailAttachment:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class InboundMail:
    message_id: str
    sender_email: str
    sender_name: str
    subject: str
    text: str
    """The new text of the message, quoted history and HTML markup removed."""
    language: str
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    attachments: tuple[MailAttachment, ...] = ()
    automatic: str | None = None
    """Why a machine wrote it (auto-reply, bounce, bulk), or ``None`` for a person."""
    truncated: bool = False

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """The Message-IDs this one answers, nearest first."""
        return (*self.in_reply_to, *reversed(self.references))


@dataclass(frozen=True)
class MailLimits:
    max_attachment_bytes: int = 5 * 1024 * 1024
    max_attachments: int = 10
    own_addresses: frozenset[str] = field(default_factory=frozenset)


def read_mail(raw: bytes, *, limits: MailLimits, envelope_sender: str | None = None) -> InboundMail:
    """Parse and check one message; raises ``MailRejected`` with the reason."""
    if not raw.strip():
        raise MailRejected("the message is empty", "message")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    _check_structure(message)
    sender_name, sender_email = _sender(message)
    subject = _header(message, "subject").strip() or "(no subject)"
    text, truncated = _text(message)
    attachments = _attachments(message, limits)
    automatic = _automatic(message, sender_email, envelope_sender, limits.own_addresses)
    if automatic is None:
        _check_reachable(sender_email)
    return InboundMail(
        message_id=_message_id(message, raw),
        sender_email=sender_email,
        sender_name=sender_name or sender_email.split("@")[0] or sender_email,
        subject=subject[:SHORT],
        text=text,
        language=_language(message, f"{subject}\n{text}"),
        in_reply_to=tuple(_ids(_header(message, "in-reply-to")))[:MAX_REFERENCES],
        references=tuple(_ids(_header(message, "references")))[-MAX_REFERENCES:],
        attachments=attachments,
        automatic=automatic,
        truncated=truncated,
    )


TICKET_NUMBER = re.compile(r"\[(?P<number>[A-Z]{1,6}-\d{4}-\d{6,9})\]")


def ticket_number_in(subject: str) -> str | None:
    """The ``[HD-2026-000042]`` tag our notifications put in their subjects."""
    match = TICKET_NUMBER.search(subject)
    return match.group("number") if match else None


def _check_structure(message: EmailMessage) -> None:
    for part in message.walk():
        for defect in part.defects:
            if isinstance(defect, STRUCTURAL_DEFECTS):
                raise MailRejected(f"malformed MIME: {type(defect).__name__}", "mime")


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (errors.HeaderParseError, ValueError, IndexError) as exc:
        raise MailRejected(f"unreadable {name} header: {exc}", name) from exc
    return str(value) if value is not None else ""


def _sender(message: EmailMessage) -> tuple[str, str]:
    header = _header(message, "from")
    if not header:
        raise MailRejected("the message has no From header", "from")
    addresses = [(name, addr) for name, addr in getaddresses([header]) if "@" in addr]
    if not addresses:
        raise MailRejected(f"no sender address in From: {header[:100]!r}", "from")
    name, addr = addresses[0]
    try:
        Address(addr_spec=addr)
    except (errors.HeaderParseError, ValueError, IndexError) as exc:
        raise MailRejected(f"invalid sender address {addr[:100]!r}", "from") from exc
    return name.strip()[:SHORT], addr.strip().lower()


REQUESTER_ADDRESS: TypeAdapter[str] = TypeAdapter(EmailStr)


def _check_reachable(address: str) -> None:
    """The requester's address must be one we can answer (and store as a requester):
    ``root@localhost`` or ``x@host.invalid`` can open no ticket."""
    try:
        REQUESTER_ADDRESS.validate_python(address)
    except ValidationError as exc:
        reason = exc.errors()[0].get("msg", "invalid")
        raise MailRejected(f"the sender {address[:100]!r} cannot be answered: {reason}",
                           "from") from exc


def _decoded_text(part: EmailMessage) -> str:
    charset = part.get_content_charset() or "us-ascii"
    try:
        content = part.get_content()
    except LookupError as exc:
        raise MailRejected(f"unknown charset {charset!r}", "charset") from exc
    return str(content)


def _text(message: EmailMessage) -> tuple[str, bool]:
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return "", False
    text = _decoded_text(body)  # type: ignore[arg-type]
    if body.get_content_subtype() == "html":
        text = html_to_text(text)
    text = text.replace("\r\n", "\n").strip()
    trimmed = trim_quoted(text) or text
    return trimmed[:LONG], len(trimmed) > LONG


def html_to_text(html: str) -> str:
    """What the reader sees: no markup, scripts or styles; blocks on their own lines."""
    soup = BeautifulSoup(html, "html.parser")
    for hidden in soup(["script", "style", "head", "title"]):
        hidden.decompose()
    for quote in soup.find_all("blockquote"):
        quote.decompose()  # mail clients put the quoted history in a blockquote
    text = soup.get_text("\n")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def trim_quoted(text: str) -> str:
    """The new part of a reply: quoted history and the "On ... wrote:" line gone."""
    return str(EmailReplyParser(languages=REPLY_LANGUAGES).parse_reply(text=text)).strip()


def _attachments(message: EmailMessage, limits: MailLimits) -> tuple[MailAttachment, ...]:
    found: list[MailAttachment] = []
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        filename = (part.get_filename() or "").strip() or f"attachment-{len(found) + 1}"
        content = part.get_payload(decode=True)
        if not isinstance(content, bytes):
            content = part.as_bytes()  # e.g. an attached message/rfc822
        if len(content) > limits.max_attachment_bytes:
            raise MailRejected(
                f"attachment {filename[:100]!r} is {len(content)} bytes; "
                f"the limit is {limits.max_attachment_bytes}", "attachments",
            )
        found.append(MailAttachment(filename[:255], part.get_content_type()[:100], content))
    if len(found) > limits.max_attachments:
        raise MailRejected(
            f"{len(found)} attachments; at most {limits.max_attachments}", "attachments"
        )
    return tuple(found)


def _automatic(
    message: EmailMessage, sender: str, envelope_sender: str | None, own: frozenset[str]
) -> str | None:
    auto_submitted = _header(message, "auto-submitted").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    precedence = _header(message, "precedence").strip().lower()
    if precedence in BULK_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name in ("x-autoreply", "x-autorespond", "x-autoresponse"):
        if message.get(name) is not None:
            return f"{name} present"
    if envelope_sender in {"", "<>"}:
        return "null envelope sender (a bounce)"
    if sender.split("@")[0] in BOUNCE_SENDERS:
        return f"sent by {sender.split('@')[0]}"
    if message.get_content_type() == "multipart/report":
        return "delivery or read report"
    if sender in own:
        return "sent by the help desk itself"
    return None


def _message_id(message: EmailMessage, raw: bytes) -> str:
    ids = _ids(_header(message, "message-id"))
    if ids:
        return ids[0]
    # No Message-ID: derive one from the content, so that a redelivery is still recognised.
    return f"sha256-{hashlib.sha256(raw).hexdigest()}@sportello.invalid"


def _ids(header: str) -> list[str]:
    ids = re.findall(MESSAGE_ID, header)
    if not ids and header.strip() and " " not in header.strip():
        ids = [header.strip()[:MESSAGE_ID_MAX]]
    return ids


ITALIAN_WORDS = frozenset((
    "il", "lo", "la", "le", "gli", "di", "da", "che", "non", "per", "con", "una", "uno", "sono",
    "ho", "mi", "ci", "del", "della", "grazie", "buongiorno", "salve", "ciao", "funziona",
    "problema", "stampante", "posso", "riesco", "è",
))
ENGLISH_WORDS = frozenset((
    "the", "a", "an", "of", "to", "and", "is", "are", "not", "for", "with", "my", "i", "it",
    "this", "that", "can", "cannot", "please", "thanks", "hello", "hi", "works", "problem",
    "printer",
))


def _language(message: EmailMessage, text: str) -> str:
    declared = _header(message, "content-language").strip().lower()[:2]
    if declared in {"it", "en"}:
        return declared
    return guess_language(text)


def guess_language(text: str) -> str:
    """Italian or English from common words: enough to choose a notification template."""
    words = re.findall(r"\w+", text.lower())[:400]
    italian = sum(w in ITALIAN_WORDS for w in words)
    english = sum(w in ENGLISH_WORDS for w in words)
    return "it" if italian > english else "en"
