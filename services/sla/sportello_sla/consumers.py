"""SLA's event handlers: every ticket event that starts, pauses, resumes or stops a clock."""

from __future__ import annotations

from sportello_contracts import EventEnvelope, parse_payload
from sportello_contracts.enums import Author, CustomerType, TicketStatus, Visibility
from sportello_contracts.events import (
    TicketAssigned,
    TicketCreated,
    TicketMessageAdded,
    TicketPriorityChanged,
    TicketReopened,
    TicketStatusChanged,
    TicketTriaged,
)
from sportello_runtime.bus import Handler, Subscription
from sportello_sla.service import ClockKeeper

STOPPING = {TicketStatus.RESOLVED, TicketStatus.CLOSED}


def is_a_first_response(envelope: EventEnvelope) -> bool:
    message = parse_payload(envelope, TicketMessageAdded)
    return message.author is Author.AGENT and message.visibility is Visibility.PUBLIC


def moves_a_clock(envelope: EventEnvelope) -> bool:
    """Resolving, closing, waiting for the customer, or their answer: the rest (new ->
    assigned -> in progress) leave every clock as it is."""
    changed = parse_payload(envelope, TicketStatusChanged)
    return (changed.to_status in STOPPING or changed.to_status is TicketStatus.WAITING_CUSTOMER
            or changed.from_status is TicketStatus.WAITING_CUSTOMER)


class SlaConsumers:
    def __init__(self, keeper: ClockKeeper) -> None:
        self._keeper = keeper

    def subscriptions(self) -> dict[str, Handler | Subscription]:
        return {
            # Each records a fact that a copy repeats harmlessly (the same creation, the
            # first priority only, a newer assignment only) and starts clocks by derived
            # ids: no dedupe records needed, two round trips saved per event.
            TicketCreated.event_type: Subscription(self.on_ticket_created, idempotent=True),
            TicketTriaged.event_type: Subscription(self.on_ticket_triaged, idempotent=True),
            TicketAssigned.event_type: Subscription(self.on_ticket_assigned, idempotent=True),
            # Stopping a stopped clock changes nothing; only an agent's public message counts.
            TicketMessageAdded.event_type: Subscription(
                self.on_message_added, idempotent=True, wants=is_a_first_response),
            # Pause and resume are not idempotent (an old copy would pause again): deduped,
            # but only the changes that move a clock are taken at all.
            TicketStatusChanged.event_type: Subscription(self.on_status_changed,
                                                         wants=moves_a_clock),
            TicketReopened.event_type: self.on_reopened,
            TicketPriorityChanged.event_type: self.on_priority_changed,
        }

    def unsubscribed(self) -> list[str]:
        return []

    async def on_ticket_created(self, envelope: EventEnvelope) -> None:
        created = parse_payload(envelope, TicketCreated)
        requester = created.requester
        tier = requester.contract_tier if requester.customer_type is CustomerType.BUSINESS else None
        await self._keeper.ticket_created(created.ticket_id, created.created_at, tier)

    async def on_ticket_triaged(self, envelope: EventEnvelope) -> None:
        triaged = parse_payload(envelope, TicketTriaged)
        tier = triaged.contract_tier if triaged.customer_type is CustomerType.BUSINESS else None
        await self._keeper.ticket_triaged(triaged.ticket_id, triaged.priority, tier)

    async def on_ticket_assigned(self, envelope: EventEnvelope) -> None:
        assigned = parse_payload(envelope, TicketAssigned)
        await self._keeper.ticket_assigned(assigned.ticket_id, assigned.level, assigned.sequence,
                                           envelope.occurred_at)

    async def on_message_added(self, envelope: EventEnvelope) -> None:
        message = parse_payload(envelope, TicketMessageAdded)
        if message.author is Author.AGENT and message.visibility is Visibility.PUBLIC:
            await self._keeper.first_response(message.ticket_id, message.at)

    async def on_status_changed(self, envelope: EventEnvelope) -> None:
        changed = parse_payload(envelope, TicketStatusChanged)
        at = envelope.occurred_at
        if changed.to_status in STOPPING:
            await self._keeper.resolved(changed.ticket_id, at)
        elif changed.to_status is TicketStatus.WAITING_CUSTOMER:
            await self._keeper.waiting_for_customer(changed.ticket_id, at)
        elif changed.from_status is TicketStatus.WAITING_CUSTOMER:
            await self._keeper.customer_answered(changed.ticket_id, at)

    async def on_reopened(self, envelope: EventEnvelope) -> None:
        reopened = parse_payload(envelope, TicketReopened)
        await self._keeper.reopened(reopened.ticket_id, envelope.occurred_at)

    async def on_priority_changed(self, envelope: EventEnvelope) -> None:
        changed = parse_payload(envelope, TicketPriorityChanged)
        await self._keeper.priority_changed(changed.ticket_id, changed.to_priority,
                                            envelope.occurred_at)
