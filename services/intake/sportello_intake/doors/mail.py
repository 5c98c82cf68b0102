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
from email.header import decode_header
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
    """Parse and check one message; raises ``MailRejected`` with the reason.

    Machine mail (bounces, auto-replies, reports) is recognised before anything else is
    checked: refusing a broken bounce makes the sending server bounce again. A message
    with readable text beside a MIME defect is kept, with a note of what could not be
    read; only a message with nothing readable is refused for its structure.
    """
    if not raw.strip():
        raise MailRejected("the message is empty", "message")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    automatic = _automatic(message, envelope_sender, limits.own_addresses)
    if automatic is not None:
        return _machine_mail(message, raw, automatic)
    defect = _structural_defect(message)
    sender_name, sender_email = _sender(message)
    subject = one_line(_header(message, "subject")) or "(no subject)"
    if sender_email in limits.own_addresses:
        return _machine_mail(message, raw, "sent by the help desk itself")
    text, truncated = _text(message)
    attachments = _attachments(message, limits)
    if defect is not None:
        if not text and not attachments:
            raise MailRejected(f"malformed MIME: {defect}", "mime")
        text = f"{text}\n\n(Part of this message could not be read: {defect}.)".strip()
    _check_reachable(sender_email)
    return InboundMail(
        message_id=_message_id(message, sender_email, subject, text),
        sender_email=sender_email,
        sender_name=sender_name or sender_email.split("@")[0] or sender_email,
        subject=subject[:SHORT],
        text=text[:LONG],
        language=_language(message, f"{subject}\n{text}"),
        in_reply_to=tuple(_ids(_header(message, "in-reply-to")))[:MAX_REFERENCES],
        references=tuple(_ids(_header(message, "references")))[-MAX_REFERENCES:],
        attachments=attachments,
        automatic=None,
        truncated=truncated,
    )


def one_line(value: str) -> str:
    """A header value as stored and shown: on one line, whatever its encoded words held
    (a line break in a subject must never reach a header of ours)."""
    return " ".join(value.split())


def _machine_mail(message: EmailMessage, raw: bytes, why: str) -> InboundMail:
    """What the desk records of machine mail it drops: who and what, as far as readable."""
    try:
        name, address = _sender(message)
    except MailRejected:
        name, address = "", ""
    ids = _ids(_safe_header(message, "message-id"))
    return InboundMail(
        message_id=ids[0] if ids else f"sha256-{hashlib.sha256(raw).hexdigest()}@sportello.invalid",
        sender_email=address, sender_name=name,
        subject=one_line(_safe_header(message, "subject"))[:SHORT], text="",
        language="en", automatic=why)


def _safe_header(message: EmailMessage, name: str) -> str:
    try:
        return _header(message, name)
    except MailRejected:
        return ""


TICKET_NUMBER = re.compile(r"\[(?P<number>[A-Z]{1,6}-\d{4}-\d{6,9})\]")


def ticket_number_in(subject: str) -> str | None:
    """The ``[HD-2026-000042]`` tag our notifications put in their subjects."""
    match = TICKET_NUMBER.search(subject)
    return match.group("number") if match else None


def _structural_defect(message: EmailMessage) -> str | None:
    """The first defect that means part of the message may read otherwise than written."""
    for part in message.walk():
        for defect in part.defects:
            if isinstance(defect, STRUCTURAL_DEFECTS):
                return type(defect).__name__
    return None


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (errors.HeaderParseError, ValueError, IndexError) as exc:
        raise MailRejected(f"unreadable {name} header: {exc}", name) from exc
    return str(value) if value is not None else ""


def _raw_header(message: EmailMessage, name: str) -> str | None:
    """A header as the sender wrote it, before any parsing (which can drop parts of it)."""
    return next((str(value) for key, value in message.raw_items() if key.lower() == name),
                None)


def _sender(message: EmailMessage) -> tuple[str, str]:
    """(display name, address). Read from the header as written: the parsed header drops
    the old comment style's name (``bbb@ddd.com (John X. Doe)``)."""
    raw = _raw_header(message, "from")
    if raw is None:
        raise MailRejected("the message has no From header", "from")
    try:
        header = _decoded(_utf8(raw))
    except (errors.HeaderParseError, ValueError, LookupError, UnicodeError):
        header = _header(message, "from")
    addresses = [(name, addr) for name, addr in getaddresses([header]) if "@" in addr]
    if not addresses:
        raise MailRejected(f"no sender address in From: {one_line(header)[:100]!r}", "from")
    name, addr = addresses[0]
    if any(c.isspace() or ord(c) < 32 for c in addr.strip()):
        raise MailRejected(f"invalid sender address {addr[:100]!r}", "from")
    return one_line(name)[:SHORT], addr.strip().lower()


def _decoded(value: str) -> str:
    """Encoded words decoded; the rest as it is (``make_header`` would escape non-ASCII)."""
    parts = decode_header(value)
    return "".join(
        part.decode(charset or "raw-unicode-escape", "replace") if isinstance(part, bytes)
        else part for part, charset in parts)


def _utf8(value: str) -> str:
    """A raw header as UTF-8: SMTPUTF8 mail carries 8-bit headers, which the parser keeps
    as escaped bytes."""
    try:
        return value.encode("ascii", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return value


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
    text = ""
    if body is not None:
        text = _decoded_text(body)  # type: ignore[arg-type]
        if body.get_content_subtype() == "html":
            text = html_to_text(text)
        text = text.replace("\r\n", "\n").strip()
        text = trim_quoted(text) or text
    for forwarded in _forwarded(message):
        text = f"{text}\n\n{forwarded}".strip()
    return text[:LONG], len(text) > LONG


def _forwarded(message: EmailMessage) -> list[str]:
    """The text of each message attached whole (message/rfc822: how many clients forward),
    marked as forwarded, with who sent it and what it was about."""
    found = []
    for part in message.walk():
        if part.get_content_type() != "message/rfc822":
            continue
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        if not isinstance(inner, EmailMessage):
            continue
        inner_text, _ = _text(inner)
        found.append("---------- Forwarded message ----------\n"
                     f"From: {one_line(_safe_header(inner, 'from'))}\n"
                     f"Subject: {one_line(_safe_header(inner, 'subject'))}\n\n{inner_text}")
    return found


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
    """Every leaf of the MIME tree that is not the body we read, with its own name and
    type (an image inside a nested multipart is an image, not a multipart blob); a
    forwarded message is kept whole; empty parts are skipped."""
    body = message.get_body(preferencelist=("plain", "html"))
    alternatives = _alternatives_of(message, body)
    found: list[MailAttachment] = []
    for part in _leaves(message):
        if part is body or part in alternatives:
            continue
        if part.get_content_type() == "message/rfc822":
            content = part.as_bytes()
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            subject = one_line(_safe_header(inner, "subject")) if isinstance(
                inner, EmailMessage) else ""
            filename = f"{(subject or 'forwarded message')[:200]}.eml"
        else:
            payload = part.get_payload(decode=True)
            content = payload if isinstance(payload, bytes) else b""
            filename = one_line(part.get_filename() or "") or f"attachment-{len(found) + 1}"
        if not content.strip():
            continue
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


def _leaves(message: EmailMessage) -> list[EmailMessage]:
    """The parts with content of their own, in order; a message/rfc822 counts as one."""
    if message.get_content_type() == "message/rfc822":
        return [message]
    if not message.is_multipart():
        # A multipart whose boundary is missing has no parts we can tell apart: nothing.
        return [] if message.get_content_maintype() == "multipart" else [message]
    found = []
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        found.extend(_leaves(part))
    return found


def _alternatives_of(message: EmailMessage, body: object) -> list[object]:
    """The other renderings of the body we read (the HTML beside the plain text): the
    same words, not attachments."""
    for part in message.walk():
        if part.get_content_type() == "multipart/alternative":
            children = list(part.iter_parts())
            if body in children:
                return [c for c in children if not c.is_multipart()]
    return []


def _automatic(message: EmailMessage, envelope_sender: str | None,
               own: frozenset[str]) -> str | None:
    """Why a machine wrote it, from what even a broken message shows; None for a person."""
    if envelope_sender in {"", "<>"}:
        return "null envelope sender (a bounce)"
    auto_submitted = _safe_header(message, "auto-submitted").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    precedence = _safe_header(message, "precedence").strip().lower()
    if precedence in BULK_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name in ("x-autoreply", "x-autorespond", "x-autoresponse"):
        if message.get(name) is not None:
            return f"{name} present"
    if message.get_content_type() == "multipart/report":
        return "delivery or read report"
    local_parts = {addr.split("@")[0].strip().lower()
                   for _, addr in getaddresses([_raw_header(message, "from") or ""]) if addr}
    if local_parts & BOUNCE_SENDERS:
        return f"sent by {sorted(local_parts & BOUNCE_SENDERS)[0]}"
    return None


def _message_id(message: EmailMessage, sender: str, subject: str, text: str) -> str:
    """The Message-ID; without one, a key from what does not change in transit (sender,
    Date, subject, text), so that the same mail through SMTP (CRLF) and a webhook (LF),
    or with one more Received: line, is still recognised as one."""
    ids = _ids(_header(message, "message-id"))
    if ids:
        return ids[0]
    stable = "\n".join([sender, one_line(_safe_header(message, "date")), subject,
                         " ".join(text.split())])
    return f"sha256-{hashlib.sha256(stable.encode()).hexdigest()}@sportello.invalid"


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


OTHER_WORDS = frozenset((  # French, Spanish, German: not Italian, so answered in English
    "je", "vous", "nous", "est", "les", "des", "une", "pour", "avec", "pas", "merci",
    "bonjour", "votre", "mon", "ne", "el", "los", "las", "es", "por", "gracias", "hola",
    "und", "ich", "nicht", "der", "die", "das", "ist", "mit", "danke",
))


def guess_language(text: str) -> str:
    """Italian or English from common words: enough to choose a notification template.
    Italian only when it outweighs both English and the other languages whose little
    words look Italian (French "la", "le", "de"); anything else is answered in English."""
    words = re.findall(r"\w+", text.lower())[:400]
    italian = sum(w in ITALIAN_WORDS for w in words)
    english = sum(w in ENGLISH_WORDS for w in words)
    other = sum(w in OTHER_WORDS for w in words)
    return "it" if italian > english and italian > other else "en"
