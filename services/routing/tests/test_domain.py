"""Routing's assignment rule, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from sportello_contracts import new_event
from sportello_contracts.enums import Channel, SupportLevel
from sportello_contracts.events import Requester, TicketCreated
from sportello_routing.domain import Group, assign_new_ticket

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
DESK = Group("service-desk", "L1 Service Desk", SupportLevel.L1)


def test_a_new_ticket_goes_to_the_first_line() -> None:
    created = TicketCreated(ticket_id="t-9", number="HD-2026-000009", channel=Channel.PHONE,
                            requester=Requester(name="Pietro"), subject="Mouse",
                            description="rotto",
                            created_at=NOW)
    cause = new_event(created, producer="intake", correlation_id="t-9")
    decision = assign_new_ticket(created, default_group=DESK, cause=cause, now=NOW)
    assert decision.assignment.level is SupportLevel.L1
    assert decision.assignment.sequence == 1
    assert decision.assignment.history[0]["reason"] == "new ticket"
    [event] = decision.events
    assert event.type == "ticket.assigned"
    assert event.causation_id == str(cause.event_id)
    assert event.correlation_id == "t-9"
    assert event.payload == {"ticket_id": "t-9", "level": "L1", "group_id": "service-desk",
                             "group_name": "L1 Service Desk", "agent_id": None, "sequence": 1}
