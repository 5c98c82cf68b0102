"""``python -m sportello_analytics``: serve with uvicorn on SERVICE_HOST:SERVICE_PORT.

``python -m sportello_analytics rebuild``: facts and buckets again from the kept events,
with a progress bar (stop the service first: the rebuild starts from empty aggregates).

``python -m sportello_analytics import-servicenow FILE``: a ServiceNow incident event log
(CSV, or a zip of it) as Sportello's events, through the same path (see
``domain/servicenow.py`` for what maps and what has no counterpart).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from sportello_analytics.app import create_app
from sportello_analytics.service import AnalyticsMetrics, Ledger, import_servicenow
from sportello_analytics.settings import AnalyticsSettings
from sportello_analytics.store import AnalyticsStore
from sportello_runtime.app import build_service
from sportello_runtime.progress import progress_bar
from sportello_runtime.serve import serve
from sportello_runtime.store import MongoStore


def open_ledger(settings: AnalyticsSettings) -> tuple[MongoStore, Ledger]:
    """The service's own parts, none started: the database is all a command needs."""
    service = build_service(settings)
    metrics = AnalyticsMetrics.registered_on(service.metrics)
    return service.store, Ledger(AnalyticsStore(service.store), metrics)


async def rebuild(settings: AnalyticsSettings) -> None:
    mongo, ledger = open_ledger(settings)
    try:
        tickets = len([t async for t in ledger.store.ticket_ids()])
        started = time.monotonic()
        bar = progress_bar("tickets")
        done = await ledger.rebuild(lambda n: bar(n, tickets))
        sys.stderr.write(f"\nrebuilt {done:,} tickets' facts and buckets from "
                         f"{await ledger.store.count_events():,} events in "
                         f"{time.monotonic() - started:.1f} s\n")
    finally:
        await mongo.close()


async def import_log(settings: AnalyticsSettings, path: Path) -> None:
    mongo, ledger = open_ledger(settings)
    try:
        started = time.monotonic()
        counts = await import_servicenow(ledger, path, progress=progress_bar("incidents"))
        sys.stderr.write(f"\nimported {counts['incidents']:,} incidents as "
                         f"{counts['events']:,} events ({counts['new_events']:,} new) in "
                         f"{time.monotonic() - started:.1f} s\n")
    finally:
        await mongo.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sportello_analytics")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("rebuild", help="facts and buckets again from the kept events")
    importer = commands.add_parser(
        "import-servicenow", help="a ServiceNow incident event log (CSV, or a zip of it)")
    importer.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    settings = AnalyticsSettings()
    if args.command == "rebuild":
        asyncio.run(rebuild(settings))
        return
    if args.command == "import-servicenow":
        if not args.file.is_file():
            sys.exit(f"import-servicenow: no file {args.file}")
        asyncio.run(import_log(settings, args.file))
        return
    serve(create_app, settings)


if __name__ == "__main__":
    main()
