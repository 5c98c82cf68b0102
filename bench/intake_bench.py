"""Intake -> routing benchmark: accepted tickets/s, and POST-to-assigned latency at a fixed rate.

Starts its own isolated Sportello (MongoDB from MONGO_URL or the emulator
process, RabbitMQ from AMQP_URL or the local broker, intake and routing as
uvicorn processes), then:

1. throughput: posts --tickets tickets with --concurrency clients as fast as
   they are accepted (201) and reports accepted tickets/s;
2. latency: posts --latency-tickets tickets open-loop at --rate tickets/s and
   measures, per ticket, the time from sending the POST to the moment the
   ``ticket.status_changed -> assigned`` event reaches the bench;
3. checks zero loss: every accepted ticket is assigned in intake's store.

    .venv/bin/python bench/intake_bench.py [--tickets 3000 --concurrency 32 --rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import aio_pika
import httpx
from common import BenchRun, CpuMeter, isolated_system, percentile_ms, processes, write_report

from support.wait import eventually


def body(n: int) -> dict[str, Any]:
    return {
        "requester": {"name": f"Bench User {n}", "email": f"user{n}@example.com"},
        "subject": f"Cannot reach the file server ({n})",
        "description": "Mapped drive S: is disconnected since this morning.",
        "channel": "api",
    }


class AssignedWatcher:
    """Records when each ticket's 'assigned' status change reaches the bench."""

    def __init__(self, amqp_url: str, namespace: str) -> None:
        self.amqp_url = amqp_url
        self.namespace = namespace
        self.assigned_at: dict[str, float] = {}
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self.amqp_url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=500)
        exchange = await channel.declare_exchange(
            f"{self.namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, "ticket.status_changed")
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = json.loads(message.body)
        if event["payload"]["to_status"] == "assigned":
            self.assigned_at.setdefault(event["ticket_id"], time.perf_counter())

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


async def throughput(client: httpx.AsyncClient, total: int, concurrency: int) -> dict[str, Any]:
    accepted: list[str] = []
    errors = 0
    counter = iter(range(total))

    async def worker() -> None:
        nonlocal errors
        for n in counter:
            response = await client.post("/tickets", json=body(n))
            if response.status_code == 201:
                accepted.append(response.json()["id"])
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"posted": total, "accepted": len(accepted), "errors": errors,
            "seconds": round(elapsed, 2), "accepted_per_s": round(len(accepted) / elapsed, 1),
            "ids": accepted}


async def latency(client: httpx.AsyncClient, watcher: AssignedWatcher, total: int,
                  rate: float) -> dict[str, Any]:
    sent_at: dict[str, float] = {}
    errors = 0

    async def one(n: int) -> None:
        nonlocal errors
        started = time.perf_counter()
        response = await client.post("/tickets", json=body(n))
        if response.status_code == 201:
            sent_at[response.json()["id"]] = started
        else:
            errors += 1

    tasks = []
    t0 = time.perf_counter()
    for n in range(total):  # open loop: the schedule does not wait for answers
        delay = t0 + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    offered = total / (time.perf_counter() - t0)
    await asyncio.gather(*tasks)

    async def all_seen() -> bool:
        return all(t in watcher.assigned_at for t in sent_at)

    await eventually(all_seen, timeout=120, interval=0.2, what="every ticket assigned")
    samples = sorted(watcher.assigned_at[t] - s for t, s in sent_at.items())
    return {"offered_per_s": round(offered, 1), "tickets": len(samples), "errors": errors,
            "p50_ms": percentile_ms(samples, 50), "p95_ms": percentile_ms(samples, 95),
            "p99_ms": percentile_ms(samples, 99), "max_ms": percentile_ms(samples, 100),
            "mean_ms": round(statistics.fmean(samples) * 1000, 1), "ids": list(sent_at)}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--latency-tickets", type=int, default=1500)
    args = parser.parse_args()

    async with isolated_system("sportello-bench-") as run:
        report = await measure(run, args)
    write_report("intake", report)
    return 0 if report["loss_check"]["lost"] == 0 else 1


async def measure(run: BenchRun, args: argparse.Namespace) -> dict[str, Any]:
    system = run.system
    watcher = AssignedWatcher(system.amqp_url, system.namespace)
    try:
        await system.start("intake", OUTBOX_SWEEP_INTERVAL_S="1", OUTBOX_STALE_AFTER_S="2")
        await system.start("routing", OUTBOX_SWEEP_INTERVAL_S="1", OUTBOX_STALE_AFTER_S="2")
        await watcher.start()
        limits = httpx.Limits(max_connections=args.concurrency * 2)
        meter = CpuMeter(processes(system, run.emulator))
        async with system.channel_client("api", limits=limits, timeout=60) as client:
            meter.start()
            tp = await throughput(client, args.tickets, args.concurrency)

            async def drained() -> bool:
                return all(t in watcher.assigned_at for t in tp["ids"])

            drain_start = time.perf_counter()
            await eventually(drained, timeout=600, interval=0.2, what="throughput phase assigned")
            tp["all_assigned_after_s"] = round(time.perf_counter() - drain_start, 2)
            meter.stop()
            tp["cpu_ms_per_ticket"] = meter.per_item_ms(tp["accepted"])
            lat = await latency(client, watcher, args.latency_tickets, args.rate)

        mongo = system.mongo()
        tickets = mongo[system.database("intake")]["tickets"]
        expected = set(tp.pop("ids")) | set(lat.pop("ids"))
        stored_assigned = await tickets.count_documents({"status": "assigned"})
        pending = await tickets.count_documents({"outbox.0": {"$exists": True}})
        await mongo.close()
        return run.report(
            "intake_bench.py",
            throughput=tp,
            latency_at_rate=lat,
            loss_check={"accepted": len(expected), "assigned_in_store": stored_assigned,
                        "outbox_entries_left": pending, "lost": len(expected) - stored_assigned},
        )
    finally:
        await watcher.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
