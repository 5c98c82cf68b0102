"""The requester portal under load: "my requests" pages per second and their p99 with
1,000 signed-in requesters over 10,000 tickets (ten each), and one request's page.

    .venv/bin/python bench/portal_bench.py [--tickets 10000] [--requesters 1000]
                                           [--browsers 50] [--seconds 15]

Intake, routing, SLA and the gateway run as real processes (as `make up` runs them). The
tickets come in through intake's API, ``--tickets / --requesters`` per requester. Every
requester then signs in as a person does: asks for a link, the link is mailed to a real
SMTP server (aiosmtpd, in this process), and the link is followed. Then, for
``--seconds`` each, ``--browsers`` concurrent clients in a loop pick a random requester
and load, with that requester's session cookie:

1. ``/portal/requests``: the open requests (the whole page as HTML, checked to list the
   requester's tickets and nobody else's);
2. ``/portal/requests/{number}``: one of the requester's tickets (record, conversation,
   time limit).

The report gives pages/s, p50 and p99 per phase, and CPU per page by process.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
from collections import defaultdict
from typing import Any

import aiohttp
import uvloop
from common import (
    BenchRun,
    CpuMeter,
    isolated_system,
    processes,
    until_quiet,
    write_report,
)
from gateway_bench import run_phase
from system_bench import AS_USERS_RUN_IT

from support.mailsink import MailSink, text_of
from support.portal import CSRF, LINK, token_of
from support.system import CHANNEL_KEYS
from support.wait import eventually

ROW = re.compile(r'<tr data-number="([^"]+)"')


def requester(n: int) -> str:
    return f"requester-{n}@example.it"


async def seed(system_url: str, tickets: int, requesters: int,
               concurrency: int = 32) -> dict[str, list[str]]:
    """``tickets`` tickets through intake's API, spread evenly over the requesters."""
    numbers: dict[str, list[str]] = defaultdict(list)
    counter = iter(range(tickets))
    started = time.perf_counter()
    async with aiohttp.ClientSession(
            base_url=system_url, headers={"X-Api-Key": CHANNEL_KEYS["api"]},
            connector=aiohttp.TCPConnector(limit=concurrency * 2)) as client:
        async def worker() -> None:
            for n in counter:
                email = requester(n % requesters)
                async with client.post("/tickets", json={
                    "requester": {"name": f"Requester {n % requesters}", "email": email},
                    "subject": f"The VPN drops every few minutes ({n})",
                    "description": "Since the update the VPN client disconnects.",
                    "channel": "api"}) as r:
                    assert r.status == 201, await r.text()
                    numbers[email].append((await r.json())["number"])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(f"seeded {tickets} tickets in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return numbers


async def sign_in_all(gateway_url: str, relay: MailSink, emails: list[str],
                      concurrency: int = 16) -> dict[str, str]:
    """Each requester's session cookie, got through the mailed link."""
    sessions: dict[str, str] = {}
    pending = iter(emails)
    links: dict[str, str] = {}
    read = 0

    def link_for(email: str) -> str | None:
        """Reads the relay's new messages once each (1,000 sign-ins, not 1,000 scans)."""
        nonlocal read
        arrived = relay.messages[read:]  # the SMTP server's thread appends meanwhile
        read += len(arrived)
        for message in arrived:
            found = LINK.search(text_of(message))
            if found:
                links[str(message["To"])] = found.group(0)
        return links.get(email)

    async with aiohttp.ClientSession(base_url=gateway_url,
                                     cookie_jar=aiohttp.DummyCookieJar()) as client:
        async def worker() -> None:
            for email in pending:
                async with client.get("/portal") as r:
                    page = await r.text()
                    form_cookie = r.cookies["sportello_portal_csrf"].value
                cookie = {"Cookie": f"sportello_portal_csrf={form_cookie}"}
                csrf = CSRF.search(page)
                assert csrf
                async with client.post("/portal/sign-in", headers=cookie, data={
                        "email": email, "csrf": csrf.group(1)}) as r:
                    assert r.status == 200, await r.text()

                async def mailed(email: str = email) -> str | None:
                    return link_for(email)

                link = await eventually(mailed, timeout=120, what=f"the link for {email}")
                async with client.post("/portal/link", headers=cookie, allow_redirects=False,
                                       data={"token": token_of(link),
                                             "csrf": csrf.group(1)}) as r:
                    assert r.status == 303, await r.text()
                    sessions[email] = r.cookies["sportello_portal"].value

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sessions


async def measure(run: BenchRun, args: argparse.Namespace, relay: MailSink) -> dict[str, Any]:
    system = run.system
    sla = await system.start("sla", **AS_USERS_RUN_IT)
    await system.start("routing", **AS_USERS_RUN_IT)
    intake = await system.start("intake", SLA_URL=sla.url, **AS_USERS_RUN_IT)
    gateway = await system.start(
        "gateway", SMTP_RELAY_URL=relay.url, PORTAL_LINKS_PER_CLIENT="1000000",
        PORTAL_RATE_PER_MINUTE="1000000", **AS_USERS_RUN_IT)
    started = time.perf_counter()
    numbers = await seed(intake.url, args.tickets, args.requesters)
    seeded_s = time.perf_counter() - started
    pids = processes(system, run.emulator)
    # Every service done with the seeding's events (SLA's clocks, intake's notices, the
    # gateway's lines) before anything is measured: they would share the cores otherwise.
    quiet_after_s = await until_quiet(pids, timeout_s=900)
    started = time.perf_counter()
    sessions = await sign_in_all(gateway.url, relay, sorted(numbers))
    signed_in_s = time.perf_counter() - started
    emails = sorted(sessions)
    await until_quiet(pids)
    connector = aiohttp.TCPConnector(limit=args.browsers * 2)
    results: dict[str, Any] = {}
    wrong: list[str] = []
    async with aiohttp.ClientSession(base_url=gateway.url, connector=connector,
                                     cookie_jar=aiohttp.DummyCookieJar(),
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        async def my_requests(_: int) -> bool:
            email = random.choice(emails)
            async with http.get("/portal/requests",
                                headers={"Cookie": f"sportello_portal={sessions[email]}"}) as r:
                page = await r.text()
            listed = set(ROW.findall(page))
            if r.status == 200 and listed != set(numbers[email]):
                wrong.append(email)
            return r.status == 200 and listed == set(numbers[email])

        async def one_request(_: int) -> bool:
            email = random.choice(emails)
            number = random.choice(numbers[email])
            async with http.get(f"/portal/requests/{number}",
                                headers={"Cookie": f"sportello_portal={sessions[email]}"}) as r:
                return r.status == 200 and number in await r.text()

        for name, one in (("my_requests", my_requests), ("one_request", one_request)):
            cpu = CpuMeter(pids)
            cpu.start()
            phase = await run_phase(args.browsers, args.seconds, one)
            cpu.stop()
            phase["pages_per_s"] = phase.pop("reads_per_s")
            phase["pages"] = phase.pop("reads")
            phase["cpu_ms_per_page"] = cpu.per_item_ms(phase["pages"] or 1)
            results[name] = phase
            await until_quiet(pids)
    return run.report(
        "portal_bench.py", tickets=args.tickets, requesters=len(sessions),
        browsers=args.browsers, seconds=args.seconds, seeded_s=round(seeded_s, 1),
        signed_in_s=round(signed_in_s, 1), quiet_after_s=quiet_after_s,
        lists_wrong=len(wrong), **results)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--requesters", type=int, default=1_000)
    parser.add_argument("--browsers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    with MailSink() as relay:
        async with isolated_system("sportello-portal-bench-") as run:
            report = await measure(run, args, relay)
    write_report("portal", report)
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
