"""The ticket and its lifecycle: pure rules, no I/O.

The store loads a ``Ticket``, a rule returns what changes and which events
it causes, and the store writes both in one document update.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sportello_contracts import EventEnvelope, new_event
from sportello_contracts.api import TicketCreateRequest
from sportello_contracts.enums import Author, Channel, SupportLevel, TicketStatus, Visibility
from sportello_contracts.events import (
    LONG,
    Requester,
    TicketAssigned,
    TicketClosed,
    TicketCreated,
    TicketMessageAdded,
    TicketRated,
    TicketReopened,
    TicketResolved,
    TicketStatusChanged,
)
from sportello_runtime.change import Change

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
) -> Change[Ticket]:
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
        resolved_at=now if wanted is S.RESOLVED else ticket.resolved_at,
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
            language=ticket.requester.language, level=ticket.level,
            created_at=ticket.created_at, resolved_at=ticket.resolved_at,
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
class AttachmentRef:
    """A stored file; the bytes live in the attachments collection, not in the ticket."""

    id: str
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Message:
    """One entry of the conversation, whichever channel brought it."""

    id: str
    author: Author
    visibility: Visibility
    channel: Channel | None
    body: str
    at: datetime
    author_name: str | None = None
    author_id: str | None = None
    external_id: str | None = None
    """The channel's own id (an e-mail Message-ID, a chat message id): a redelivery is a no-op."""
    attachments: tuple[AttachmentRef, ...] = ()
    call: dict[str, Any] | None = None


@dataclass(frozen=True)
class Rating:
    score: int
    comment: str | None
    at: datetime


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
    origin_key: str = ""
    """What makes creating it idempotent: Idempotency-Key, chat conversation, Message-ID."""
    origin_fingerprint: str | None = None
    category_hint: str | None = None
    level: SupportLevel | None = None
    group_id: str | None = None
    group_name: str | None = None
    agent_id: str | None = None
    routing_sequence: int = 0
    resolution: str | None = None
    resolved_at: datetime | None = None
    rating: Rating | None = None
    messages: tuple[Message, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    time_limit: datetime | None = None
    """The resolution clock's due instant, as SLA last announced it (None: not known yet, or
    paused while waiting for the requester). Written beside the versioned fields, not as a
    change: SLA moving the limit must not make an agent's edit stale (``TicketStore``)."""
    time_limit_as_of: datetime | None = None
    """When the announced change happened: an older announcement arriving late is ignored."""
    suggestions: tuple[tuple[str, str | None], ...] = ()
    """Public articles knowledge suggested (title, link), written beside the versioned
    fields like the time limit: the acknowledgement carries them when they come first."""


def description_message(request: TicketCreateRequest, *, message_id: str,
                        now: datetime) -> Message:
    """The requester's own words, as the channel gave them: the conversation's first entry."""
    return Message(id=message_id, author=Author.REQUESTER, visibility=Visibility.PUBLIC,
                   channel=request.channel, body=request.description, at=now,
                   author_name=request.requester.name)


def open_ticket(
    request: TicketCreateRequest,
    *,
    ticket_id: str,
    number: str,
    now: datetime,
    origin_key: str | None = None,
    fingerprint: str | None = None,
    first_message: Message | None = None,
) -> Change[Ticket]:
    """A new ticket; its description is also the first message of its conversation."""
    message = first_message or description_message(request, message_id=f"{ticket_id}:1",
                                                    now=now)
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
        origin_key=origin_key or f"ticket:{ticket_id}",
        origin_fingerprint=fingerprint,
        messages=(message,),
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


class TicketClosedForReplies(Exception):
    """A closed ticket takes no more messages: the channel opens a follow-up ticket instead."""


def has_message(ticket: Ticket, external_id: str | None) -> bool:
    return external_id is not None and any(m.external_id == external_id for m in ticket.messages)


def add_message(ticket: Ticket, message: Message, *, now: datetime) -> Change[Ticket] | None:
    """Append a message; ``None`` when the channel delivered it before.

    A requester's public reply moves the ticket on: a resolved ticket reopens
    and a ticket waiting for the customer goes back to work (its SLA clocks resume).
    """
    if has_message(ticket, message.external_id):
        return None
    if ticket.status is S.CLOSED:
        raise TicketClosedForReplies(ticket.number)
    status = ticket.status
    new_status = status
    reason = None
    if message.author is Author.REQUESTER and message.visibility is Visibility.PUBLIC:
        if status is S.RESOLVED:
            new_status, reason = S.REOPENED, "the requester replied after the resolution"
        elif status is S.WAITING_CUSTOMER:
            new_status, reason = S.IN_PROGRESS, "the requester replied"
    updated = replace(
        ticket,
        status=new_status,
        version=ticket.version + 1,
        updated_at=now,
        messages=(*ticket.messages, message),
        history=(*ticket.history, HistoryEntry(now, "message_added", {
            "message_id": message.id, "author": message.author.value,
            "visibility": message.visibility.value,
        })),
    )

    def event(payload: Any) -> EventEnvelope:
        return new_event(payload, producer=PRODUCER, correlation_id=ticket.id, occurred_at=now)

    events = [event(TicketMessageAdded(
        ticket_id=ticket.id, number=ticket.number, message_id=message.id, author=message.author,
        visibility=message.visibility, channel=message.channel, body=message.body[:LONG],
        at=message.at,
    ))]
    if new_status is not status:
        updated = replace(updated, history=(*updated.history, HistoryEntry(
            now, "status_changed", {"from": status.value, "to": new_status.value,
                                    "reason": reason, "actor": "requester"})))
        events.append(event(TicketStatusChanged(
            ticket_id=ticket.id, number=ticket.number, from_status=status, to_status=new_status,
            reason=reason, version=updated.version,
        )))
        if new_status is S.REOPENED:
            events.append(event(TicketReopened(ticket_id=ticket.id, number=ticket.number,
                                               reason=reason)))
    return Change(updated, tuple(events))


class RatingRefused(Exception):
    pass


RATABLE = frozenset({S.RESOLVED, S.CLOSED})


def rate(ticket: Ticket, score: int, comment: str | None, *, now: datetime) -> Change[Ticket]:
    """The requester's satisfaction, once per ticket, after it is resolved."""
    if ticket.status not in RATABLE:
        raise RatingRefused(f"a {ticket.status.value} ticket cannot be rated yet")
    if ticket.rating is not None:
        raise RatingRefused("this ticket has already been rated")
    if not 1 <= score <= 5:
        raise RatingRefused("the score goes from 1 to 5")
    updated = replace(
        ticket,
        rating=Rating(score, comment, now),
        version=ticket.version + 1,
        updated_at=now,
        history=(*ticket.history, HistoryEntry(now, "rated", {"score": score})),
    )
    rated = new_event(
        TicketRated(ticket_id=ticket.id, number=ticket.number, score=score, comment=comment),
        producer=PRODUCER, correlation_id=ticket.id, occurred_at=now,
    )
    return Change(updated, (rated,))


AUTO_CLOSE_REASON = "closed automatically: no reply from the requester after the resolution"


def auto_close(ticket: Ticket, *, quiet_period: timedelta, now: datetime) -> Change[Ticket] | None:
    """Close a resolved ticket the requester left quiet; ``None`` when it is not due."""
    if ticket.status is not S.RESOLVED or ticket.resolved_at is None:
        return None
    if now - ticket.resolved_at < quiet_period:
        return None
    return change_status(ticket, S.CLOSED, reason=AUTO_CLOSE_REASON, actor="system",
                         resolution=None, now=now)


def apply_assignment(
    ticket: Ticket, assigned: TicketAssigned, *, cause: EventEnvelope, now: datetime
) -> Change[Ticket] | None:
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

