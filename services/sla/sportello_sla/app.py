"""SLA's wiring: its store, clock keeper, timer engine, routes and handlers."""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import FastAPI

from sportello_contracts import utc_now
from sportello_runtime.app import Service, ServiceWiring, create_service_app
from sportello_runtime.periodic import every
from sportello_sla import api
from sportello_sla.consumers import SlaConsumers
from sportello_sla.defaults import DEFAULT_POLICY
from sportello_sla.service import ClockKeeper, SlaMetrics
from sportello_sla.settings import SlaSettings
from sportello_sla.store import CLOCKS, INDEXES, SlaStore

log = logging.getLogger(__name__)

def wire(service: Service) -> ServiceWiring:
    settings = service.settings
    assert isinstance(settings, SlaSettings)
    store = SlaStore(service.store, service.relay)
    keeper = ClockKeeper(store, SlaMetrics.registered_on(service.metrics),
                         owner=settings.replica_name,
                         latest_policy_max_age_s=settings.policy_max_age_s)
    consumers = SlaConsumers(keeper)
    lease = timedelta(seconds=settings.timer_lease_s)

    async def seed() -> None:
        if settings.seed_defaults and await store.policy() is None:
            await store.add_policy(DEFAULT_POLICY, author="defaults", now=utc_now())
        await store.recount_active()

    async def timers() -> None:
        await keeper.fire_all_due(lease=lease)

    return ServiceWiring(
        internal_routers=[api.internal],
        consumers=consumers,
        indexes=INDEXES,
        outbox_collections=[CLOCKS],
        on_startup=[seed],
        on_shutdown=[store.flush_active_counts],
        background=[
            every(settings.timer_poll_interval_s, timers, what="timer tick", at_start=True),
            every(settings.gauge_interval_s, keeper.refresh_gauges,
                  what="counting the active clocks", at_start=True)],
        state={"keeper": keeper},
    )


def create_app(settings: SlaSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or SlaSettings(),
        wire,
        title="Sportello SLA",
        description="Policies, business calendars, clocks that pause, warnings and breaches.",
    )


