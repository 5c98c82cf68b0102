"""The mail catcher as `make up` runs it: a real process, real SMTP, one line a message."""

from __future__ import annotations

import mailbox
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from sportello_mailcatcher.__main__ import one_line
from support.proxy import free_port


def test_one_line_decodes_the_subject_and_names_the_recipients() -> None:
    raw = (b"From: help@x\r\nTo: a@b\r\nSubject: =?utf-8?q?Richiesta_ricevuta_=C3=A8?=\r\n"
           b"\r\nbody\r\n")
    assert one_line(raw, ["a@b", "c@d"]) == "to a@b, c@d: Richiesta ricevuta è"


def test_a_long_subject_folded_over_lines_comes_back_whole() -> None:
    subject = "[HD-2026-000042] Richiesta ricevuta: la stampante del terzo piano è " * 3
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "help@x", "a@b", subject
    message.set_content("body")
    raw = message.as_bytes(policy=SMTP)
    assert b"\r\n " in raw.split(b"\r\n\r\n")[0]  # folded, as relays see it
    assert one_line(raw, ["a@b"]) == f"to a@b: {' '.join(subject.split())}"


def test_a_running_catcher_prints_each_message_and_keeps_it(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "sportello_mailcatcher", "--port", str(port),
             "--maildir", str(tmp_path / "mail")], stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "mail catcher on" not in out.read_text():
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        message = EmailMessage()
        message["From"] = "help@sportello.localhost"
        message["To"] = "anna@example.com"
        message["Subject"] = "[HD-2026-000001] We received your request"
        message.set_content("Time limit: tomorrow.")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(message)
        while "HD-2026-000001" not in out.read_text():
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
    assert "to anna@example.com: [HD-2026-000001] We received your request" in out.read_text()
    [kept] = list(mailbox.Maildir(tmp_path / "mail"))
    assert "Time limit: tomorrow." in kept.get_payload()
