"""The stored form of a ticket, without I/O: every field has its key, and a save sends
only the fields a change touched."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

from sportello_contracts.api import TicketCreateRequest
from sportello_contracts.enums import Author, Channel, TicketStatus, Visibility
from sportello_intake.domain import Message, Ticket, add_message, change_status, open_ticket
from sportello_intake.store import (
    DERIVED_KEYS,
    RecentTickets,
    changed_fields,
    from_document,
    to_document,
)

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def opened() -> Ticket:
    request = TicketCreateRequest.model_validate({
        "requester": {"name": "Lucia", "email": "lucia@example.it"},
        "subject": "Password scaduta", "description": "Non riesco ad accedere",
        "channel": "email",
    })
    return open_ticket(request, ticket_id="t-1", number="HD-2026-000001", now=NOW,
                       origin_key="mail:abc@example.it").record


def test_every_field_of_a_ticket_has_its_key_in_the_stored_form() -> None:
    """A field stored under another name would never be sent by a save."""
    keys = set(to_document(opened()))
    assert keys == {"_id" if f.name == "id" else f.name for f in fields(Ticket)} | DERIVED_KEYS


def test_a_requesters_tickets_are_found_by_the_address_case_folded_and_its_domain() -> None:
    ticket = opened()
    shouting = replace(ticket, requester=ticket.requester.model_copy(
        update={"email": "Lucia@Example.IT"}))
    stored = to_document(shouting)
    assert stored["requester_email"] == "lucia@example.it"
    assert stored["requester_domain"] == "example.it"
    phoned = replace(ticket, requester=ticket.requester.model_copy(update={"email": None}))
    assert to_document(phoned)["requester_email"] is None
    assert to_document(phoned)["requester_domain"] is None


def test_a_status_change_sends_the_status_and_its_trace_not_the_conversation() -> None:
    before = replace(opened(), status=TicketStatus.ASSIGNED)
    after = change_status(before, TicketStatus.IN_PROGRESS, reason=None, actor="lucia",
                          resolution=None, now=NOW + timedelta(minutes=5)).record
    sent = changed_fields(before, after)
    assert set(sent) == {"status", "version", "updated_at", "history"}
    assert sent["status"] == "in_progress"
    assert sent["version"] == before.version + 1


def test_a_reply_sends_the_conversation() -> None:
    before = replace(opened(), status=TicketStatus.ASSIGNED)
    reply = Message(id="m2", author=Author.AGENT, visibility=Visibility.PUBLIC,
                    channel=Channel.EMAIL, body="Provi ora", at=NOW + timedelta(minutes=5))
    change = add_message(before, reply, now=NOW + timedelta(minutes=5))
    assert change is not None
    sent = changed_fields(before, change.record)
    assert {"messages", "version", "updated_at", "history"} <= set(sent)
    assert "requester" not in sent
    assert "subject" not in sent
    stored = {**to_document(before), **sent}
    assert from_document(stored) == change.record


def test_recent_tickets_keep_the_last_used_within_their_capacity() -> None:
    first = opened()
    second, third = replace(first, id="t-2"), replace(first, id="t-3")
    recent = RecentTickets(2)
    recent.put(first)
    recent.put(second)
    assert recent.get(first.id) is first  # used: now the most recent
    recent.put(third)
    assert (recent.get(first.id), recent.get(second.id), recent.get(third.id)) \
        == (first, None, third)
    recent.drop(first.id)
    assert recent.get(first.id) is None
    assert len(recent) == 1


def test_a_ticket_read_back_is_not_kept_so_the_ones_next_in_line_stay() -> None:
    """A backlog larger than the capacity: the first ticket's copy is gone by the time its
    assignment comes, and its change, read from the store, must not evict the second's."""
    first = opened()
    second, third = replace(first, id="t-2"), replace(first, id="t-3")
    recent = RecentTickets(2)
    for ticket in (first, second, third):
        recent.put(ticket)
    assert recent.get(first.id) is None
    recent.refresh(replace(first, version=2))
    assert recent.get(first.id) is None
    assert recent.get(second.id) is second
    recent.refresh(replace(second, version=2))
    kept = recent.get(second.id)
    assert kept is not None
    assert kept.version == 2


def test_no_recent_tickets_are_kept_with_capacity_zero() -> None:
    recent = RecentTickets(0)
    recent.put(opened())
    assert len(recent) == 0


def test_a_ticket_with_a_long_conversation_is_not_kept_nor_its_older_copy() -> None:
    short = opened()
    recent = RecentTickets(10, max_chars=100)
    recent.put(short)
    long_reply = Message(id="m-2", author=Author.AGENT, visibility=Visibility.PUBLIC,
                         channel=Channel.EMAIL, body="x" * 100, at=NOW)
    recent.put(replace(short, version=2, messages=(*short.messages, long_reply)))
    assert recent.get(short.id) is None
