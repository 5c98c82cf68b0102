"""Conversation rules without I/O: replies move the lifecycle, redeliveries are no-ops,
ratings and auto-close have their conditions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sportello_contracts.api import TicketCreateRequest
from sportello_contracts.enums import Author, Channel, TicketStatus, Visibility
from sportello_intake.domain import (
    AUTO_CLOSE_REASON,
    Message,
    RatingRefused,
    Ticket,
    TicketClosedForReplies,
    add_message,
    auto_close,
    change_status,
    open_ticket,
    rate,
)

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def ticket(status: TicketStatus = TicketStatus.ASSIGNED) -> Ticket:
    request = TicketCreateRequest.model_validate({
        "requester": {"name": "Lucia", "email": "lucia@example.it"},
        "subject": "Password scaduta", "description": "Non riesco ad accedere", "channel": "email",
    })
    opened = open_ticket(request, ticket_id="t-1", number="HD-2026-000001", now=NOW,
                         origin_key="mail:abc@example.it")
    return replace(opened.record, status=status)


def reply(author: Author = Author.REQUESTER, visibility: Visibility = Visibility.PUBLIC,
          external_id: str | None = "m-2@example.it") -> Message:
    return Message(id="m2", author=author, visibility=visibility, channel=Channel.EMAIL,
                   body="Ancora non va", at=NOW, external_id=external_id)


def test_opening_makes_the_description_the_first_message() -> None:
    t = ticket(TicketStatus.NEW)
    assert t.origin_key == "mail:abc@example.it"
    [first] = t.messages
    assert (first.author, first.visibility, first.body) == (
        Author.REQUESTER, Visibility.PUBLIC, "Non riesco ad accedere")


def test_a_message_is_appended_and_announced() -> None:
    change = add_message(ticket(), reply(), now=NOW)
    assert change is not None
    assert change.record.messages[-1].body == "Ancora non va"
    assert change.record.version == 2
    [event] = change.events
    assert event.type == "ticket.message_added"
    assert event.payload["author"] == "requester"
    assert event.payload["visibility"] == "public"


def test_the_same_channel_message_twice_is_a_no_op() -> None:
    change = add_message(ticket(), reply(), now=NOW)
    assert change is not None
    assert add_message(change.record, reply(), now=NOW) is None
    # Without a channel id nothing can be recognised: both are kept.
    again = add_message(change.record, reply(external_id=None), now=NOW)
    assert again is not None


def test_requester_reply_reopens_a_resolved_ticket() -> None:
    change = add_message(ticket(TicketStatus.RESOLVED), reply(), now=NOW)
    assert change is not None
    assert change.record.status is TicketStatus.REOPENED
    assert [e.type for e in change.events] == [
        "ticket.message_added", "ticket.status_changed", "ticket.reopened"]


def test_requester_reply_resumes_a_ticket_waiting_for_them() -> None:
    change = add_message(ticket(TicketStatus.WAITING_CUSTOMER), reply(), now=NOW)
    assert change is not None
    assert change.record.status is TicketStatus.IN_PROGRESS
    assert change.events[1].payload["from_status"] == "waiting_customer"


@pytest.mark.parametrize(("author", "visibility"), [
    (Author.AGENT, Visibility.PUBLIC), (Author.REQUESTER, Visibility.INTERNAL),
])
def test_only_the_requesters_public_reply_moves_the_lifecycle(
    author: Author, visibility: Visibility
) -> None:
    change = add_message(ticket(TicketStatus.RESOLVED), reply(author, visibility), now=NOW)
    assert change is not None
    assert change.record.status is TicketStatus.RESOLVED
    assert [e.type for e in change.events] == ["ticket.message_added"]


def test_a_closed_ticket_takes_no_more_messages() -> None:
    with pytest.raises(TicketClosedForReplies):
        add_message(ticket(TicketStatus.CLOSED), reply(), now=NOW)


def test_rating_only_once_and_only_after_resolution() -> None:
    with pytest.raises(RatingRefused, match="cannot be rated yet"):
        rate(ticket(TicketStatus.IN_PROGRESS), 5, None, now=NOW)
    change = rate(ticket(TicketStatus.RESOLVED), 4, "ok", now=NOW)
    assert change.record.rating is not None
    assert change.record.rating.score == 4
    assert change.events[0].payload["score"] == 4
    with pytest.raises(RatingRefused, match="already"):
        rate(change.record, 5, None, now=NOW)
    with pytest.raises(RatingRefused):
        rate(ticket(TicketStatus.CLOSED), 0, None, now=NOW)


def test_auto_close_waits_for_the_quiet_period() -> None:
    resolved = change_status(ticket(), TicketStatus.RESOLVED, reason=None, actor="a",
                             resolution="fatto", now=NOW).record
    assert resolved.resolved_at == NOW
    quiet = timedelta(days=7)
    assert auto_close(resolved, quiet_period=quiet, now=NOW + timedelta(days=6)) is None
    change = auto_close(resolved, quiet_period=quiet, now=NOW + timedelta(days=7))
    assert change is not None
    assert change.record.status is TicketStatus.CLOSED
    closed = next(e for e in change.events if e.type == "ticket.closed")
    assert closed.payload["reason"] == AUTO_CLOSE_REASON
    assert closed.payload["resolution"] == "fatto"
    reopened = replace(resolved, status=TicketStatus.REOPENED)
    assert auto_close(reopened, quiet_period=quiet, now=NOW + timedelta(days=30)) is None
