"""Intake's ingestion rates: e-mail through SMTP to a stored ticket, and the JSON API.

Starts its own isolated intake (MongoDB from MONGO_URL or the emulator, RabbitMQ
from AMQP_URL or the local broker) and feeds it real ticket texts read at run
time from ../shared/data/ticket-assignment-groups (never copied here):

1. e-mail: --messages messages over --connections concurrent SMTP sessions
   (each session sends many messages, as an MTA does); the rate counts from
   the first MAIL FROM to the moment the last ticket is in intake's store
   (a 250 is only answered after the store write, so "accepted" = "stored");
2. JSON: --messages tickets POSTed to /tickets by --connections clients.

    .venv/bin/python bench/mail_bench.py [--messages 2000 --connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import smtplib
import sys
import time
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from typing import Any

import httpx
from common import ROOT, isolated_system, write_report

from support.system import System

DATA = ROOT.parent / "shared" / "data" / "ticket-assignment-groups" / "train.csv"
SUPPORT = "help@sportello.localhost"


def ticket_texts(limit: int) -> list[tuple[str, str]]:
    """(subject, body) pairs from the public data set, cycled when we need more."""
    if not DATA.exists():
        sys.exit(f"{DATA} not found: the benchmark reads ../shared/data beside the repository")
    rows: list[tuple[str, str]] = []
    with DATA.open(encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f):
            subject = " ".join((row.get("Short description") or "").split())[:150]
            body = " ".join((row.get("Description") or "").split())[:4000]
            if subject and body:
                rows.append((subject, body))
            if len(rows) >= limit:
                break
    return [rows[n % len(rows)] for n in range(limit)]


def build_mail(n: int, subject: str, body: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"User {n} <user{n}@example.com>"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="bench.example.com")
    message.set_content(body)
    return message.as_bytes(policy=SMTP)


def smtp_session(port: int, mails: list[bytes]) -> tuple[int, int]:
    """One MTA connection delivering its share; returns (accepted, refused)."""
    accepted = refused = 0
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo()
        for raw in mails:
            smtp.mail("bench@example.com")
            smtp.rcpt(SUPPORT)
            code, _ = smtp.data(raw)
            if code == 250:
                accepted += 1
            else:
                refused += 1
    return accepted, refused


async def mail_phase(system: System, texts: list[tuple[str, str]], connections: int,
                     port: int) -> dict[str, Any]:
    mails = [build_mail(n, s, b) for n, (s, b) in enumerate(texts)]
    shares = [mails[i::connections] for i in range(connections)]
    started = time.perf_counter()
    results = await asyncio.gather(*(asyncio.to_thread(smtp_session, port, share)
                                     for share in shares))
    elapsed = time.perf_counter() - started
    accepted = sum(a for a, _ in results)
    mongo = system.mongo()
    stored = await mongo[system.database("intake")]["tickets"].count_documents(
        {"channel": "email"})
    await mongo.close()
    return {"messages": len(mails), "accepted_250": accepted,
            "refused": sum(r for _, r in results), "stored_tickets": stored,
            "seconds": round(elapsed, 2), "stored_per_s": round(stored / elapsed, 1)}


async def json_phase(system: System, texts: list[tuple[str, str]],
                     connections: int) -> dict[str, Any]:
    accepted = 0
    errors = 0
    work = iter(enumerate(texts))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted, errors
        for n, (subject, body) in work:
            response = await client.post("/tickets", json={
                "requester": {"name": f"User {n}", "email": f"user{n}@example.com"},
                "subject": subject, "description": body, "channel": "api"})
            if response.status_code == 201:
                accepted += 1
            else:
                errors += 1

    limits = httpx.Limits(max_connections=connections * 2)
    async with system.channel_client("api", limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {"tickets": len(texts), "accepted_201": accepted, "errors": errors,
            "seconds": round(elapsed, 2), "accepted_per_s": round(accepted / elapsed, 1)}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()

    texts = ticket_texts(args.messages)
    async with isolated_system("sportello-bench-") as run:
        intake = await run.system.start("intake", OUTBOX_SWEEP_INTERVAL_S="1",
                                        OUTBOX_STALE_AFTER_S="2", LOG_LEVEL="WARNING")
        mail = await mail_phase(run.system, texts, args.connections, intake.smtp_port)
        api = await json_phase(run.system, texts, args.connections)
        report = run.report("mail_bench.py", data=str(DATA.relative_to(ROOT.parent)),
                            email_smtp=mail, json_api=api)
    write_report("mail", report)
    ok = report["email_smtp"]["stored_tickets"] == report["email_smtp"]["accepted_250"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
