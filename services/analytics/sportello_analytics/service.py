"""Analytics' use cases: take an event in (keep it, refresh its ticket's facts, move the
buckets), rebuild everything from the kept events, and answer the coordinator's figures."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import aiosmtplib
import httpx
from prometheus_client import Counter, Gauge, Histogram

from sportello_analytics.domain import findings, servicenow
from sportello_analytics.domain import kpis as figures
from sportello_analytics.domain.buckets import contribution, delta
from sportello_analytics.domain.facts import LEVELS, Event, facts_of
from sportello_analytics.report import WORDS, to_csv, to_html
from sportello_analytics.store import AnalyticsStore, ReportStore
from sportello_contracts import EventEnvelope, utc_now
from sportello_runtime.concurrency import retry_on_conflict
from sportello_runtime.metrics import ServiceMetrics

log = logging.getLogger(__name__)
QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


@dataclass
class AnalyticsMetrics:
    events: Counter
    duplicates: Counter
    queries: Histogram
    backlog: Gauge
    sla_compliance: Gauge
    satisfaction: Gauge

    @classmethod
    def registered_on(cls, m: ServiceMetrics) -> AnalyticsMetrics:
        return cls(
            events=m.counter("analytics_events_total", "Events kept, by type", ["type"]),
            duplicates=m.counter("analytics_duplicate_events_total",
                                 "Events received again and kept once"),
            queries=m.histogram("analytics_query_seconds", "Time to answer a KPI query",
                                buckets=QUERY_BUCKETS),
            backlog=m.gauge("helpdesk_backlog_tickets", "Open tickets, by level", ["level"]),
            sla_compliance=m.gauge("helpdesk_sla_compliance_ratio",
                                   "Targets met over met and breached, last day", ["target"]),
            satisfaction=m.gauge("helpdesk_satisfaction_average",
                                 "Average rating (1-5), last week"),
        )


def event_of(envelope: EventEnvelope) -> Event:
    return Event(id=str(envelope.event_id), type=envelope.type, ticket_id=envelope.ticket_id,
                 occurred_at=envelope.occurred_at, payload=envelope.payload)


class InvalidPeriod(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class Ledger:
    store: AnalyticsStore
    metrics: AnalyticsMetrics

    async def record(self, event: Event) -> None:
        """Keep the event once and bring its ticket's facts and buckets up to date. A copy
        refreshes the ticket again, which changes nothing."""
        if await self.store.keep(event, utc_now()):
            self.metrics.events.labels(event.type).inc()
        else:
            self.metrics.duplicates.inc()
        if event.ticket_id:
            await self.refresh(event.ticket_id)

    async def refresh(self, ticket_id: str, stream: list[Event] | None = None) -> None:
        await retry_on_conflict(lambda: self._refresh(ticket_id, stream),
                                what=f"facts of {ticket_id}")

    async def absorb(self, ticket_id: str, stream: list[Event]) -> int:
        """An imported ticket's whole stream: kept (once per event id), then folded as the
        bus's events are. Answers how many events were new."""
        new = await self.store.keep_many(stream, utc_now())
        for event in stream:
            self.metrics.events.labels(event.type).inc()
        await self.refresh(ticket_id, stream)
        return new

    async def _refresh(self, ticket_id: str, stream: list[Event] | None) -> None:
        """``stream``: the ticket's whole stream when the caller holds it (an import, whose
        tickets have no other events); else it is read from what is kept."""
        before, version, unsettled = await self.store.facts(ticket_id)
        if unsettled:  # an earlier change not fully counted (a crash): finish it first
            await self.store.settle(ticket_id, version, unsettled)
        events = stream if stream is not None else await self.store.events_of(ticket_id)
        facts = facts_of(ticket_id, events)
        after = contribution(facts)
        change = delta(before, after)
        new_version = await self.store.save_facts(facts, after, change,
                                                  expected_version=version)
        if change:
            await self.store.settle(ticket_id, new_version, change)

    async def settle_leftovers(self) -> int:
        """At start: deltas a crash left on their facts, given to the buckets."""
        left = await self.store.unsettled()
        for ticket_id, version, change in left:
            await self.store.settle(ticket_id, version, change)
        return len(left)

    async def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Facts and buckets again from the kept events alone."""
        await self.store.clear_derived()
        done = 0
        async for ticket_id in self.store.ticket_ids():
            await self.refresh(ticket_id)
            done += 1
            if progress:
                progress(done)
        return done

    # -- the figures ------------------------------------------------------------------------

    async def kpis(self, since: date, until: date, filters: dict[str, str | None], *,
                   previous_since: date | None = None) -> dict[str, Any]:
        """The figures of [since, until) and of the period before it: of the same length,
        or from ``previous_since`` (the previous calendar month, for a month)."""
        if until <= since:
            raise InvalidPeriod("to", "to must be after from")
        if (until - since).days > 3 * 366:
            raise InvalidPeriod("to", "a period is at most three years")
        started = time.perf_counter()
        previous_since = previous_since or since - (until - since)
        now = await self.store.buckets(since=since.isoformat(), until=until.isoformat(),
                                       filters=filters)
        # Everything before the period, read once: the backlog it starts with, and the
        # previous period's buckets among them.
        earlier = await self.store.buckets(since=None, until=since.isoformat(),
                                           filters=filters)
        before = [b for b in earlier if b["day"] >= previous_since.isoformat()]
        counted = figures.summed(earlier)
        answer = figures.report(now, before, counted.get("created", 0)
                                - counted.get("resolved", 0))
        self.metrics.queries.observe(time.perf_counter() - started)
        return {"from": since.isoformat(), "to": until.isoformat(),
                "filters": {k: v for k, v in filters.items() if v is not None}, **answer}

    async def refresh_gauges(self, today: date | None = None) -> None:
        """The business gauges: backlog per level, SLA compliance over the last day,
        satisfaction over the last week."""
        today = today or utc_now().date()
        tomorrow = (today + timedelta(days=1)).isoformat()
        everything = await self.store.buckets(since=None, until=tomorrow, filters={})
        by_level = figures.grouped(everything, "level")
        for level in LEVELS:
            counts: Mapping[str, float] = by_level.get((level,), {})
            self.metrics.backlog.labels(level).set(
                counts.get("created", 0) - counts.get("resolved", 0))
        day = figures.figures(figures.summed(
            b for b in everything if b["day"] >= (today - timedelta(days=1)).isoformat()))
        for target, numbers in day["sla"].items():
            self.metrics.sla_compliance.labels(target).set(numbers["compliance"] or 0.0)
        week = figures.figures(figures.summed(
            b for b in everything if b["day"] >= (today - timedelta(days=7)).isoformat()))
        self.metrics.satisfaction.set(week["satisfaction"]["average"] or 0.0)


def servicenow_rows(path: Path) -> tuple[list[str], Iterator[list[str]]]:
    """The log's header and rows, from the CSV or from a zip holding it."""
    if path.suffix == ".zip":
        archive = zipfile.ZipFile(path)
        [name] = [n for n in archive.namelist() if n.endswith(".csv")]
        text: IO[str] = io.TextIOWrapper(archive.open(name), encoding="utf-8", newline="")
    else:
        text = path.open(encoding="utf-8", newline="")
    reader = csv.reader(text)
    return next(reader), reader


async def import_servicenow(ledger: Ledger, path: Path, *, concurrency: int = 8,
                            progress: Callable[[int, int], None] | None = None
                            ) -> dict[str, int]:
    """A ServiceNow incident event log through the same path as the bus's events."""
    header, records = servicenow_rows(path)
    by_number = servicenow.incidents(servicenow.rows_of(header, records))
    streams = [(f"servicenow-{number}", servicenow.incident_events(number, rows))
               for number, rows in by_number.items()]
    streams = [(ticket_id, stream) for ticket_id, stream in streams if stream]
    queue: asyncio.Queue[tuple[str, list[Event]]] = asyncio.Queue()
    for item in streams:
        queue.put_nowait(item)
    done = new = 0

    async def worker() -> None:
        nonlocal done, new
        while not queue.empty():
            ticket_id, stream = queue.get_nowait()
            added = await ledger.absorb(ticket_id, stream)  # read after the await: no lost sum
            new += added
            done += 1
            if progress:
                progress(done, len(streams))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"incidents": len(streams), "events": sum(len(s) for _, s in streams),
            "new_events": new}


@dataclass
class Knowledge:
    """The knowledge service's recurring problems, when it runs (its FAQ proposals)."""

    url: str | None
    token: str | None
    timeout_s: float = 2.0

    async def recurring(self, period: str | None = None) -> dict[str, Any]:
        if not self.url:
            return {"available": False, "reason": "KNOWLEDGE_URL is not set", "proposals": []}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with httpx.AsyncClient(base_url=self.url, headers=headers,
                                         timeout=self.timeout_s) as client:
                answer = await client.get("/faq-proposals",
                                          params={"period": period} if period else None)
                answer.raise_for_status()
        except httpx.HTTPError as exc:
            return {"available": False, "reason": f"knowledge: {exc}", "proposals": []}
        return {"available": True, "proposals": answer.json()}


async def monthly_report(ledger: Ledger, knowledge: Knowledge, month: str,
                         language: str) -> dict[str, Any]:
    """The month's figures against the previous month's, knowledge's recurring problems of
    the month, and what they say (``domain.findings``)."""
    try:
        since, until = findings.month_bounds(month)
    except ValueError as exc:
        raise InvalidPeriod("month", "month is YYYY-MM") from exc
    previous, _ = findings.month_bounds(findings.month_before(since))
    kpis = await ledger.kpis(since, until, {}, previous_since=previous)
    recurring = await knowledge.recurring(month)
    return {"month": month, "language": language, "generated_at": utc_now().isoformat(),
            "kpis": kpis, "recurring_problems": recurring,
            "findings": findings.findings(kpis, recurring["proposals"])}


@dataclass
class ReportMailer:
    """The monthly report to the coordinators through the SMTP relay: at month end (a
    background check), or on demand."""

    ledger: Ledger
    knowledge: Knowledge
    store: ReportStore
    relay_url: str | None
    sender: str
    recipients: list[str]
    language: str = "en"

    async def send(self, month: str) -> dict[str, Any]:
        if not self.relay_url or not self.recipients:
            raise ReportNotSendable("set SMTP_RELAY_URL and REPORT_RECIPIENTS to mail reports")
        report = await monthly_report(self.ledger, self.knowledge, month, self.language)
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = f"{WORDS[self.language]['title']} {month}"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(f"{WORDS[self.language]['title']} {month}: see the attached page.")
        message.add_alternative(to_html(report), subtype="html")
        message.add_attachment(to_csv(report).encode(), maintype="text", subtype="csv",
                               filename=f"sportello-{month}.csv")
        relay = urlsplit(self.relay_url)
        await aiosmtplib.send(message, hostname=relay.hostname or "127.0.0.1",
                              port=relay.port or 25, timeout=30)
        await self.store.sent(month, self.recipients, utc_now())
        log.info("monthly report %s mailed to %d coordinators", month, len(self.recipients))
        return {"month": month, "sent_to": self.recipients}

    async def at_month_end(self) -> None:
        """Once a month is over, its report goes out (once: the sent months are kept)."""
        if not self.relay_url or not self.recipients:
            return
        month = findings.report_due(utc_now().date(), await self.store.sent_months())
        if month is not None:
            await self.send(month)


class ReportNotSendable(RuntimeError):
    pass


def parse_day(value: str, field: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as exc:
        raise InvalidPeriod(field, f"{field} is a date, YYYY-MM-DD") from exc
