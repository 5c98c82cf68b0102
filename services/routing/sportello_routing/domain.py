"""Assignment rules: pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sportello_contracts import EventEnvelope, new_event
from sportello_contracts.enums import SupportLevel
from sportello_contracts.events import TicketAssigned, TicketCreated

PRODUCER = "routing"


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    level: SupportLevel


@dataclass(frozen=True)
class Assignment:
    """Who holds a ticket now; ``sequence`` grows with every move so that stale events lose."""

    ticket_id: str
    number: str
    level: SupportLevel
    group_id: str
    group_name: str
    sequence: int
    created_at: datetime
    agent_id: str | None = None
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Decision:
    assignment: Assignment
    events: tuple[EventEnvelope, ...]


def assign_new_ticket(
    created: TicketCreated, *, default_group: Group, cause: EventEnvelope, now: datetime
) -> Decision:
    """A new ticket starts at the first line: the default L1 group."""
    assignment = Assignment(
        ticket_id=created.ticket_id,
        number=created.number,
        level=default_group.level,
        group_id=default_group.id,
        group_name=default_group.name,
        sequence=1,
        created_at=now,
        history=(
            {
                "at": now,
                "kind": "assigned",
                "to_level": default_group.level.value,
                "to_group": default_group.id,
                "reason": "new ticket",
                "actor": "routing",
            },
        ),
    )
    event = new_event(
        TicketAssigned(
            ticket_id=created.ticket_id,
            level=assignment.level,
            group_id=assignment.group_id,
            group_name=assignment.group_name,
            agent_id=None,
            sequence=assignment.sequence,
        ),
        producer=PRODUCER,
        correlation_id=cause.correlation_id,
        causation_id=str(cause.event_id),
        occurred_at=now,
    )
    return Decision(assignment, (event,))
