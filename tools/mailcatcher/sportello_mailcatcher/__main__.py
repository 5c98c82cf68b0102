"""``python -m sportello_mailcatcher --port 1025 [--maildir .run/mail]``

Takes every message (it relays nothing), prints one line for it
(``to <address>: <subject>``) and, with ``--maildir``, keeps it whole in a
Maildir any mail client can open. aiosmtpd's own Debugging handler printed
every header and body line, which at a few hundred notices a second cost a
sizeable share of the machine and buried the services' logs.
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import signal
import sys
import time
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import uvloop
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

HEADERS = BytesHeaderParser(policy=compat32)


def one_line(raw: bytes, recipients: list[str]) -> str:
    """``to a@b, c@d: <decoded subject>``: what a person watching `make up` wants to see.
    Headers only, as plain strings (compat32): the default policy's header objects cost
    this process most of its CPU, for one header."""
    headers = HEADERS.parsebytes(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    subject = str(make_header(decode_header(str(headers.get("Subject", "") or ""))))
    return f"to {', '.join(recipients)}: {' '.join(subject.split())}"


class Catcher:
    def __init__(self, maildir: Path | None) -> None:
        self.box = mailbox.Maildir(maildir, create=True) if maildir else None
        self.count = 0

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        """Offers PIPELINING, as the relays it stands in for do (Postfix, Exim): aiosmtpd
        answers commands in order whether they come one at a time or together."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        recipients = [str(r) for r in envelope.rcpt_tos]
        if self.box is not None:
            self.box.add(mailbox.MaildirMessage(raw))
        self.count += 1
        print(f"{time.strftime('%H:%M:%S')} {one_line(raw, recipients)}", flush=True)
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--maildir", type=Path, default=None)
    args = parser.parse_args()
    # uvloop, as the services run: a sixth less CPU a message than asyncio's own loop.
    controller = Controller(Catcher(args.maildir), hostname=args.host, port=args.port,
                            loop=uvloop.new_event_loop())
    controller.start()
    print(f"mail catcher on smtp://{args.host}:{args.port}"
          + (f", keeping messages in {args.maildir}" if args.maildir else ""), flush=True)
    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
