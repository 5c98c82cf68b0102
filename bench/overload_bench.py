"""Overload: far more tickets offered than the system sustains, then the usual rate again.

Intake, routing and SLA start with `make up`'s settings (notices off: this measures the
doors and the pipeline behind them). Then, open loop (a request every 1/rate seconds,
whether or not the earlier ones were answered):

1. during: ``--rate`` tickets/s (default 150, five times the ~30/s the whole system
   sustains on the benchmark machine) for ``--seconds`` (60);
2. after: ``--after-rate`` (20/s) for ``--after-seconds`` (20), to see it recover alone.

For each phase: offered, accepted (201), refused (503/429, with Retry-After), failed
(timeouts, errors, anything else), and the p50/p99 answer time of the accepted and of the
refused, with how late the bench's own loop ran (its share of those times), and the same
counts and times for every five seconds of sending (``timeline``); the deepest routing
queue seen (sampled each second); finally, that every accepted ticket was assigned
(nothing taken is lost to the overload). Intake runs with its defaults, its admission
included; ``ADMISSION_*``, ``MAX_IN_FLIGHT_REQUESTS`` and ``MAX_LOOP_LAG_MS`` in the
bench's environment are passed to it, to try others.

    .venv/bin/python bench/overload_bench.py [--rate 150 --seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import uvloop
from common import BenchRun, isolated_system, percentile_ms, write_report
from system_bench import AS_USERS_RUN_IT

from sportello_intake.settings import IntakeSettings
from support.system import CHANNEL_KEYS
from support.tickets import ticket_body
from support.wait import eventually


class RawClient:
    """POSTs over plain sockets, one connection per request: an httpx client spent more
    CPU per request than intake, and at 150/s the bench itself became the queue."""

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.key = key

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bool]:
        """(status, Retry-After given); raises OSError or TimeoutError."""
        data = json.dumps(body).encode()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                         f"X-Api-Key: {self.key}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
                         .encode() + data)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            return status, b"\r\nretry-after:" in head.lower()
        finally:
            writer.close()


async def own_lateness(stop: asyncio.Event, interval_s: float = 0.05) -> list[float]:
    """How late the bench's own loop woke, every ``interval_s``: on two cores the bench
    shares the CPU with the system it loads, and an answer time includes the bench's own
    wait to read it."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    while not stop.is_set():
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        late.append(max(0.0, loop.time() - due))
    return late


async def offer(client: RawClient, rate: float, seconds: float) -> dict[str, Any]:
    # (outcome, seconds to the answer, Retry-After given, sent this long after the start)
    answers: list[tuple[str, float, bool, float]] = []
    stop = asyncio.Event()
    lateness = asyncio.create_task(own_lateness(stop))

    async def one(n: int) -> None:
        started = time.perf_counter()
        try:
            status, retry_after = await asyncio.wait_for(
                client.post("/tickets", ticket_body(n)), timeout=10)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            answers.append(("failed", time.perf_counter() - started, False, started - first))
            return
        took = time.perf_counter() - started
        if status == 201:
            answers.append(("accepted", took, False, started - first))
        elif status in (429, 503):
            answers.append(("refused", took, retry_after, started - first))
        else:
            answers.append(("failed", took, False, started - first))

    tasks = []
    first = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = first + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    took = time.perf_counter() - first
    stop.set()
    late = sorted(await lateness)

    def times(outcome: str, among: list[tuple[str, float, bool, float]] = answers,
              ) -> dict[str, float | None]:
        found = sorted(t for o, t, _, _ in among if o == outcome)
        if not found:
            return {"p50_ms": None, "p99_ms": None}
        return {"p50_ms": percentile_ms(found, 50), "p99_ms": percentile_ms(found, 99)}

    def timeline(step_s: int = 5) -> list[dict[str, Any]]:
        """Each ``step_s`` of sending: the admission steers once a second, and a p99 over
        the minute does not say whether the refusals were late throughout or for a while."""
        steps: dict[int, list[tuple[str, float, bool, float]]] = {}
        for answer in answers:
            steps.setdefault(int(answer[3] // step_s) * step_s, []).append(answer)
        return [{"from_s": at, "accepted": sum(a[0] == "accepted" for a in among),
                 "refused": sum(a[0] == "refused" for a in among),
                 "failed": sum(a[0] == "failed" for a in among),
                 "accepted_answer": times("accepted", among),
                 "refused_answer": times("refused", among)}
                for at, among in sorted(steps.items())]

    return {
        "offered": len(answers), "offered_per_s": rate, "seconds": round(took, 1),
        "accepted": sum(o == "accepted" for o, _, _, _ in answers),
        "refused": sum(o == "refused" for o, _, _, _ in answers),
        "refused_with_retry_after": sum(r for o, _, r, _ in answers if o == "refused"),
        "failed": sum(o == "failed" for o, _, _, _ in answers),
        "accepted_answer": times("accepted"), "refused_answer": times("refused"),
        "bench_loop_late": {"p50_ms": percentile_ms(late, 50), "p99_ms": percentile_ms(late, 99),
                            "max_ms": round(late[-1] * 1000, 1) if late else None},
        "timeline": timeline(),
    }


def tried(environment: Mapping[str, str]) -> dict[str, str]:
    """Intake's admission and shedding settings from the bench's environment, to try others
    than the defaults (``ADMISSION_TARGET_S=5 .venv/bin/python bench/overload_bench.py``)."""
    return {k: v for k, v in environment.items()
            if k.startswith(("ADMISSION_", "MAX_IN_FLIGHT", "MAX_LOOP_LAG"))}


async def deepest_queue(amqp_url: str, queue: str, stop: asyncio.Event) -> int:
    connection = await aio_pika.connect(amqp_url)
    deepest = 0
    try:
        channel = await connection.channel()
        while not stop.is_set():
            declared: Any = await channel.declare_queue(queue, passive=True)
            deepest = max(deepest, declared.declaration_result.message_count)
            with contextlib.suppress(TimeoutError):  # a second passed: sample again
                await asyncio.wait_for(stop.wait(), timeout=1)
    finally:
        await connection.close()
    return deepest


async def measure(run: BenchRun, args: argparse.Namespace) -> dict[str, Any]:
    system = run.system
    await system.start("sla", **AS_USERS_RUN_IT)
    await system.start("routing", **AS_USERS_RUN_IT)
    # The tests turn the admission off (FAST_TEST_SETTINGS); users have it on.
    as_users: dict[str, Any] = {
        "ADMISSION_TARGET_S": str(IntakeSettings.model_fields["admission_target_s"].default)}
    intake: dict[str, Any] = {**AS_USERS_RUN_IT, **as_users, **tried(os.environ)}
    await system.start("intake", **intake)
    stop = asyncio.Event()
    sampler = asyncio.create_task(deepest_queue(system.amqp_url,
                                                f"{system.namespace}.routing", stop))
    client = RawClient(system.services["intake"].url, CHANNEL_KEYS["web"])
    during = await offer(client, args.rate, args.seconds)
    after = await offer(client, args.after_rate, args.after_seconds)
    stop.set()
    deepest = await sampler
    accepted: int = during["accepted"] + after["accepted"]
    mongo = system.mongo()
    try:
        tickets = mongo[system.database("intake")]["tickets"]

        async def all_assigned() -> bool:
            assigned: int = await tickets.count_documents({"status": "assigned"})
            return assigned >= accepted

        await eventually(all_assigned, timeout=600, interval=1, what="accepted assigned")
        stored = await tickets.count_documents({})
        assigned = await tickets.count_documents({"status": "assigned"})
    finally:
        await mongo.close()
    return run.report("overload_bench.py", during=during, after=after,
                      deepest_routing_queue=deepest,
                      checks={"accepted": accepted, "stored": stored, "assigned": assigned,
                              "lost": accepted - assigned})


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--after-rate", type=float, default=20.0)
    parser.add_argument("--after-seconds", type=float, default=20.0)
    args = parser.parse_args()
    async with isolated_system("sportello-overload-bench-") as run:
        report = await measure(run, args)
    write_report("overload", report)
    return 0 if report["checks"]["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
