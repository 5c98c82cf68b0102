"""The operators' door under load: queue and workspace reads per second and their p99 with
50 signed-in users over 10,000 tickets, and what the gateway adds over calling the
services directly.

    .venv/bin/python bench/gateway_bench.py [--tickets 10000] [--users 50] [--seconds 15]

Intake, routing, SLA and the gateway run as real processes (as `make up` runs them); the
tickets come in through intake's API and wait in the L1 queue (the users are agents of
the L1 group with no free slot, so nothing is assigned away from the queue). Then, for
``--seconds`` each, every user in a loop:

1. reads the first page of its open queue (50 lines, most urgent first), then the next;
2. opens a random ticket's workspace (record, conversation, assignment, clocks);
3. the same workspace, read directly from the three services with the service token
   (what the gateway adds: sign-in check, visibility, the queue line, the fan-out).

The report gives reads/s, p50 and p99 per phase, and CPU per read by process.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
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
from intake_bench import intake_client, throughput
from system_bench import AS_USERS_RUN_IT

from support.system import ADMIN_PASSWORD, SERVICE_TOKEN, System
from support.wait import eventually

PASSWORD = secrets.token_urlsafe(18)


async def signed_in_users(system: System, users: int) -> list[str]:
    gateway = system.services["gateway"].url
    async with aiohttp.ClientSession(base_url=gateway) as client:
        async with client.post("/api/auth/login", json={"username": "admin",
                                                        "password": ADMIN_PASSWORD}) as r:
            admin = (await r.json())["access_token"]
        headers = {"Authorization": f"Bearer {admin}"}
        for n in range(users):
            async with client.post("/api/admin/users", headers=headers, json={
                "username": f"agent-{n}", "name": f"Agent {n}", "role": "agent",
                "level": "L1", "groups": ["service-desk"], "password": PASSWORD,
                "agent": {"capacity": 0}}) as r:
                assert r.status == 201, await r.text()
        tokens = []
        for n in range(users):
            async with client.post("/api/auth/login", json={"username": f"agent-{n}",
                                                            "password": PASSWORD}) as r:
                tokens.append((await r.json())["access_token"])
    return tokens


async def run_phase(users: int, seconds: float,
                    one: Callable[[int], Awaitable[bool]]) -> dict[str, Any]:
    """Every user calls ``one`` in a loop for ``seconds``; latencies of the good answers."""
    took: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def user(n: int) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            if await one(n):
                took.append(time.perf_counter() - started)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(user(n) for n in range(users)))
    elapsed = time.perf_counter() - started
    took.sort()
    return {"reads": len(took), "errors": errors, "reads_per_s": round(len(took) / elapsed, 1),
            "p50_ms": percentile_ms(took, 50), "p99_ms": percentile_ms(took, 99),
            "max_ms": percentile_ms(took, 100)}


async def measure(run: BenchRun, args: argparse.Namespace) -> dict[str, Any]:
    system = run.system
    sla = await system.start("sla", **AS_USERS_RUN_IT)
    await system.start("routing", **AS_USERS_RUN_IT)
    await system.start("intake", SLA_URL=sla.url, **AS_USERS_RUN_IT)
    gateway = await system.start("gateway", RATE_LIMIT_PER_MINUTE="1000000",
                                 RATE_LIMIT_BURST="100000", **AS_USERS_RUN_IT)
    tokens = await signed_in_users(system, args.users)

    async with intake_client(system, 32) as client:
        seeded = await throughput(client, args.tickets, 32)
    ids: list[str] = seeded.pop("ids")
    mongo = system.mongo()
    desk = mongo[system.database("gateway")]["desk"]

    async def all_queued() -> bool:
        return await desk.count_documents({"group_id": "service-desk",
                                           "priority": {"$ne": None}}) >= len(ids)

    await eventually(all_queued, timeout=900, interval=1.0, what="every ticket in the queue")
    numbers = [d["number"] async for d in desk.find({}, {"number": 1})]
    lines = {d["number"]: d["_id"] async for d in desk.find({}, {"number": 1})}
    await mongo.close()

    pids = processes(system, run.emulator)
    # Every service done with the seeding's events (SLA's clocks, intake's notices, the
    # gateway's lines) before reads are measured: they would share the cores otherwise.
    quiet_after_s = await until_quiet(pids, timeout_s=600)
    connector = aiohttp.TCPConnector(limit=args.users * 3)
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        auth = [{"Authorization": f"Bearer {t}"} for t in tokens]
        service = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
        urls = {name: s.url for name, s in system.services.items()}

        async def queue(n: int) -> bool:
            async with http.get(f"{gateway.url}/api/tickets", headers=auth[n],
                                params={"view": "open", "limit": "50"}) as r:
                if r.status != 200:
                    return False
                page = await r.json()
            if page["next"] and random.random() < 0.5:
                async with http.get(f"{gateway.url}/api/tickets", headers=auth[n],
                                    params={"view": "open", "limit": "50",
                                            "next": page["next"]}) as r:
                    return r.status == 200 and bool(await r.read())
            return len(page["items"]) == 50

        async def workspace(n: int) -> bool:
            number = random.choice(numbers)
            async with http.get(f"{gateway.url}/api/tickets/{number}", headers=auth[n]) as r:
                body = await r.json()
                return r.status == 200 and not body["unavailable"]

        refused: Counter[str] = Counter()

        async def direct(n: int) -> bool:
            number = random.choice(numbers)
            ticket_id = lines[number]

            async def get(url: str) -> bool:
                async with http.get(url, headers=service) as r:
                    await r.read()
                    if r.status != 200:
                        refused[f"{url.split('/')[2]} {r.status}"] += 1
                    return r.status == 200

            answers = await asyncio.gather(
                get(f"{urls['intake']}/tickets/{number}"),
                get(f"{urls['routing']}/assignments/{ticket_id}"),
                get(f"{urls['sla']}/tickets/{ticket_id}/sla"))
            return all(answers)

        async def direct_queue(n: int) -> bool:
            async with http.get(f"{urls['routing']}/queues", headers=service,
                                params={"group_id": "service-desk", "limit": "50"}) as r:
                return r.status == 200 and len(await r.json()) == 50

        for name, one in (("queue", queue), ("workspace", workspace),
                          ("workspace_direct", direct), ("queue_direct_routing", direct_queue)):
            cpu = CpuMeter(pids)
            cpu.start()
            phase = await run_phase(args.users, args.seconds, one)
            cpu.stop()
            phase["cpu_ms_per_read"] = cpu.per_item_ms(phase["reads"] or 1)
            results[name] = phase
            phase["quiet_after_s"] = await until_quiet(pids)
        results["workspace_direct"]["refused_by"] = dict(refused)

    gw, direct_ws = results["workspace"], results["workspace_direct"]
    return run.report(
        "gateway_bench.py", tickets=len(ids), users=args.users, seconds=args.seconds,
        seeded_per_s=seeded["accepted_per_s"], quiet_after_s=quiet_after_s, **results,
        gateway_adds={
            "workspace_p50_ms": round(gw["p50_ms"] - direct_ws["p50_ms"], 1),
            "workspace_p99_ms": round(gw["p99_ms"] - direct_ws["p99_ms"], 1),
            "gateway_cpu_ms_per_workspace": gw["cpu_ms_per_read"].get("gateway"),
        })


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    async with isolated_system("sportello-gateway-bench-") as run:
        report = await measure(run, args)
    write_report("gateway", report)
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
