"""Analytics: how fast it takes events in, imports a ServiceNow log, answers a year's KPIs
and writes the monthly report.

    .venv/bin/python bench/analytics_bench.py [--tickets 2000] [--queries 50]

1. Ingest: an analytics process (real, with RabbitMQ and MongoDB or the emulator) gets
   ``--tickets`` ticket lives of six events each (created, triaged, assigned, an agent's
   answer, resolved, rated) published as fast as the broker takes them; events kept per
   second, from the first publish to the last event counted.
2. The whole UCI incident event log (../shared/data) through ``import-servicenow``.
3. KPIs over a year of that log (2016), with and without a filter: p50, p95.
4. The monthly report of its busiest month (2016-03) as HTML: median of ten.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
from common import ROOT, isolated_system, percentile_ms, write_report
from prometheus_client.parser import text_string_to_metric_families

from sportello_contracts import new_event
from sportello_contracts.enums import (
    Author,
    Channel,
    Impact,
    Priority,
    SupportLevel,
    Urgency,
    Visibility,
)
from sportello_contracts.events import (
    Requester,
    TicketAssigned,
    TicketCreated,
    TicketMessageAdded,
    TicketRated,
    TicketResolved,
    TicketTriaged,
)
from support.system import System
from support.wait import eventually

LOG = ROOT.parent / "shared" / "data" / "incident-event-log" / "incident_event_log.zip"


def life(n: int, start: datetime) -> list[Any]:
    ticket_id = uuid.uuid4().hex
    at = start + timedelta(minutes=n)
    payloads: list[tuple[Any, datetime]] = [
        (TicketCreated(ticket_id=ticket_id, number=f"HD-2026-{n:06d}", channel=Channel.WEB,
                       requester=Requester(name="Bench", department=f"dept-{n % 7}"),
                       subject="s", description="d", created_at=at), at),
        (TicketTriaged(ticket_id=ticket_id, category=f"cat-{n % 9}", priority=Priority.P3,
                       impact=Impact.MEDIUM, urgency=Urgency.MEDIUM, customer_type="private"),
         at),
        (TicketAssigned(ticket_id=ticket_id, level=SupportLevel.L1, group_id="g", group_name="g",
                        agent_id=f"agent-{n % 20}", sequence=1), at + timedelta(minutes=1)),
        (TicketMessageAdded(ticket_id=ticket_id, number="x", message_id="m", author=Author.AGENT,
                            visibility=Visibility.PUBLIC, body="b",
                            at=at + timedelta(minutes=30)), at + timedelta(minutes=30)),
        (TicketResolved(ticket_id=ticket_id, number="x", resolution="r"), at + timedelta(hours=2)),
        (TicketRated(ticket_id=ticket_id, number="x", score=1 + n % 5), at + timedelta(hours=3)),
    ]
    return [new_event(p, producer="bench", correlation_id=ticket_id, occurred_at=when)
            for p, when in payloads]


async def kept(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    return sum(s.value for family in text_string_to_metric_families(text)
               if family.name == "analytics_events" for s in family.samples
               if s.name == "analytics_events_total")


async def ingest(system: System, tickets: int) -> dict[str, Any]:
    events = [e for n in range(tickets) for e in life(n, datetime(2026, 10, 1, tzinfo=UTC))]
    connection = await aio_pika.connect(system.amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(f"{system.namespace}.events",
                                              aio_pika.ExchangeType.TOPIC, durable=True)
    started = time.perf_counter()
    for start in range(0, len(events), 500):
        await asyncio.gather(*(exchange.publish(aio_pika.Message(e.to_json()),
                                                routing_key=e.type)
                               for e in events[start:start + 500]))
    published_s = time.perf_counter() - started
    await connection.close()
    async with system.client("analytics") as client:
        async def all_kept() -> bool:
            return await kept(client) >= len(events)
        await eventually(all_kept, timeout=1800, interval=0.5, what="every event kept")
    took = time.perf_counter() - started
    return {"tickets": tickets, "events": len(events), "publish_s": round(published_s, 1),
            "seconds": round(took, 1), "events_per_s": round(len(events) / took)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    if not LOG.is_file():
        sys.exit(f"no UCI log at {LOG}: this benchmark reads ../shared/data")
    async with isolated_system("analytics-bench-") as run:
        system = run.system
        analytics = await system.start("analytics")
        results: dict[str, Any] = {"ingest": await ingest(system, args.tickets)}
        print(results, flush=True)
        started = time.perf_counter()
        imported = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "sportello_analytics", "import-servicenow",
                             str(LOG)], env={**os.environ, **analytics.env},
            capture_output=True, text=True, timeout=3600)
        assert imported.returncode == 0, imported.stderr[-2000:]
        results["uci_import"] = {"seconds": round(time.perf_counter() - started, 1),
                                 "summary": imported.stderr.strip().splitlines()[-1]}
        print(results["uci_import"], flush=True)
        async with system.client("analytics") as client:
            for name, params in (("year", {}), ("year_one_priority", {"priority": "P2"})):
                took = []
                for _ in range(args.queries):
                    t = time.perf_counter()
                    answer = await client.get("/kpis", params={
                        "from": "2016-01-01", "to": "2017-01-01", **params}, timeout=120)
                    took.append(time.perf_counter() - t)
                    assert answer.status_code == 200, answer.text
                took.sort()
                results[f"kpis_{name}"] = {"p50_ms": percentile_ms(took, 50),
                                           "p95_ms": percentile_ms(took, 95)}
            took = []
            for _ in range(10):
                t = time.perf_counter()
                page = await client.get("/reports/monthly", params={"month": "2016-03"},
                                        timeout=120)
                took.append(time.perf_counter() - t)
                assert page.status_code == 200
            took.sort()
            results["monthly_report_html"] = {"median_ms": percentile_ms(took, 50),
                                              "bytes": len(page.content)}
        write_report("analytics", run.report("analytics_bench.py", **results))


if __name__ == "__main__":
    asyncio.run(main())
