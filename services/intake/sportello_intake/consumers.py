"""Intake's event handlers: thin adapters from events to the desk (routing's and SLA's
decisions land on the ticket record) and to the notifier (the requester is told what
happened on their own channel: acknowledgement, assignment, escalation, waiting-for-you,
resolution, an agent's reply, knowledge-base suggestions)."""

from __future__ import annotations

import logging

from sportello_contracts import EventEnvelope, parse_payload
from sportello_contracts.enums import Author, Channel, TicketStatus, Visibility
from sportello_contracts.events import (
    KbSuggestionsReady,
    SlaTimeLimitSet,
    TicketAssigned,
    TicketCreated,
    TicketEscalated,
    TicketMessageAdded,
    TicketResolved,
    TicketStatusChanged,
)
from sportello_intake.domain import Ticket
from sportello_intake.requester.notices import NoticeKind
from sportello_intake.requester.notifier import Notifier
from sportello_intake.service import Desk
from sportello_runtime.bus import Handler, Outcome, Subscription

log = logging.getLogger(__name__)


def waits_for_the_requester(envelope: EventEnvelope) -> bool:
    changed = parse_payload(envelope, TicketStatusChanged)
    return changed.to_status is TicketStatus.WAITING_CUSTOMER


def is_an_agent_reply(envelope: EventEnvelope) -> bool:
    """A public agent message, except on the phone: the requester was on the call."""
    added = parse_payload(envelope, TicketMessageAdded)
    return (added.author is Author.AGENT and added.visibility is Visibility.PUBLIC
            and added.channel is not Channel.PHONE)


class IntakeConsumers:
    def __init__(self, desk: Desk, notifier: Notifier) -> None:
        self._desk = desk
        self._notifier = notifier

    def subscriptions(self) -> dict[str, Handler | Subscription]:
        """Without a relay or a chat callback nobody can be told anything: the notice
        handlers are not even subscribed (said once in the log), saving their reads."""
        decisions: dict[str, Handler | Subscription] = {
            # Assignments carry routing's sequence, kept on the ticket: a copy is seen as stale.
            TicketAssigned.event_type: Subscription(self.on_ticket_assigned, idempotent=True),
            # Time limits carry the instant they changed: a late copy is seen as stale.
            SlaTimeLimitSet.event_type: Subscription(self.on_time_limit_set, idempotent=True),
        }
        if not self._notifier.enabled:
            log.warning("neither SMTP_RELAY_URL nor CHAT_CALLBACK_URL is set: requesters "
                        "will not be notified")
            return decisions
        return {**decisions, **self._notices()}

    def unsubscribed(self) -> list[str]:
        """Notice types not handled here are unbound, and the queue no longer collects
        them: all of them with notices off, and the creation where the acknowledgement
        waits for SLA (the hold is saved with the ticket)."""
        handled = self.subscriptions()
        return sorted({*self._notices(), TicketCreated.event_type} - set(handled))

    def _notices(self) -> dict[str, Handler | Subscription]:
        at_once: dict[str, Handler | Subscription] = {
            # No SLA to wait for: acknowledged when opened (sending it is claimed).
            TicketCreated.event_type: Subscription(self.on_ticket_created, idempotent=True),
        } if self._notifier.acknowledges_at_once else {}
        return {
            **at_once,
            TicketEscalated.event_type: self.on_ticket_escalated,
            # Most status changes and messages tell the requester nothing new: acked
            # without the dedupe records' two round trips.
            TicketStatusChanged.event_type: Subscription(self.on_status_changed,
                                                         wants=waits_for_the_requester),
            TicketResolved.event_type: self.on_ticket_resolved,
            TicketMessageAdded.event_type: Subscription(self.on_message_added,
                                                        wants=is_an_agent_reply),
            KbSuggestionsReady.event_type: self.on_suggestions_ready,
        }

    # --- routing's and SLA's decisions --------------------------------------------

    async def on_ticket_assigned(self, envelope: EventEnvelope) -> Outcome:
        assigned = parse_payload(envelope, TicketAssigned)
        ticket = await self._desk.apply_assignment(assigned, envelope)
        if ticket is None:
            log.info("assignment %s already applied or stale", assigned.sequence)
            return Outcome.DUPLICATE
        if self._notifier.enabled and assigned.sequence == 1:  # escalations: their own notice
            await self._notifier.first_assignment(ticket)
        return Outcome.OK

    async def on_time_limit_set(self, envelope: EventEnvelope) -> None:
        announced = parse_payload(envelope, SlaTimeLimitSet)

        async def note() -> Ticket:
            return await self._desk.note_time_limit(announced)

        if self._notifier.enabled:  # noted once the acknowledgement is claimed
            await self._notifier.time_limit_known(announced.ticket_id, note)
        else:
            await note()

    # --- keeping the requester informed ------------------------------------------

    async def on_ticket_created(self, envelope: EventEnvelope) -> None:
        created = parse_payload(envelope, TicketCreated)
        await self._notifier.ticket_opened(created.ticket_id)

    async def on_ticket_escalated(self, envelope: EventEnvelope) -> None:
        escalated = parse_payload(envelope, TicketEscalated)
        ticket = await self._ticket(escalated.ticket_id)
        await self._notifier.notify(ticket, NoticeKind.ESCALATED, str(envelope.event_id),
                                    level=escalated.to_level.value, group=escalated.to_group)

    async def on_status_changed(self, envelope: EventEnvelope) -> None:
        changed = parse_payload(envelope, TicketStatusChanged)
        ticket = await self._ticket(changed.ticket_id)
        await self._notifier.notify(ticket, NoticeKind.WAITING_FOR_YOU, str(envelope.event_id),
                                    message=changed.reason or "")

    async def on_ticket_resolved(self, envelope: EventEnvelope) -> None:
        resolved = parse_payload(envelope, TicketResolved)
        ticket = await self._ticket(resolved.ticket_id)
        await self._notifier.notify(ticket, NoticeKind.RESOLVED, str(envelope.event_id),
                                    resolution=resolved.resolution)

    async def on_message_added(self, envelope: EventEnvelope) -> None:
        added = parse_payload(envelope, TicketMessageAdded)
        ticket = await self._ticket(added.ticket_id)
        await self._notifier.notify(ticket, NoticeKind.AGENT_REPLY, str(envelope.event_id),
                                    message=added.body)

    async def on_suggestions_ready(self, envelope: EventEnvelope) -> None:
        ready = parse_payload(envelope, KbSuggestionsReady)
        if not ready.suggestions:
            return
        ticket = await self._ticket(ready.ticket_id)
        await self._notifier.suggestions_ready(
            ticket.id, str(envelope.event_id), [(s.title, s.url) for s in ready.suggestions])

    async def _ticket(self, ticket_id: str) -> Ticket:
        return await self._desk.known(ticket_id)
