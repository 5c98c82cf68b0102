"""SLA's wiring: its store, clock keeper, timer engine, routes and handlers."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import FastAPI

from sportello_contracts import utc_now
from sportello_contracts.events import (
    TicketAssigned,
    TicketCreated,
    TicketMessageAdded,
    TicketPriorityChanged,
    TicketReopened,
    TicketStatusChanged,
    TicketTriaged,
)
from sportello_runtime.app import Service, ServiceWiring, create_service_app
from sportello_sla import api
from sportello_sla.consumers import SlaConsumers
from sportello_sla.defaults import DEFAULT_POLICY
from sportello_sla.service import ClockKeeper, SlaMetrics
from sportello_sla.settings import SlaSettings
from sportello_sla.store import CLOCKS, INDEXES, SlaStore

log = logging.getLogger(__name__)

LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


def wire(service: Service) -> ServiceWiring:
    settings = service.settings
    assert isinstance(settings, SlaSettings)
    store = SlaStore(service.store, service.relay)
    m = service.metrics
    labels = ["metric", "priority", "level"]
    keeper = ClockKeeper(store, SlaMetrics(
        active=m.gauge("sla_active_clocks", "Running or paused clocks, by metric", ["metric"]),
        warnings=m.counter("sla_warnings_total", "Warnings before a breach", labels),
        breaches=m.counter("sla_breaches_total", "Breached targets", labels),
        met=m.counter("sla_met_total", "Targets met in time", labels),
        lag=m.histogram("sla_timer_lag_seconds",
                        "From the instant a warning or breach fell due to its emission",
                        buckets=LAG_BUCKETS),
    ), owner=settings.replica_name)
    consumers = SlaConsumers(keeper)
    lease = timedelta(seconds=settings.timer_lease_s)

    async def seed() -> None:
        if settings.seed_defaults and await store.policy() is None:
            await store.add_policy(DEFAULT_POLICY, author="defaults", now=utc_now())
        await store.recount_active()

    async def timers() -> None:
        await keeper.run_timers(poll_interval_s=settings.timer_poll_interval_s, lease=lease)

    async def gauges() -> None:
        while True:
            try:
                await keeper.refresh_gauges()
            except Exception:
                log.exception("could not count the active clocks")
            await asyncio.sleep(settings.gauge_interval_s)

    return ServiceWiring(
        internal_routers=[api.internal],
        handlers={
            TicketCreated.event_type: consumers.on_ticket_created,
            TicketTriaged.event_type: consumers.on_ticket_triaged,
            TicketAssigned.event_type: consumers.on_ticket_assigned,
            TicketMessageAdded.event_type: consumers.on_message_added,
            TicketStatusChanged.event_type: consumers.on_status_changed,
            TicketReopened.event_type: consumers.on_reopened,
            TicketPriorityChanged.event_type: consumers.on_priority_changed,
        },
        indexes=INDEXES,
        outbox_collections=[CLOCKS],
        on_startup=[seed],
        background=[timers, gauges],
        state={"keeper": keeper},
    )


def create_app(settings: SlaSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or SlaSettings(),
        wire,
        title="Sportello SLA",
        description="Policies, business calendars, clocks that pause, warnings and breaches.",
    )


