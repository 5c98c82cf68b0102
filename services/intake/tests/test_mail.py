"""Reading inbound mail without a server: bodies, charsets, trimming, attachments,
threading keys, machine-written mail and the refusals."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from sportello_intake.doors.mail import (
    MailLimits,
    MailRejected,
    guess_language,
    html_to_text,
    read_mail,
    ticket_number_in,
    trim_quoted,
)

LIMITS = MailLimits(max_attachment_bytes=1024, max_attachments=2,
                    own_addresses=frozenset({"help@sportello.localhost"}))


def message(text: str = "La stampante non funziona.", **headers: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = headers.pop("From", "Mario Rossi <Mario.Rossi@Example.it>")
    m["To"] = "help@sportello.localhost"
    m["Subject"] = headers.pop("Subject", "Stampante")
    m["Message-ID"] = "<abc-1@example.it>"
    for name, value in headers.items():
        m[name.replace("_", "-")] = value
    m.set_content(text)
    return m


def test_a_plain_message_gives_sender_subject_text_and_ids() -> None:
    mail = read_mail(message(In_Reply_To="<n1@sportello>",
                             References="<n0@sportello> <n1@sportello>").as_bytes(),
                     limits=LIMITS)
    assert mail.sender_email == "mario.rossi@example.it"
    assert mail.sender_name == "Mario Rossi"
    assert mail.subject == "Stampante"
    assert mail.text == "La stampante non funziona."
    assert mail.message_id == "abc-1@example.it"
    assert mail.thread_ids == ("n1@sportello", "n1@sportello", "n0@sportello")
    assert mail.language == "it"
    assert mail.automatic is None


def test_latin1_quoted_printable_and_encoded_subject_are_decoded() -> None:
    raw = (b"From: =?iso-8859-1?q?Niccol=F2?= <nic@example.it>\r\n"
           b"Subject: =?utf-8?b?Q29tcHV0ZXIgbGVudG8gZSBwacO5IGNhbGRv?=\r\n"
           b"Content-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
           b"Il PC =E8 lento e non so perch=E9.\r\n")
    mail = read_mail(raw, limits=LIMITS)
    assert mail.sender_name == "Niccolò"
    assert mail.subject == "Computer lento e più caldo"
    assert mail.text == "Il PC è lento e non so perché."
    assert mail.message_id.startswith("sha256-")  # none given: stable for redeliveries


def test_html_only_mail_becomes_readable_text_without_quotes_or_scripts() -> None:
    m = message()
    m.set_content("<html><head><style>p{}</style></head><body><p>Il <b>monitor</b> "
                  "sfarfalla</p><script>alert(1)</script><blockquote>vecchio</blockquote>"
                  "</body></html>", subtype="html")
    assert read_mail(m.as_bytes(), limits=LIMITS).text == "Il\nmonitor\nsfarfalla"
    assert html_to_text("<p>a</p><p>b</p>") == "a\nb"


@pytest.mark.parametrize(("text", "expected"), [
    ("Ancora rotto.\n\nIl giorno lun 23 nov 2026 alle ore 10:00 Sportello "
     "<help@x.it> ha scritto:\n> vecchio\n", "Ancora rotto."),
    ("Still broken.\n\nOn Mon, Nov 23, 2026 at 10:00 AM Sportello <help@x.it> wrote:\n"
     "> old\n", "Still broken."),
    ("Just text, nothing quoted.", "Just text, nothing quoted."),
])
def test_quoted_history_is_trimmed_in_italian_and_english(text: str, expected: str) -> None:
    assert trim_quoted(text) == expected


def test_attachments_are_kept_with_name_and_type() -> None:
    m = message()
    m.add_attachment(b"%PDF-1.7 tiny", maintype="application", subtype="pdf",
                     filename="fattura è.pdf")
    [attachment] = read_mail(m.as_bytes(), limits=LIMITS).attachments
    assert attachment.filename == "fattura è.pdf"
    assert attachment.content_type == "application/pdf"
    assert attachment.content == b"%PDF-1.7 tiny"


def test_oversized_or_too_many_attachments_are_refused() -> None:
    big = message()
    big.add_attachment(b"x" * 2048, maintype="application", subtype="octet-stream",
                       filename="dump.bin")
    with pytest.raises(MailRejected) as refused:
        read_mail(big.as_bytes(), limits=LIMITS)
    assert refused.value.field == "attachments"
    many = message()
    for n in range(3):
        many.add_attachment(b"x", maintype="text", subtype="plain", filename=f"{n}.txt")
    with pytest.raises(MailRejected, match="at most 2"):
        read_mail(many.as_bytes(), limits=LIMITS)


@pytest.mark.parametrize(("raw", "field"), [
    (b"", "message"),
    (b"Subject: x\r\n\r\nno sender", "from"),
    (b"From: not an address\r\nSubject: x\r\n\r\nhi", "from"),
    (b"From: a@example.com\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nhi", "charset"),
    (b"From: a@example.com\r\nContent-Type: multipart/mixed\r\n\r\nno boundary", "mime"),
])
def test_unreadable_mail_is_refused_with_the_part_at_fault(raw: bytes, field: str) -> None:
    with pytest.raises(MailRejected) as refused:
        read_mail(raw, limits=LIMITS)
    assert refused.value.field == field


@pytest.mark.parametrize(("headers", "envelope", "reason"), [
    ({"Auto_Submitted": "auto-replied"}, None, "Auto-Submitted"),
    ({"Precedence": "bulk"}, None, "Precedence"),
    ({"X_Autoreply": "yes"}, None, "x-autoreply"),
    ({"From": "MAILER-DAEMON@mx.example.it"}, None, "mailer-daemon"),
    ({}, "<>", "bounce"),
    ({"From": "help@sportello.localhost"}, None, "help desk itself"),
])
def test_machine_written_mail_is_recognised(
    headers: dict[str, str], envelope: str | None, reason: str
) -> None:
    mail = read_mail(message(**headers).as_bytes(), limits=LIMITS, envelope_sender=envelope)
    assert mail.automatic is not None
    assert reason in mail.automatic


@pytest.mark.parametrize("sender", ["root@localhost", "someone@host.invalid"])
def test_a_sender_we_could_never_answer_is_refused(sender: str) -> None:
    with pytest.raises(MailRejected, match="cannot be answered") as refused:
        read_mail(message(From=sender).as_bytes(), limits=LIMITS)
    assert refused.value.field == "from"


def test_auto_submitted_no_is_a_person() -> None:
    mail = read_mail(message(Auto_Submitted="no").as_bytes(), limits=LIMITS)
    assert mail.automatic is None


def test_ticket_numbers_are_found_in_subjects() -> None:
    assert ticket_number_in("Re: R: [HD-2026-000042] Stampante") == "HD-2026-000042"
    assert ticket_number_in("HD-2026-000042 without brackets") is None


def test_language_guess() -> None:
    assert guess_language("Buongiorno, non riesco ad accedere alla posta") == "it"
    assert guess_language("Hello, I cannot access my mailbox") == "en"


def test_readable_text_beside_a_mime_defect_is_kept_with_a_note() -> None:
    """Issue 23: keep what can be read, and say what could not (it was refused before)."""
    mail = read_mail(b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n"
                     b"\r\n--b\r\nContent-Type: text/plain\r\n\r\ntruncated", limits=LIMITS)
    assert mail.text.startswith("truncated")
    assert "could not be read: CloseBoundaryNotFoundDefect" in mail.text
