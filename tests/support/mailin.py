"""Mail into intake's SMTP listener, as a relay hands it over."""

from __future__ import annotations

import asyncio
import smtplib

SUPPORT = "help@sportello.localhost"


async def smtp_send(port: int, raw: bytes, sender: str = "relay@example.org") -> tuple[int, str]:
    """The listener's answer to DATA (code and text), whatever it is; SMTPUTF8 is asked
    for when the headers are not ASCII."""

    def send() -> tuple[int, str]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo()
            options = ["SMTPUTF8"] if any(b > 127 for b in raw.split(b"\r\n\r\n")[0]) else []
            smtp.mail(sender, options)
            smtp.rcpt(SUPPORT)
            code, reply = smtp.data(raw)
            return code, reply.decode(errors="replace")

    try:
        return await asyncio.to_thread(send)
    except smtplib.SMTPDataError as exc:
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        return exc.smtp_code, text
