"""Routing's event handlers: thin adapters from events to the router's use cases."""

from __future__ import annotations

import logging

from sportello_contracts import EventEnvelope, parse_payload
from sportello_contracts.events import (
    SlaBreached,
    TicketClosed,
    TicketCreated,
    TicketReopened,
    TicketResolved,
    TicketStatusChanged,
)
from sportello_routing.service import Learner, Router
from sportello_runtime.bus import Outcome, Subscription

log = logging.getLogger(__name__)


class RoutingConsumers:
    def __init__(self, router: Router, learner: Learner) -> None:
        self._router = router
        self._learner = learner

    def subscriptions(self) -> dict[str, Subscription]:
        return {
            # One assignment per ticket, under the ticket's id: a second copy cannot insert.
            TicketCreated.event_type: Subscription(self.on_ticket_created, idempotent=True),
            # Only resolving and closing free an agent. Intake publishes both beside the
            # status change, so routing takes them instead of every ticket.status_changed.
            TicketResolved.event_type: Subscription(self.on_ticket_resolved),
            TicketClosed.event_type: Subscription(self.on_ticket_closed),
            TicketReopened.event_type: Subscription(self.on_ticket_reopened),
            SlaBreached.event_type: Subscription(self.on_sla_breached),
        }

    def unsubscribed(self) -> list[str]:
        """Taken by earlier versions; unbound, so they stop arriving."""
        return [TicketStatusChanged.event_type]

    async def on_ticket_created(self, envelope: EventEnvelope) -> Outcome:
        created = parse_payload(envelope, TicketCreated)
        if not await self._router.route_new_ticket(created, envelope):
            log.info("ticket %s already routed", created.number)
            return Outcome.DUPLICATE
        return Outcome.OK

    async def on_ticket_resolved(self, envelope: EventEnvelope) -> None:
        resolved = parse_payload(envelope, TicketResolved)
        await self._router.release(resolved.ticket_id, reason="resolved")

    async def on_ticket_closed(self, envelope: EventEnvelope) -> None:
        closed = parse_payload(envelope, TicketClosed)
        await self._router.release(closed.ticket_id, reason="closed")
        await self._learner.learn(closed)  # a copy writes the same lesson again

    async def on_ticket_reopened(self, envelope: EventEnvelope) -> None:
        reopened = parse_payload(envelope, TicketReopened)
        await self._router.reopen(reopened.ticket_id, reopened.reason or "reopened", envelope)

    async def on_sla_breached(self, envelope: EventEnvelope) -> None:
        await self._router.escalate_on_breach(parse_payload(envelope, SlaBreached), envelope)
