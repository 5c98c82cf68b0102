"""The inbound SMTP listener: the support address's mail, straight into the desk.

aiosmtpd speaks the protocol on intake's own event loop, so a message is
answered ``250`` only after its ticket (or its place in a ticket) is stored:
the sending server keeps it and retries on anything else. Machine-written
mail is accepted and dropped (refusing it would bounce, and bounces loop).
"""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client import Counter
from pymongo.errors import PyMongoError

from sportello_intake.doors.mail import MailLimits, MailRejected, read_mail
from sportello_intake.service import Desk
from sportello_runtime.concurrency import ConcurrencyConflict

log = logging.getLogger(__name__)
logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP line at INFO


class SupportMailbox:
    """aiosmtpd handler: accepts mail for the support addresses only (never a relay)."""

    def __init__(self, desk: Desk, limits: MailLimits, addresses: list[str],
                 refused: Counter) -> None:
        self.desk = desk
        self.limits = limits
        self.addresses = {a.lower() for a in addresses}
        self.refused = refused

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        """While the desk is behind, refused before the message is even sent: the sender's
        server keeps it and tries again later."""
        if self.desk.refuses_more():
            return "451 4.3.2 the help desk is busy, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.lower() not in self.addresses:
            return "550 5.1.1 not a support address here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        try:
            mail = read_mail(raw, limits=self.limits, envelope_sender=envelope.mail_from)
            outcome = await self.desk.take_mail(mail)
        except MailRejected as exc:
            self.refused.labels(exc.field).inc()
            log.info("refused mail from %s: %s", envelope.mail_from, exc.reason)
            return f"554 5.6.0 {exc.reason[:200]}"
        except (PyMongoError, ConcurrencyConflict, OSError) as exc:
            log.warning("could not store mail from %s: %s", envelope.mail_from, exc)
            return "451 4.3.0 temporary failure, try again later"
        except Exception:  # a bug of ours: the sender keeps the message and retries
            log.exception("unexpected failure storing mail from %s", envelope.mail_from)
            return "451 4.3.0 temporary failure, try again later"
        if outcome is None:
            return "250 2.0.0 accepted (automatic message: no ticket, no reply)"
        return f"250 2.0.0 {outcome.action} {outcome.ticket.number}"


async def serve_smtp(mailbox: SupportMailbox, host: str, port: int, max_bytes: int) -> None:
    """Run the listener until cancelled (the app's shutdown)."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(mailbox, data_size_limit=max_bytes, enable_SMTPUTF8=True,
                     hostname="sportello", ident="Sportello intake", timeout=60),
        host=host, port=port,
    )
    log.info("SMTP listener on %s:%s", host, port)
    try:
        await server.serve_forever()
    finally:
        server.close()
        await server.wait_closed()
