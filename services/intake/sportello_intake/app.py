"""Intake's wiring: its store, routes and handlers on the shared runtime."""

from __future__ import annotations

from fastapi import FastAPI

from sportello_contracts.events import TicketAssigned
from sportello_intake import api
from sportello_intake.consumers import IntakeConsumers
from sportello_intake.settings import IntakeSettings
from sportello_intake.store import INDEXES, TICKETS, TicketStore
from sportello_runtime.app import Service, ServiceWiring, create_service_app


def wire(service: Service) -> ServiceWiring:
    tickets = TicketStore(service.store, service.relay)
    consumers = IntakeConsumers(tickets)
    tickets_created = service.metrics.counter(
        "tickets_created_total", "Tickets opened, by channel", ["channel"]
    )
    return ServiceWiring(
        public_routers=[api.channels],
        internal_routers=[api.internal],
        handlers={TicketAssigned.event_type: consumers.on_ticket_assigned},
        indexes=INDEXES,
        outbox_collections=[TICKETS],
        state={"tickets": tickets, "tickets_created": tickets_created},
    )


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or IntakeSettings(),
        wire,
        title="Sportello intake",
        description="Collects tickets from every channel; owns the ticket record.",
    )
