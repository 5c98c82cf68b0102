"""Routing's wiring: its stores, the router and the learner (with this replica's own queue
for model activations), routes and handlers on the shared runtime."""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import FastAPI

from sportello_contracts import utc_now
from sportello_contracts.events import TriageModelActivated
from sportello_routing import api
from sportello_routing.classifier import Settings
from sportello_routing.consumers import RoutingConsumers
from sportello_routing.defaults import DEFAULT_GROUPS, DEFAULT_POLICY
from sportello_routing.service import (
    Learner,
    LearningMetrics,
    LearningRules,
    Router,
    RoutingMetrics,
)
from sportello_routing.settings import RoutingSettings
from sportello_routing.store import INDEXES, OUTBOX_COLLECTIONS, LearningStore, RoutingStore
from sportello_runtime.app import Service, ServiceWiring, create_service_app
from sportello_runtime.broadcast import ReplicaQueue
from sportello_runtime.periodic import every

log = logging.getLogger(__name__)


def wire(service: Service) -> ServiceWiring:
    settings = service.settings
    assert isinstance(settings, RoutingSettings)
    store = RoutingStore(service.store, service.relay,
                         setup_max_age_s=settings.setup_max_age_s)
    learner = learner_of(service, store)
    router = Router(store, RoutingMetrics.registered_on(service.metrics), learner)
    consumers = RoutingConsumers(router, learner)
    activations = ReplicaQueue(settings.amqp_url, f"{settings.bus_namespace}.events",
                               [TriageModelActivated.event_type], learner.on_event,
                               on_bound=learner.on_bound)

    async def seed() -> None:
        if not settings.seed_defaults:
            return
        if not await store.has_groups():
            for group in DEFAULT_GROUPS:
                await store.put_group(group)
        if await store.policy() is None:
            await store.add_policy(DEFAULT_POLICY, author="defaults", now=utc_now())

    async def safety_net() -> None:
        """Drain every queue and recount loads now and then: events can be missed only in a
        crash, and this makes sure no ticket waits beside a free agent for long."""
        for agent in await store.agents():
            await router.reconcile_agent(agent.id, quiet_for=timedelta(seconds=30))
        await router.drain([g.id for g in await store.groups()])

    return ServiceWiring(
        internal_routers=[api.internal],
        consumers=consumers,
        indexes=INDEXES,
        outbox_collections=OUTBOX_COLLECTIONS,
        on_startup=[seed, learner.refresh],
        background=[every(settings.queue_sweep_interval_s, safety_net, what="queue sweep"),
                    every(settings.triage_check_interval_s, learner.train_if_due,
                          what="triage training schedule"),
                    activations.run],
        on_shutdown=[activations.close],
        state={"router": router, "learner": learner, "assignments": store},
    )


def learner_of(service: Service, desk: RoutingStore) -> Learner:
    """The learned triage's parts, as the service and its command line both build them."""
    settings = service.settings
    assert isinstance(settings, RoutingSettings)
    return Learner(
        LearningStore(service.store, service.relay), desk,
        LearningMetrics.registered_on(service.metrics),
        LearningRules(min_lessons=settings.triage_min_lessons,
                      retrain_after=settings.triage_retrain_after,
                      min_per_class=settings.triage_min_per_class,
                      model=Settings(max_terms=settings.triage_max_terms)),
    )


def create_app(settings: RoutingSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or RoutingSettings(),
        wire,
        title="Sportello routing",
        description="Triage, assignment to support levels and agents, escalation.",
    )
