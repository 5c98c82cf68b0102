"""Routing's event handlers: thin adapters from events to the router's use cases."""

from __future__ import annotations

import logging

from sportello_contracts import EventEnvelope, parse_payload
from sportello_contracts.enums import TicketStatus
from sportello_contracts.events import (
    SlaBreached,
    TicketCreated,
    TicketReopened,
    TicketStatusChanged,
)
from sportello_routing.service import Router

log = logging.getLogger(__name__)

RELEASING = {TicketStatus.RESOLVED, TicketStatus.CLOSED}


class RoutingConsumers:
    def __init__(self, router: Router) -> None:
        self._router = router

    async def on_ticket_created(self, envelope: EventEnvelope) -> None:
        created = parse_payload(envelope, TicketCreated)
        if not await self._router.route_new_ticket(created, envelope):
            log.info("ticket %s already routed", created.number)

    async def on_ticket_status_changed(self, envelope: EventEnvelope) -> None:
        changed = parse_payload(envelope, TicketStatusChanged)
        if changed.to_status in RELEASING:
            await self._router.release(changed.ticket_id, reason=changed.to_status.value)

    async def on_ticket_reopened(self, envelope: EventEnvelope) -> None:
        reopened = parse_payload(envelope, TicketReopened)
        await self._router.reopen(reopened.ticket_id, reopened.reason or "reopened", envelope)

    async def on_sla_breached(self, envelope: EventEnvelope) -> None:
        await self._router.escalate_on_breach(parse_payload(envelope, SlaBreached), envelope)
