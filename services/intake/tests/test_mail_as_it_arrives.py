"""Mail as it really arrives (issue 23), read without a server: real messages from
CPython's e-mail tests and a few of ours (see fixtures/mail/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sportello_intake.doors.mail import MailLimits, read_mail

FIXTURES = Path(__file__).parent / "fixtures" / "mail"
LIMITS = MailLimits(max_attachment_bytes=1024 * 1024, max_attachments=10,
                    own_addresses=frozenset({"help@sportello.localhost"}))


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_a_line_break_in_the_subject_is_stored_on_one_line() -> None:
    mail = read_mail(fixture("ours-newline-subject.eml"), limits=LIMITS)
    assert "\n" not in mail.subject
    assert mail.subject == "Bad subject Bcc: injected@example.com"


def test_a_forwarded_message_keeps_its_text_marked_and_travels_as_an_attachment() -> None:
    mail = read_mail(fixture("cpython-msg_46.eml"), limits=LIMITS)  # a GroupWise forward
    assert mail.text.startswith("---------- Forwarded message ----------")
    assert 'From: "Dr. Sender" <sender@example.net>' in mail.text
    assert "Testing email forwarding with Groupwise 1.2.2010" in mail.text
    [forwarded] = mail.attachments
    assert (forwarded.filename, forwarded.content_type) == (
        "GroupwiseForwardingTest.eml", "message/rfc822")
    assert b"Testing email forwarding" in forwarded.content


def test_mail_without_a_message_id_is_the_same_mail_after_transit() -> None:
    original = fixture("ours-no-message-id.eml")
    as_the_webhook_gets_it = original.replace(b"\r\n", b"\n")
    one_more_hop = (b"Received: from relay.example.com by mx.sportello; Mon, 30 Nov 2026\r\n"
                    + original)
    keys = {read_mail(raw, limits=LIMITS).message_id
            for raw in (original, as_the_webhook_gets_it, one_more_hop)}
    assert len(keys) == 1
    other = original.replace(b"flickers after lunch", b"flickers after dinner")
    assert read_mail(other, limits=LIMITS).message_id not in keys


def test_nested_multiparts_give_each_leaf_with_its_own_name_and_type() -> None:
    mail = read_mail(fixture("cpython-msg_13.eml"), limits=LIMITS)
    assert mail.text == "A text/plain part"
    kinds = [(a.filename, a.content_type) for a in mail.attachments]
    assert ("dingusfish.gif", "image/gif") in kinds
    assert all(not t.startswith("multipart/") for _, t in kinds)
    assert all(a.content.strip() for a in mail.attachments)  # no empty parts kept


@pytest.mark.parametrize(("name", "why"), [
    ("cpython-msg_16.eml", "Precedence: bulk"),
    ("cpython-msg_25.eml", "Auto-Submitted: auto-generated (failure)"),
    ("cpython-msg_43.eml", "delivery or read report"),
])
def test_bounces_are_recognised_before_anything_could_refuse_them(name: str, why: str) -> None:
    assert read_mail(fixture(name), limits=LIMITS).automatic == why


def test_a_bounce_with_broken_mime_and_no_sender_is_still_just_a_bounce() -> None:
    broken = (b"From: MAILER-DAEMON\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
              b"--b\r\nContent-Type: text/plain\r\n\r\nundeliverable")
    assert read_mail(broken, limits=LIMITS, envelope_sender="").automatic == (
        "null envelope sender (a bounce)")
    assert read_mail(broken, limits=LIMITS).automatic == "sent by mailer-daemon"


def test_an_internationalised_sender_is_accepted() -> None:
    mail = read_mail(fixture("ours-international-sender.eml"), limits=LIMITS)
    assert (mail.sender_name, mail.sender_email) == ("Páolo", "főo@bar.com")


def test_a_comment_style_sender_keeps_the_name() -> None:
    mail = read_mail(fixture("cpython-msg_01.eml"), limits=LIMITS)
    assert (mail.sender_name, mail.sender_email) == ("John X. Doe", "bbb@ddd.com")


def test_french_is_answered_in_english_not_taken_for_italian() -> None:
    assert read_mail(fixture("ours-french.eml"), limits=LIMITS).language == "en"
    assert read_mail(fixture("ours-international-sender.eml"), limits=LIMITS).language == "it"


def test_a_reused_boundary_keeps_what_can_be_read_and_says_what_could_not() -> None:
    mail = read_mail(fixture("cpython-msg_15.eml"), limits=LIMITS)  # Outlook Express, Mac
    assert mail.text.startswith("Some removed test.")
    assert "could not be read: StartBoundaryNotFoundDefect" in mail.text
