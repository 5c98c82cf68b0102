"""Generated hostile mail into both mail doors of a real intake: the SMTP listener and the
raw-MIME webhook. Broken MIME, deep nesting, huge headers, unknown charsets, abused
encoded-words, undecodable bodies: each must end as a ticket, a duplicate, a drop of
machine mail or a refusal naming why; never an HTTP 5xx, an SMTP 4xx (a bug of ours,
which the sender would retry for days) or a crash, and never a half-stored ticket.

The budget is ``FUZZ_MAIL_EXAMPLES`` messages (40 in CI, derandomized, so that a run is
repeatable); for a longer hunt::

    FUZZ_MAIL_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz_mail.py
"""

from __future__ import annotations

import asyncio
import os
import smtplib
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.mailin import SUPPORT
from support.system import CHANNEL_KEYS, System

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("FUZZ_MAIL_EXAMPLES", "40"))


def answered(code: int, reply: str) -> bool:
    """Taken (a ticket, a duplicate or a dropped automatic message), or refused for good
    with a reason (552 too big, 554 unreadable, 500 a line over SMTP's limit). A 4xx
    would make the sending server retry for days what can never succeed."""
    return code == 250 or (500 <= code < 600 and bool(reply.strip()))

CHARSETS = ["utf-8", "iso-8859-1", "windows-1252", "x-unknown", "utf-7", "", "utf-8'en'",
            "\u00e9t\u00e9", "koi8-r", "gb2312"]
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "binary", "x-uuencode", "bogus"]
text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200)
raw_bytes = st.binary(max_size=300)


@st.composite
def encoded_word(draw: st.DrawFn) -> str:
    """RFC 2047 words, well-formed or not: unknown charsets, bad base64, unterminated."""
    charset = draw(st.sampled_from(CHARSETS))
    kind = draw(st.sampled_from(["B", "Q", "X", "b"]))
    payload = draw(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/=_?%",
                           max_size=60))
    end = draw(st.sampled_from(["?=", "", "?", "?=?="]))
    return f"=?{charset}?{kind}?{payload}{end}"


def header_value() -> st.SearchStrategy[str]:
    return st.one_of(
        text.map(lambda t: t.replace("\r", " ").replace("\n", " ")),
        st.lists(encoded_word(), min_size=1, max_size=5).map(" ".join),
        st.integers(1_000, 120_000).map(lambda n: "x" * n),  # one huge header line
        st.just("=?utf-8?B?" + "QUFB" * 3000 + "?="),
    )


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(ENCODINGS))
    subtype = draw(st.sampled_from(["plain", "html", "calendar", "x-broken"]))
    body = draw(st.one_of(raw_bytes, text.map(lambda t: t.encode("utf-8"))))
    head = f"Content-Type: text/{subtype}; charset=\"{charset}\"\r\n" \
           f"Content-Transfer-Encoding: {encoding}\r\n"
    if draw(st.booleans()):
        head += f"Content-Disposition: attachment; filename=\"{draw(header_value())[:300]}\"\r\n"
    return head.encode("utf-8", "replace") + b"\r\n" + body


def multipart(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        boundary = draw(st.text(alphabet="abcXYZ0123456789'()+_,-./:=?", min_size=1,
                                max_size=70))
        parts = draw(st.lists(children, min_size=0, max_size=3))
        closing = draw(st.sampled_from([f"--{boundary}--", "", f"--{boundary}-", "--other--"]))
        used = boundary if draw(st.integers(0, 9)) else boundary + "x"  # now and then a lie
        kind = draw(st.sampled_from(["mixed", "alternative", "related", "digest", "signed"]))
        body = b"".join(f"--{used}\r\n".encode() + part + b"\r\n" for part in parts)
        return (f"Content-Type: multipart/{kind}; boundary=\"{boundary}\"\r\n\r\n".encode()
                + body + closing.encode())

    return build()


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """A chain of multiparts hundreds deep around one part."""
    depth = draw(st.integers(20, 400))
    inner = draw(leaf())
    for level in range(depth):
        inner = (f"Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n"
                 .encode() + inner + f"\r\n--b{level}--".encode())
    return inner


body_part = st.recursive(leaf(), multipart, max_leaves=8)


@st.composite
def hostile_mail(draw: st.DrawFn) -> bytes:
    headers = [
        ("From", draw(st.one_of(st.just("Anna <anna@example.com>"), header_value()))),
        ("To", SUPPORT),
        ("Subject", draw(header_value())),
        ("Message-ID", draw(st.one_of(st.just(""), header_value(),
                                      st.uuids().map(lambda u: f"<{u}@example.com>")))),
    ]
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["X-Junk", "Received", "Auto-Submitted", "In-Reply-To",
                                     "References", "Content-Language", "Reply-To"]))
        headers.append((name, draw(header_value())))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers if value)
    content = draw(st.one_of(body_part, nested(), raw_bytes))
    if not content.lower().startswith(b"content-type"):
        content = b"\r\n" + content  # no MIME headers of its own: a bare body
    return head.encode("utf-8", "surrogateescape") + content


def smtp_answer(port: int, raw: bytes) -> tuple[int, str]:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo()
            smtp.mail("relay@example.org", ["SMTPUTF8"] if not raw.isascii() else [])
            smtp.rcpt(SUPPORT)
            code, reply = smtp.data(raw)
            return code, reply.decode(errors="replace")
    except smtplib.SMTPDataError as exc:
        error = exc.smtp_error
        return exc.smtp_code, error.decode(errors="replace") if isinstance(error, bytes) \
            else str(error)


async def test_generated_hostile_mail_is_a_ticket_or_a_named_refusal_never_a_crash(
    system: System,
) -> None:
    intake = await system.start("intake")
    seen: list[dict[str, Any]] = []

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(raw=hostile_mail())
    def both_doors_hold(raw: bytes) -> None:
        code, reply = smtp_answer(intake.smtp_port, raw)
        assert answered(code, reply), (code, reply, raw[:300])
        posted = httpx.post(f"{intake.url}/channels/email/messages", content=raw, timeout=30,
                            headers={"X-Api-Key": CHANNEL_KEYS["email"]})
        assert posted.status_code < 500, (posted.status_code, posted.text, raw[:300])
        seen.append({"smtp": (code, reply), "webhook": posted.status_code})

    await asyncio.to_thread(both_doors_hold)
    assert intake.process is not None
    assert intake.process.poll() is None, intake.log_tail()  # still running
    assert len(seen) >= EXAMPLES // 2  # the budget was spent on mail, not on rejections

    created = {reply.split()[-1] for s in seen for code, reply in [s["smtp"]]
               if code == 250 and " created " in f" {reply} "}
    client = system.mongo()
    try:
        tickets = [t async for t in client[system.database("intake")]["tickets"].find({})]
    finally:
        await client.close()
    assert created <= {t["number"] for t in tickets}
    for ticket in tickets:  # whole, whatever came in: nothing half-stored
        assert ticket["subject"].strip(), ticket["number"]
        assert ticket["messages"], ticket["number"]
        assert ticket["history"][0]["kind"] == "created", ticket["number"]
        assert ticket["requester"]["name"] or ticket["requester"]["email"], ticket["number"]
        assert ticket["status"] == "new", ticket["number"]  # no routing runs here
