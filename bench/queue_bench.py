"""Routing's queue reads against the size of a group's queue, on this run's MongoDB.

Routing's safety net counts each group's waiting tickets every ``QUEUE_SWEEP_INTERVAL_S``
(for the ``tickets_waiting`` gauge) and reads the most urgent 50 when an agent has room.
This script fills one group's queue with real assignments (routed by the domain from a
real ticket, as ``ticket.created`` would be) up to each ``--sizes`` step and times both
reads through ``RoutingStore``, the code routing runs. On the emulator both grow with the
queue, since mongomock judges every document; on MongoDB the index answers them.

    .venv/bin/python bench/queue_bench.py [--sizes 5000 15000 30000 --repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from common import mongo_for_bench, report, write_report

from sportello_contracts import new_event, utc_now
from sportello_contracts.enums import SupportLevel
from sportello_contracts.events import Requester, TicketCreated
from sportello_routing import domain
from sportello_routing.defaults import DEFAULT_GROUPS, DEFAULT_POLICY
from sportello_routing.domain import Assignment, TriageInput
from sportello_routing.store import ASSIGNMENTS, INDEXES, RoutingStore, assignment_document
from sportello_runtime.store import MongoStore
from support.stores import relay_without_bus


def queued_assignment() -> Assignment:
    """What routing stores for a new ticket when no agent has room."""
    created = TicketCreated(
        ticket_id="template", number="HD-2026-000000", channel="api",
        requester=Requester(name="Bench User", email="user@example.com"),
        subject="Cannot reach the file server", description="Mapped drive S: is disconnected.",
        created_at=utc_now(),
    )
    result = domain.triage(TriageInput.of(created), DEFAULT_POLICY)
    group = domain.group_for(DEFAULT_GROUPS, SupportLevel.L1, result.category)
    assert group is not None
    cause = new_event(created, producer="bench", correlation_id="bench")
    return domain.route_new_ticket(created, result, group, None, cause=cause,
                                   now=utc_now()).record


async def timed_ms(read: Callable[[], Awaitable[object]], repeat: int) -> float:
    """The median of ``repeat`` reads, in ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await read()
        times.append(1000 * (time.perf_counter() - started))
    return round(statistics.median(times), 1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url, emulator, backend = mongo_for_bench()
    database = f"queue_bench_{uuid.uuid4().hex[:8]}"
    mongo = MongoStore(url, database, app_name="queue-bench")
    try:
        await mongo.ensure_indexes({ASSIGNMENTS: list(INDEXES[ASSIGNMENTS])})
        store = RoutingStore(mongo, relay_without_bus(), setup_max_age_s=60)
        template = queued_assignment()
        collection = mongo.collection(ASSIGNMENTS)
        group = template.group_id
        steps = []
        stored = 0
        for size in sorted(args.sizes):
            batch = [assignment_document(replace(
                template, ticket_id=f"t{n}", number=f"HD-2026-{n:06d}",
                created_at=template.created_at + timedelta(seconds=n)))
                for n in range(stored, size)]
            for start in range(0, len(batch), 1000):
                await collection.insert_many(batch[start:start + 1000])
            stored = size
            assert await store.count_queued(group) == size
            steps.append({
                "queued": size,
                "count_ms": await timed_ms(lambda: store.count_queued(group), args.repeat),
                "most_urgent_50_ms": await timed_ms(lambda: store.queued(group), args.repeat),
            })
    finally:
        await mongo.client.drop_database(database)
        await mongo.close()
        if emulator is not None:
            emulator.stop()
    return report("queue_bench.py", mongo_backend=backend, steps=steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 15000, 30000])
    parser.add_argument("--repeat", type=int, default=5)
    write_report("queue", asyncio.run(run(parser.parse_args())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
