"""Event bus benchmark: CPU per event published (with a broker confirm) and consumed.

One process publishes ``--events`` events with ``--concurrency`` publishes in flight
through ``EventBus`` to the local RabbitMQ (or ``AMQP_URL``) and consumes them again
with a handler that does nothing, with tracing configured as in a service (spans
recorded, none exported). It reports this process's CPU per event (one publish and
one delivery with its ack) and RabbitMQ's, when it runs on this machine: the bus's
own cost, without HTTP, MongoDB or a second service.

    .venv/bin/python bench/bus_bench.py [--events 3000 --concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from typing import Any

from common import (
    amqp_for_bench,
    cpu_seconds,
    local_rabbitmq_pid,
    report,
    write_report,
)

from sportello_contracts import EventEnvelope, new_event
from sportello_contracts.events import TicketRated
from sportello_runtime.bus import EventBus, Subscription, Topology
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.tracing import configure_tracing
from support.system import RETRY_DELAYS_MS, delete_namespace


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_tracing("bus-bench", None)
    amqp_url = amqp_for_bench()
    topology = Topology(f"bench-{uuid.uuid4().hex[:8]}", "bus", tuple(RETRY_DELAYS_MS),
                        delivery_limit=5)
    bus = EventBus(amqp_url=amqp_url, topology=topology, metrics=ServiceMetrics("bus"),
                   processed=None)
    received = 0
    all_received = asyncio.Event()

    async def handle(envelope: EventEnvelope) -> None:
        nonlocal received
        received += 1
        if received == args.events:
            all_received.set()

    bus.subscribe(TicketRated.event_type, Subscription(handle, idempotent=True))
    bus.start()
    try:
        await bus.wait_connected(10)
        events = [new_event(TicketRated(ticket_id=f"t{n}", number=f"HD-{n}", score=4),
                            producer="bench", correlation_id=f"t{n}")
                  for n in range(args.events)]
        in_flight = asyncio.Semaphore(args.concurrency)

        async def publish(envelope: EventEnvelope) -> None:
            async with in_flight:
                await bus.publish(envelope)

        broker = local_rabbitmq_pid()
        broker_before = cpu_seconds(broker) if broker is not None else 0.0
        cpu_before, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(publish(e) for e in events))
        await asyncio.wait_for(all_received.wait(), timeout=300)
        cpu = time.process_time() - cpu_before
        seconds = time.perf_counter() - started
        broker_cpu = cpu_seconds(broker) - broker_before if broker is not None else None
    finally:
        await bus.close()
        await delete_namespace(amqp_url, topology.namespace, [topology.service])
    return report(
        "bus_bench.py",
        events=args.events,
        concurrency=args.concurrency,
        seconds=round(seconds, 2),
        events_per_s=round(args.events / seconds, 1),
        cpu_ms_per_event={
            "publisher_and_consumer": round(1000 * cpu / args.events, 3),
            "rabbitmq": None if broker_cpu is None else round(1000 * broker_cpu / args.events, 3),
        },
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    write_report("bus", asyncio.run(run(parser.parse_args())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
