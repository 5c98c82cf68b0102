"""Routing's wiring: its store, routes and handlers on the shared runtime."""

from __future__ import annotations

from fastapi import FastAPI

from sportello_contracts.enums import SupportLevel
from sportello_contracts.events import TicketCreated
from sportello_routing import api
from sportello_routing.consumers import RoutingConsumers
from sportello_routing.domain import Group
from sportello_routing.settings import RoutingSettings
from sportello_routing.store import ASSIGNMENTS, INDEXES, AssignmentStore
from sportello_runtime.app import Service, ServiceWiring, create_service_app


def wire(service: Service) -> ServiceWiring:
    settings = service.settings
    assert isinstance(settings, RoutingSettings)
    assignments = AssignmentStore(service.store, service.relay)
    consumers = RoutingConsumers(
        assignments,
        default_group=Group(
            settings.default_group_id, settings.default_group_name, SupportLevel.L1
        ),
        assigned_total=service.metrics.counter(
            "tickets_assigned_total", "Assignments made, by level and group", ["level", "group"]
        ),
        time_to_assign=service.metrics.histogram(
            "ticket_time_to_assign_seconds", "From ticket creation to its first assignment"
        ),
    )
    return ServiceWiring(
        internal_routers=[api.internal],
        handlers={TicketCreated.event_type: consumers.on_ticket_created},
        indexes=INDEXES,
        outbox_collections=[ASSIGNMENTS],
        state={"assignments": assignments},
    )


def create_app(settings: RoutingSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or RoutingSettings(),
        wire,
        title="Sportello routing",
        description="Triage, assignment to support levels and agents, escalation.",
    )
