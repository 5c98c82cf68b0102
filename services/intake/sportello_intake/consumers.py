"""Intake's event handlers: routing's decisions land on the ticket record."""

from __future__ import annotations

import logging

from sportello_contracts import EventEnvelope, parse_payload, utc_now
from sportello_contracts.events import TicketAssigned
from sportello_intake.domain import apply_assignment
from sportello_intake.store import ConcurrencyConflict, TicketStore

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 5


class TicketNotFound(Exception):
    """The event is about a ticket we do not (yet) have: retried, then parked."""


class IntakeConsumers:
    def __init__(self, tickets: TicketStore) -> None:
        self._tickets = tickets

    async def on_ticket_assigned(self, envelope: EventEnvelope) -> None:
        assigned = parse_payload(envelope, TicketAssigned)
        for _ in range(MAX_CONFLICT_RETRIES):
            ticket = await self._tickets.by_id(assigned.ticket_id)
            if ticket is None:
                raise TicketNotFound(assigned.ticket_id)
            change = apply_assignment(ticket, assigned, cause=envelope, now=utc_now())
            if change is None:
                log.info("assignment %s already applied or stale", assigned.sequence)
                return
            try:
                await self._tickets.save(
                    change.ticket, expected_version=ticket.version, events=change.events
                )
            except ConcurrencyConflict:
                continue
            log.info("ticket %s assigned to %s (%s)", ticket.number, assigned.group_id,
                     assigned.level.value)
            return
        raise ConcurrencyConflict(f"{assigned.ticket_id}: too many concurrent updates")
