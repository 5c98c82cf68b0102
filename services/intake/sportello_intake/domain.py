"""The ticket and its lifecycle: pure rules, no I/O.

The store loads a ``Ticket``, a rule returns what changes and which events
it causes, and the store writes both in one document update.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sportello_contracts import EventEnvelope, new_event
from sportello_contracts.api import TicketCreateRequest
from sportello_contracts.enums import Channel, SupportLevel, TicketStatus
from sportello_contracts.events import (
    Requester,
    TicketAssigned,
    TicketClosed,
    TicketCreated,
    TicketReopened,
    TicketResolved,
    TicketStatusChanged,
)

PRODUCER = "intake"

S = TicketStatus
ALLOWED_TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    S.NEW: frozenset({S.ASSIGNED, S.RESOLVED, S.CLOSED}),
    S.ASSIGNED: frozenset({S.ASSIGNED, S.IN_PROGRESS, S.WAITING_CUSTOMER, S.RESOLVED}),
    S.IN_PROGRESS: frozenset({S.ASSIGNED, S.WAITING_CUSTOMER, S.RESOLVED}),
    S.WAITING_CUSTOMER: frozenset({S.IN_PROGRESS, S.ASSIGNED, S.RESOLVED}),
    S.RESOLVED: frozenset({S.CLOSED, S.REOPENED}),
    S.REOPENED: frozenset({S.ASSIGNED, S.IN_PROGRESS, S.WAITING_CUSTOMER, S.RESOLVED}),
    S.CLOSED: frozenset(),
}
"""Which status may follow which. ``assigned -> assigned`` is a reassignment or escalation."""


class IllegalTransition(Exception):
    def __init__(self, current: TicketStatus, wanted: TicketStatus) -> None:
        self.current = current
        self.wanted = wanted
        self.allowed = sorted(ALLOWED_TRANSITIONS[current])
        super().__init__(
            f"a {current.value} ticket cannot become {wanted.value}; "
            f"allowed: {', '.join(s.value for s in self.allowed) or 'none'}"
        )


def check_transition(current: TicketStatus, wanted: TicketStatus) -> None:
    if wanted not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(current, wanted)


SET_BY_ROUTING = frozenset({S.NEW, S.ASSIGNED})
"""Statuses that follow from routing's decisions, never set by hand."""


class MissingResolution(ValueError):
    pass


def change_status(
    ticket: Ticket,
    wanted: TicketStatus,
    *,
    reason: str | None,
    actor: str | None,
    resolution: str | None,
    now: datetime,
) -> Change:
    """An agent (or the requester, or the auto-close timer) moves the ticket on."""
    check_transition(ticket.status, wanted)
    if wanted is S.RESOLVED and not (resolution or "").strip():
        raise MissingResolution("a resolved ticket needs its resolution")
    updated = replace(
        ticket,
        status=wanted,
        version=ticket.version + 1,
        updated_at=now,
        resolution=resolution if wanted is S.RESOLVED else ticket.resolution,
        history=(
            *ticket.history,
            HistoryEntry(now, "status_changed", {"from": ticket.status.value, "to": wanted.value,
                                                 "reason": reason, "actor": actor}),
        ),
    )

    def event(payload: Any) -> EventEnvelope:
        return new_event(payload, producer=PRODUCER, correlation_id=ticket.id, occurred_at=now)

    events = [event(TicketStatusChanged(
        ticket_id=ticket.id, number=ticket.number, from_status=ticket.status, to_status=wanted,
        reason=reason, version=updated.version,
    ))]
    if wanted is S.RESOLVED:
        events.append(event(TicketResolved(ticket_id=ticket.id, number=ticket.number,
                                           resolution=resolution or "", resolved_by=actor)))
    elif wanted is S.CLOSED:
        events.append(event(TicketClosed(
            ticket_id=ticket.id, number=ticket.number, reason=reason or "closed",
            subject=ticket.subject, description=ticket.description,
            resolution=updated.resolution, category=ticket.category_hint,
        )))
    elif wanted is S.REOPENED:
        events.append(event(TicketReopened(ticket_id=ticket.id, number=ticket.number,
                                           reason=reason)))
    return Change(updated, tuple(events))


def format_number(prefix: str, year: int, sequence: int) -> str:
    """``HD-2026-000042``: short enough to read on the phone, unique across replicas."""
    return f"{prefix}-{year}-{sequence:06d}"


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ticket:
    id: str
    number: str
    status: TicketStatus
    channel: Channel
    requester: Requester
    subject: str
    description: str
    created_at: datetime
    updated_at: datetime
    version: int = 1
    category_hint: str | None = None
    level: SupportLevel | None = None
    group_id: str | None = None
    group_name: str | None = None
    agent_id: str | None = None
    routing_sequence: int = 0
    resolution: str | None = None
    history: tuple[HistoryEntry, ...] = ()


@dataclass(frozen=True)
class Change:
    """A rule's verdict: the ticket after the change and the events it causes."""

    ticket: Ticket
    events: tuple[EventEnvelope, ...]


def open_ticket(
    request: TicketCreateRequest, *, ticket_id: str, number: str, now: datetime
) -> Change:
    ticket = Ticket(
        id=ticket_id,
        number=number,
        status=TicketStatus.NEW,
        channel=request.channel,
        requester=request.requester,
        subject=request.subject,
        description=request.description,
        category_hint=request.category_hint,
        created_at=now,
        updated_at=now,
        history=(HistoryEntry(now, "created", {"channel": request.channel.value}),),
    )
    created = new_event(
        TicketCreated(
            ticket_id=ticket_id,
            number=number,
            channel=request.channel,
            requester=request.requester,
            subject=request.subject,
            description=request.description,
            category_hint=request.category_hint,
            impact=request.impact,
            urgency=request.urgency,
            created_at=now,
        ),
        producer=PRODUCER,
        correlation_id=ticket_id,
        occurred_at=now,
    )
    return Change(ticket, (created,))


def apply_assignment(
    ticket: Ticket, assigned: TicketAssigned, *, cause: EventEnvelope, now: datetime
) -> Change | None:
    """Record routing's assignment; ``None`` when it is stale or already applied."""
    if assigned.sequence <= ticket.routing_sequence:
        return None
    status = ticket.status
    events: list[EventEnvelope] = []
    if TicketStatus.ASSIGNED in ALLOWED_TRANSITIONS[status]:
        new_status = TicketStatus.ASSIGNED
    else:
        new_status = status  # e.g. resolved: keep the status, still record who owns it
    updated = replace(
        ticket,
        status=new_status,
        level=assigned.level,
        group_id=assigned.group_id,
        group_name=assigned.group_name,
        agent_id=assigned.agent_id,
        routing_sequence=assigned.sequence,
        version=ticket.version + 1,
        updated_at=now,
        history=(
            *ticket.history,
            HistoryEntry(
                now,
                "assigned",
                {
                    "level": assigned.level.value,
                    "group_id": assigned.group_id,
                    "agent_id": assigned.agent_id,
                    "from_status": status.value,
                    "to_status": new_status.value,
                },
            ),
        ),
    )
    if new_status != status:
        events.append(
            new_event(
                TicketStatusChanged(
                    ticket_id=ticket.id,
                    number=ticket.number,
                    from_status=status,
                    to_status=new_status,
                    reason=f"assigned to {assigned.group_name} ({assigned.level.value})",
                    version=updated.version,
                ),
                producer=PRODUCER,
                correlation_id=cause.correlation_id,
                causation_id=str(cause.event_id),
                occurred_at=now,
            )
        )
    return Change(updated, tuple(events))
