"""``python -m sportello_analytics``: serve with uvicorn on SERVICE_HOST:SERVICE_PORT.

``python -m sportello_analytics rebuild``: facts and buckets again from the kept events,
with a progress bar (stop the service first: the rebuild starts from empty aggregates).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from sportello_analytics.app import create_app
from sportello_analytics.service import AnalyticsMetrics, Ledger
from sportello_analytics.settings import AnalyticsSettings
from sportello_analytics.store import AnalyticsStore
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.serve import serve
from sportello_runtime.store import MongoStore


def progress_bar(done: int, total: int, started: float, what: str) -> None:
    width = 30
    share = done / total if total else 1.0
    rate = done / max(time.monotonic() - started, 1e-6)
    sys.stderr.write(f"\r[{'#' * int(share * width):<{width}}] {done:,}/{total:,} {what} "
                     f"({share:.0%}) {rate:,.0f}/s")
    sys.stderr.flush()


def open_ledger(settings: AnalyticsSettings) -> tuple[MongoStore, Ledger]:
    mongo = MongoStore(settings.mongo_url, settings.mongo_database, app_name="analytics-cli",
                       timeout_ms=settings.mongo_timeout_ms)
    metrics = AnalyticsMetrics.registered_on(ServiceMetrics("analytics-cli"))
    return mongo, Ledger(AnalyticsStore(mongo), metrics)


async def rebuild(settings: AnalyticsSettings) -> None:
    mongo, ledger = open_ledger(settings)
    try:
        tickets = len([t async for t in ledger.store.ticket_ids()])
        started = time.monotonic()
        done = await ledger.rebuild(lambda n: progress_bar(n, tickets, started, "tickets"))
        sys.stderr.write(f"\nrebuilt {done:,} tickets' facts and buckets from "
                         f"{await ledger.store.count_events():,} events in "
                         f"{time.monotonic() - started:.1f} s\n")
    finally:
        await mongo.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sportello_analytics")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("rebuild", help="facts and buckets again from the kept events")
    args = parser.parse_args(argv)
    settings = AnalyticsSettings()
    if args.command == "rebuild":
        asyncio.run(rebuild(settings))
        return
    serve(create_app, settings)


if __name__ == "__main__":
    main()
