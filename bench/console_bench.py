"""The operators' console: how soon the queue and the workspace are on screen with 10,000
tickets, and how many open consoles one gateway keeps live.

    .venv/bin/python bench/console_bench.py [--tickets 10000] [--loads 10]
        [--consoles 50,200,500] [--rate 5] [--seconds 20]

Intake, routing, SLA and the gateway run as real processes; the tickets come in through
intake's API and wait in the L1 queue (the agents have no free slot). Then:

1. first paint: headless Chromium (Debian's, through Playwright), signed in as an L1
   agent, loads the queue (``#/queue``) and a random ticket's workspace (``#/ticket/N``)
   ``--loads`` times each; the time from navigation to the first row of the queue, or
   the first message of the conversation, on screen;
2. live: for each number of open consoles in ``--consoles``, that many live streams
   (Server-Sent Events, spread over 20 agents of the L1 group) while tickets arrive at
   ``--rate`` per second for ``--seconds``: the time from each ticket's POST to its
   assignment reaching every console, and the gateway's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import sys
import time
from typing import Any

import aiohttp
import uvloop
from common import (
    BenchRun,
    CpuMeter,
    isolated_system,
    percentile_ms,
    processes,
    until_quiet,
    write_report,
)
from intake_bench import body as ticket_body
from intake_bench import intake_client, throughput
from system_bench import AS_USERS_RUN_IT

from support.browser import chromium_path
from support.system import ADMIN_PASSWORD, System
from support.wait import eventually

PASSWORD = secrets.token_urlsafe(18)
AGENTS = 20


async def add_agents(system: System) -> list[str]:
    """Twenty L1 agents with no free slot; their access tokens."""
    async with aiohttp.ClientSession(base_url=system.services["gateway"].url) as client:
        async with client.post("/api/auth/login", json={"username": "admin",
                                                        "password": ADMIN_PASSWORD}) as r:
            headers = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
        tokens = []
        for n in range(AGENTS):
            async with client.post("/api/admin/users", headers=headers, json={
                "username": f"agent-{n}", "name": f"Agent {n}", "role": "agent",
                "level": "L1", "groups": ["service-desk"], "password": PASSWORD,
                "agent": {"capacity": 0}}) as r:
                assert r.status == 201, await r.text()
            async with client.post("/api/auth/login", json={"username": f"agent-{n}",
                                                            "password": PASSWORD}) as r:
                tokens.append((await r.json())["access_token"])
    return tokens


async def first_paints(url: str, numbers: list[str], loads: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    path = chromium_path()
    assert path is not None, "no Chromium: deploy/local/ensure-chromium.sh installs it"
    timings: dict[str, list[float]] = {"queue": [], "workspace": []}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await page.goto(url)
        await page.fill("#username", "agent-0")
        await page.fill("#password", PASSWORD)
        await page.click("#signin-form button[type=submit]")
        await page.wait_for_selector("#queue tbody tr", timeout=60_000)
        for _ in range(loads):
            for name, hash_, ready in (
                    ("queue", "#/queue?view=open", "#queue tbody tr"),
                    ("workspace", f"#/ticket/{random.choice(numbers)}",
                     "#conversation article")):
                await page.goto("about:blank")
                started = time.perf_counter()
                await page.goto(f"{url}/{hash_}")
                await page.wait_for_selector(ready, timeout=60_000)
                timings[name].append(time.perf_counter() - started)
        await browser.close()
    return {name: {"loads": len(values), "median_ms": round(statistics.median(values) * 1000, 1),
                   "p90_ms": percentile_ms(sorted(values), 90),
                   "max_ms": percentile_ms(sorted(values), 100)}
            for name, values in timings.items()}


async def live(system: System, tokens: list[str], consoles: int, rate: float,
               seconds: float, pids: dict[str, int]) -> dict[str, Any]:
    """``consoles`` open streams; tickets at ``rate``; POST-to-every-console latency."""
    gateway = system.services["gateway"].url
    heard: dict[str, list[float]] = {}
    connected = 0
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=consoles + 50),
                                    timeout=aiohttp.ClientTimeout(total=None))

    async def console(n: int) -> None:
        nonlocal connected
        headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}"}
        async with session.get(f"{gateway}/api/stream", headers=headers) as response:
            kind = ""
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith(": connected"):
                    connected += 1
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "ticket.assigned":
                    number = json.loads(line[6:]).get("number")
                    if number:
                        heard.setdefault(number, []).append(time.perf_counter())

    streams = [asyncio.create_task(console(n)) for n in range(consoles)]
    await eventually(lambda: _now(connected >= consoles), timeout=120,
                     what=f"{consoles} consoles connected")
    sent: dict[str, float] = {}
    cpu = CpuMeter(pids)
    cpu.start()
    async with intake_client(system, 8) as client:
        started = time.perf_counter()
        total = int(rate * seconds)
        for n in range(total):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            at = time.perf_counter()
            async with client.post("/tickets", json=ticket_body(100_000 + n)) as response:
                sent[(await response.json())["number"]] = at

        async def everyone_heard() -> bool:
            return all(len(heard.get(number, [])) >= consoles for number in sent)

        await eventually(everyone_heard, timeout=120, interval=0.2,
                         what="every assignment on every console")
    cpu.stop()
    for task in streams:
        task.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    await session.close()
    delays = sorted(t - sent[number] for number, times in heard.items() if number in sent
                    for t in times)
    return {"consoles": consoles, "tickets": len(sent), "deliveries": len(delays),
            "p50_ms": percentile_ms(delays, 50), "p99_ms": percentile_ms(delays, 99),
            "max_ms": percentile_ms(delays, 100),
            "cpu_ms_per_ticket": cpu.per_item_ms(len(sent))}


async def _now(value: bool) -> bool:
    return value


async def measure(run: BenchRun, args: argparse.Namespace) -> dict[str, Any]:
    system = run.system
    sla = await system.start("sla", **AS_USERS_RUN_IT)
    await system.start("routing", **AS_USERS_RUN_IT)
    await system.start("intake", SLA_URL=sla.url, **AS_USERS_RUN_IT)
    gateway = await system.start("gateway", RATE_LIMIT_PER_MINUTE="1000000",
                                 RATE_LIMIT_BURST="100000", **AS_USERS_RUN_IT)
    tokens = await add_agents(system)
    async with intake_client(system, 32) as client:
        seeded = await throughput(client, args.tickets, 32)
    mongo = system.mongo()
    desk = mongo[system.database("gateway")]["desk"]

    async def all_queued() -> bool:
        queued: int = await desk.count_documents({"priority": {"$ne": None}})
        return queued >= int(seeded["accepted"])

    await eventually(all_queued, timeout=900, interval=1.0, what="every ticket queued")
    numbers = [d["number"] async for d in desk.find({}, {"number": 1})]
    await mongo.close()
    pids = processes(system, run.emulator)
    await until_quiet(pids, timeout_s=600)
    paints = await first_paints(gateway.url, numbers, args.loads)
    await until_quiet(pids)
    lives = []
    for consoles in args.consoles:
        lives.append(await live(system, tokens, consoles, args.rate, args.seconds, pids))
        await until_quiet(pids)
    return run.report("console_bench.py", tickets=seeded["accepted"], first_paint=paints,
                      live=lives)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--consoles", type=lambda v: [int(x) for x in v.split(",")],
                        default=[50, 200, 500])
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    async with isolated_system("sportello-console-bench-") as run:
        report = await measure(run, args)
    write_report("console", report)
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
