"""SLA timer engine under 100,000 active clocks: lag from due time to emission, idle CPU.

Starts its own SLA service (MongoDB from MONGO_URL or the emulator process,
RabbitMQ from AMQP_URL or the local broker), stores --clocks running clocks
through the service's own store mapping (most due hours from now, --due of
them falling due over the next --window seconds), then:

1. lag: for every clock that falls due, the time from its due instant to the
   moment its ``sla.breached`` event reaches the bench (p50, p95, p99, max);
2. idle: CPU used by the SLA process (and the MongoDB process, when it is the
   emulator) over --idle seconds while nothing is due, the timer still ticking.

    .venv/bin/python bench/sla_bench.py [--clocks 100000 --due 2000 --window 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
from common import BenchRun, CpuMeter, isolated_system, percentile_ms, processes, write_report

from sportello_contracts.enums import Priority, SlaMetric, SupportLevel
from sportello_sla import domain
from sportello_sla.defaults import DEFAULT_POLICY, ROUND_THE_CLOCK
from sportello_sla.store import clock_document
from support.wait import eventually


def clock_doc(n: int, due: datetime, *, now: datetime) -> dict[str, Any]:
    """A running L1 time-box clock (24x7) whose breach falls at ``due``, warnings already
    sent, stored exactly as the service stores its clocks."""
    target = 20 * 60
    clock = domain.start_clock(
        f"bench-{n}:level_time_box:L1:1", ticket_id=f"bench-{n}",
        metric=SlaMetric.LEVEL_TIME_BOX, priority=Priority.P1, policy=DEFAULT_POLICY,
        started_at=due - timedelta(seconds=target), level=SupportLevel.L1,
    )
    assert clock is not None
    warned = tuple(t for t in clock.thresholds
                   if due - timedelta(seconds=target * (1 - t / 100)) <= now)
    clock = domain.Clock(**{**clock.__dict__, "warned": warned})
    return {**clock_document(clock), "next_fire_at": domain.next_fire_at(clock, ROUND_THE_CLOCK),
            "lease_owner": None, "lease_until": None, "outbox": [], "outbox_pending_at": None}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clocks", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=2_000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--idle", type=float, default=30.0)
    args = parser.parse_args()

    async with isolated_system("sportello-sla-bench-") as run:
        report = await measure(run, args)
    write_report("sla", report)
    return 0


async def measure(run: BenchRun, args: argparse.Namespace) -> dict[str, Any]:
    system = run.system
    received: dict[str, float] = {}
    connection = await aio_pika.connect_robust(system.amqp_url)
    try:
        await system.start("sla", MONGO_TIMEOUT_MS="60000")
        channel = await connection.channel()
        exchange = await channel.declare_exchange(f"{system.namespace}.events",
                                                  aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, "sla.breached")

        async def on_breach(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            event = json.loads(message.body)
            due = datetime.fromisoformat(event["payload"]["due_at"])
            received.setdefault(event["payload"]["clock_id"],
                                (datetime.now(UTC) - due).total_seconds())

        await queue.consume(on_breach, no_ack=True)

        mongo = system.mongo()
        clocks = mongo[system.database("sla")]["clocks"]
        now = datetime.now(UTC)
        loading_started = time.perf_counter()
        start_at = now + timedelta(seconds=20 + args.clocks / 4000)  # after loading
        batch: list[dict[str, Any]] = []
        for n in range(args.clocks):
            if n < args.due:
                due = start_at + timedelta(seconds=random.uniform(0, args.window))
            else:
                due = now + timedelta(hours=random.uniform(2, 48))
            batch.append(clock_doc(n, due, now=now))
            if len(batch) == 1000:
                await clocks.insert_many(batch)
                batch = []
        if batch:
            await clocks.insert_many(batch)
        loaded_in = time.perf_counter() - loading_started
        if datetime.now(UTC) > start_at:
            print("warning: loading took longer than planned; the first clocks are late",
                  file=sys.stderr)

        async def all_fired() -> bool:
            due: int = args.due
            return len(received) >= due

        await eventually(all_fired, timeout=args.window + 600, interval=0.5,
                         what="every due clock fired")
        lags = sorted(received.values())

        meter = CpuMeter({k: v for k, v in processes(system, run.emulator).items()
                          if k in {"sla", "mongo emulator"}})
        meter.start()
        await asyncio.sleep(args.idle)  # measuring idle CPU: the point is to let time pass
        idle = {k: round(100 * used / args.idle, 1) for k, used in meter.stop().items()}
        active = await clocks.count_documents({"state": "running"})
        await mongo.close()
        return run.report(
            "sla_bench.py",
            clocks_stored=args.clocks, clocks_loaded_in_s=round(loaded_in, 1),
            running_after=active,
            fired=len(lags), lag_p50_ms=percentile_ms(lags, 50),
            lag_p95_ms=percentile_ms(lags, 95), lag_p99_ms=percentile_ms(lags, 99),
            lag_max_ms=percentile_ms(lags, 100),
            idle_cpu_percent_of_one_core=idle,
        )
    finally:
        await connection.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
