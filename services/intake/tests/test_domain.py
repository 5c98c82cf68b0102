"""Intake's ticket rules, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sportello_contracts import EventEnvelope, new_event
from sportello_contracts.api import TicketCreateRequest
from sportello_contracts.enums import SupportLevel, TicketStatus
from sportello_contracts.events import TicketAssigned
from sportello_intake.domain import (
    ALLOWED_TRANSITIONS,
    IllegalTransition,
    apply_assignment,
    check_transition,
    format_number,
    open_ticket,
)

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def request() -> TicketCreateRequest:
    return TicketCreateRequest.model_validate({
        "requester": {"name": "Lucia", "email": "lucia@example.it"},
        "subject": "Password scaduta", "description": "Non riesco ad accedere", "channel": "web",
    })


def assigned_event(sequence: int = 1, level: SupportLevel = SupportLevel.L1) -> TicketAssigned:
    return TicketAssigned(ticket_id="t-1", level=level, group_id="service-desk",
                          group_name="L1 Service Desk", sequence=sequence)


def cause(payload: TicketAssigned) -> EventEnvelope:
    return new_event(payload, producer="routing", correlation_id="t-1")


def test_numbers_are_human_friendly() -> None:
    assert format_number("HD", 2026, 42) == "HD-2026-000042"


def test_opening_a_ticket_stores_it_new_and_announces_it() -> None:
    change = open_ticket(request(), ticket_id="t-1", number="HD-2026-000001", now=NOW)
    assert change.record.status is TicketStatus.NEW
    assert change.record.version == 1
    [event] = change.events
    assert event.type == "ticket.created"
    assert event.correlation_id == "t-1"
    assert event.payload["number"] == "HD-2026-000001"


def test_an_assignment_moves_a_new_ticket_to_assigned_and_says_so() -> None:
    ticket = open_ticket(request(), ticket_id="t-1", number="HD-1", now=NOW).record
    payload = assigned_event()
    trigger = cause(payload)
    change = apply_assignment(ticket, payload, cause=trigger, now=NOW + timedelta(seconds=1))
    assert change is not None
    assert change.record.status is TicketStatus.ASSIGNED
    assert (change.record.level, change.record.group_id) == (SupportLevel.L1, "service-desk")
    assert change.record.version == 2
    [event] = change.events
    assert event.type == "ticket.status_changed"
    assert event.payload["from_status"] == "new"
    assert event.payload["to_status"] == "assigned"
    assert event.causation_id == str(trigger.event_id)
    assert event.correlation_id == trigger.correlation_id


def test_a_repeated_or_stale_assignment_changes_nothing() -> None:
    ticket = open_ticket(request(), ticket_id="t-1", number="HD-1", now=NOW).record
    second = assigned_event(sequence=2, level=SupportLevel.L2)
    ticket = apply_assignment(ticket, second, cause=cause(second), now=NOW).record  # type: ignore[union-attr]
    first = assigned_event(sequence=1)
    assert apply_assignment(ticket, first, cause=cause(first), now=NOW) is None
    assert apply_assignment(ticket, second, cause=cause(second), now=NOW) is None
    assert ticket.level is SupportLevel.L2


def test_a_reassignment_keeps_status_assigned_without_a_status_event() -> None:
    ticket = open_ticket(request(), ticket_id="t-1", number="HD-1", now=NOW).record
    one = assigned_event(sequence=1)
    ticket = apply_assignment(ticket, one, cause=cause(one), now=NOW).record  # type: ignore[union-attr]
    two = assigned_event(sequence=2, level=SupportLevel.L2)
    change = apply_assignment(ticket, two, cause=cause(two), now=NOW)
    assert change is not None
    assert change.events == ()
    assert change.record.level is SupportLevel.L2
    assert change.record.version == 3


@pytest.mark.parametrize(
    ("current", "wanted"),
    [(TicketStatus.CLOSED, TicketStatus.IN_PROGRESS), (TicketStatus.NEW, TicketStatus.REOPENED),
     (TicketStatus.RESOLVED, TicketStatus.IN_PROGRESS)],
)
def test_illegal_transitions_name_the_allowed_ones(current: TicketStatus,
                                                   wanted: TicketStatus) -> None:
    with pytest.raises(IllegalTransition) as refused:
        check_transition(current, wanted)
    assert refused.value.allowed == sorted(ALLOWED_TRANSITIONS[current])


def test_every_status_has_a_row_and_closed_is_final() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(TicketStatus)
    assert ALLOWED_TRANSITIONS[TicketStatus.CLOSED] == frozenset()
    check_transition(TicketStatus.RESOLVED, TicketStatus.REOPENED)


LIFECYCLE = """
                 new assigned in_progress waiting_customer resolved reopened closed
new               .     y          .             .            y        .       y
assigned          .     y          y             y            y        .       .
in_progress       .     y          .             y            y        .       .
waiting_customer  .     y          y             .            y        .       .
resolved          .     .          .             .            .        y       y
reopened          .     y          y             y            y        .       .
closed            .     .          .             .            .        .       .
"""
"""The whole lifecycle, written out independently of ``ALLOWED_TRANSITIONS``: each row a
current status, each column a wanted one, ``y`` where the move is legal. Changing the
table in the code means changing this one on purpose."""


def lifecycle() -> dict[tuple[TicketStatus, TicketStatus], bool]:
    lines = [line.split() for line in LIFECYCLE.strip().splitlines()]
    columns = [TicketStatus(c) for c in lines[0]]
    return {(TicketStatus(row[0]), wanted): mark == "y"
            for row in lines[1:] for wanted, mark in zip(columns, row[1:], strict=True)}


@pytest.mark.parametrize(("current", "wanted"),
                         [(c, w) for c in TicketStatus for w in TicketStatus])
def test_every_pair_of_statuses_is_pinned(current: TicketStatus, wanted: TicketStatus) -> None:
    legal = lifecycle()[(current, wanted)]
    if legal:
        check_transition(current, wanted)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(current, wanted)
