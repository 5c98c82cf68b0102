"""The desk as operators see it: each ticket's line in the queues, folded from the events
the services publish, and the rules of queue views, sorting, cursors and versions. No I/O.

The gateway keeps this one projection (its ``desk`` collection) so that queues can be
filtered, sorted and paged over every ticket, and so that the live stream knows whose a
ticket is, without asking three services for every list. The ticket's record,
conversation, assignment and clocks stay with their owners: the workspace reads those.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sportello_contracts import EventEnvelope, parse_payload
from sportello_contracts.enums import Priority, SupportLevel, TicketStatus
from sportello_contracts.events import (
    SlaBreached,
    SlaMet,
    SlaTimeLimitSet,
    SlaWarning,
    TicketAssigned,
    TicketCreated,
    TicketEscalated,
    TicketMessageAdded,
    TicketPriorityChanged,
    TicketRecategorised,
    TicketStatusChanged,
    TicketTriaged,
)

CLOSED_STATES = (TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value)


@dataclass(frozen=True)
class LineUpdate:
    """One event's change to a ticket's queue line, written as one upsert.

    ``newer_than``: (field, value) — applied only when the stored field is lower (or
    missing), so a late copy of an older event loses; ``None``: always applied.
    """

    ticket_id: str
    set: dict[str, Any]
    on_insert: dict[str, Any] = field(default_factory=dict)
    newer_than: tuple[str, int] | None = None
    set_if_missing: dict[str, Any] = field(default_factory=dict)
    """Written only where the line has no value yet (the first priority, from triage)."""


def line_update(envelope: EventEnvelope) -> LineUpdate | None:
    """What an event changes in the ticket's line; None for events that change nothing."""
    kind = envelope.type
    at = envelope.occurred_at
    if kind == TicketCreated.event_type:
        created = parse_payload(envelope, TicketCreated)
        return LineUpdate(created.ticket_id, set={
            "number": created.number, "subject": created.subject,
            "requester_name": created.requester.name,
            "requester_email": (str(created.requester.email).lower()
                                if created.requester.email else None),
            "channel": created.channel.value, "created_at": created.created_at,
            "department": created.requester.department,
        }, on_insert={"status": TicketStatus.NEW.value, "status_version": 0,
                      "updated_at": at})
    if kind == TicketStatusChanged.event_type:
        changed = parse_payload(envelope, TicketStatusChanged)
        return LineUpdate(changed.ticket_id, set={
            "status": changed.to_status.value, "status_version": changed.version,
            "number": changed.number, "updated_at": at,
        }, newer_than=("status_version", changed.version))
    if kind == TicketTriaged.event_type:
        triaged = parse_payload(envelope, TicketTriaged)
        return LineUpdate(triaged.ticket_id, set={"category": triaged.category},
                          set_if_missing={"priority": triaged.priority.value})
    if kind == TicketRecategorised.event_type:
        recategorised = parse_payload(envelope, TicketRecategorised)
        return LineUpdate(recategorised.ticket_id, set={"category": recategorised.to_category,
                                                        "updated_at": at})
    if kind == TicketPriorityChanged.event_type:
        changed_priority = parse_payload(envelope, TicketPriorityChanged)
        return LineUpdate(changed_priority.ticket_id,
                          set={"priority": changed_priority.to_priority.value,
                               "updated_at": at})
    if kind == TicketAssigned.event_type:
        assigned = parse_payload(envelope, TicketAssigned)
        return LineUpdate(assigned.ticket_id, set={
            "level": assigned.level.value, "group_id": assigned.group_id,
            "group_name": assigned.group_name, "agent_id": assigned.agent_id,
            "owner_group_id": assigned.owner_group_id,
            "routing_sequence": assigned.sequence, "updated_at": at,
        }, newer_than=("routing_sequence", assigned.sequence))
    if kind == TicketEscalated.event_type:
        escalated = parse_payload(envelope, TicketEscalated)
        return LineUpdate(escalated.ticket_id, set={"escalations_at": at, "updated_at": at})
    if kind == TicketMessageAdded.event_type:
        message = parse_payload(envelope, TicketMessageAdded)
        return LineUpdate(message.ticket_id, set={
            "last_message_at": message.at, "last_author": message.author.value,
            "updated_at": at})
    if kind == SlaTimeLimitSet.event_type:
        limit = parse_payload(envelope, SlaTimeLimitSet)
        return LineUpdate(limit.ticket_id, set={"due_at": limit.due_at})
    if kind in (SlaWarning.event_type, SlaBreached.event_type, SlaMet.event_type):
        clock: SlaWarning | SlaBreached | SlaMet = parse_payload(envelope)
        state = {SlaWarning.event_type: "warning", SlaBreached.event_type: "breached",
                 SlaMet.event_type: "met"}[kind]
        return LineUpdate(clock.ticket_id, set={f"clocks.{clock.metric.value}": state,
                                                "sla_state": state, "updated_at": at})
    return None


def groups_of(line: dict[str, Any] | None) -> tuple[str | None, ...]:
    """The groups whose people see a ticket: the one holding it, and the owner after a
    hand-back."""
    if line is None:
        return ()
    return (line.get("group_id"), line.get("owner_group_id"))


def event_groups(envelope: EventEnvelope, line: dict[str, Any] | None) -> tuple[str | None, ...]:
    """Whose an event is: the group it names (an assignment, an escalation), else the
    group the ticket's line says holds it."""
    payload = envelope.payload
    named = (payload.get("group_id"), payload.get("owner_group_id"), payload.get("to_group"),
             payload.get("from_group"))
    return (*named, *groups_of(line))


LIVE_FIELDS_LEFT_OUT = frozenset({"description", "body", "resolution", "comment", "requester"})


def live_summary(envelope: EventEnvelope, line: dict[str, Any] | None) -> dict[str, Any]:
    """What the live stream carries: enough to update a queue or say an open ticket changed,
    without the texts (the console reads the workspace for those)."""
    payload = {k: v for k, v in envelope.payload.items() if k not in LIVE_FIELDS_LEFT_OUT}
    return {"type": envelope.type, "event_id": str(envelope.event_id),
            "ticket_id": envelope.ticket_id,
            "number": payload.get("number") or (line or {}).get("number"),
            "occurred_at": envelope.occurred_at.isoformat(), "payload": payload}


# --- queue views ---------------------------------------------------------------------------


class View(StrEnum):
    OPEN = "open"
    MINE = "mine"
    GROUPS = "groups"
    UNASSIGNED = "unassigned"
    BREACHING = "breaching"
    WAITING = "waiting"
    ALL = "all"


class Sort(StrEnum):
    PRIORITY = "priority"
    """Most urgent first, then oldest."""
    OLDEST = "created"
    NEWEST = "-created"
    DUE = "due"
    """Nearest time limit first (tickets without one last)."""
    UPDATED = "-updated"


SORT_KEYS: dict[Sort, tuple[tuple[str, int], ...]] = {
    Sort.PRIORITY: (("priority", 1), ("created_at", 1), ("_id", 1)),
    Sort.OLDEST: (("created_at", 1), ("_id", 1)),
    Sort.NEWEST: (("created_at", -1), ("_id", -1)),
    Sort.DUE: (("due_at", 1), ("_id", 1)),
    Sort.UPDATED: (("updated_at", -1), ("_id", -1)),
}

BREACHING_SOON = timedelta(minutes=30)


@dataclass(frozen=True)
class QueueQuery:
    """A queue as asked for, already validated: the store turns it into a filter with
    typed values only, never the caller's JSON."""

    view: View = View.OPEN
    level: SupportLevel | None = None
    group_id: str | None = None
    priority: Priority | None = None
    category: str | None = None
    status: TicketStatus | None = None
    requester: str | None = None
    text: str | None = None
    sort: Sort = Sort.PRIORITY
    limit: int = 50
    after: tuple[Any, ...] | None = None


def queue_filter(query: QueueQuery, *, me: str, groups: frozenset[str] | None,
                 now: datetime) -> dict[str, Any]:
    """The MongoDB filter of a queue: the view, the filters, what the person may see, and
    the cursor. Every value in it is one of ours or a typed, checked value."""
    parts: list[dict[str, Any]] = []
    if groups is not None:
        allowed = sorted(groups)
        parts.append({"$or": [{"group_id": {"$in": allowed}},
                              {"owner_group_id": {"$in": allowed}}]})
    if query.view is not View.ALL and query.status is None:
        parts.append({"status": {"$nin": list(CLOSED_STATES)}})
    if query.view is View.MINE:
        parts.append({"agent_id": me})
    elif query.view is View.UNASSIGNED:
        parts.append({"agent_id": None})
    elif query.view is View.WAITING:
        parts.append({"status": TicketStatus.WAITING_CUSTOMER.value})
    elif query.view is View.BREACHING:
        parts.append({"$or": [{"sla_state": {"$in": ["warning", "breached"]}},
                              {"due_at": {"$lte": now + BREACHING_SOON}}]})
    for name, value in (("level", query.level), ("group_id", query.group_id),
                        ("priority", query.priority), ("status", query.status)):
        if value is not None:
            parts.append({name: value.value if isinstance(value, StrEnum) else value})
    if query.category is not None:
        parts.append({"category": query.category})
    if query.requester is not None:
        parts.append({"requester_email": query.requester.lower()})
    if query.text:
        pattern = re.escape(query.text)
        parts.append({"$or": [{"subject": {"$regex": pattern, "$options": "i"}},
                              {"number": {"$regex": pattern, "$options": "i"}},
                              {"requester_name": {"$regex": pattern, "$options": "i"}}]})
    if query.sort is Sort.DUE:
        parts.append({"due_at": {"$ne": None}})
    elif query.sort is Sort.PRIORITY:  # lines wait a moment for triage to say it
        parts.append({"priority": {"$ne": None}})
    if query.after is not None:
        parts.append(after_cursor(SORT_KEYS[query.sort], query.after))
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def after_cursor(keys: tuple[tuple[str, int], ...], last: tuple[Any, ...]) -> dict[str, Any]:
    """Keyset paging: the lines that sort after ``last`` (the values of the page's last line
    in ``keys`` order)."""
    alternatives = []
    for i, (name, direction) in enumerate(keys):
        same = {keys[j][0]: last[j] for j in range(i)}
        alternatives.append({**same, name: {"$gt" if direction > 0 else "$lt": last[i]}})
    return {"$or": alternatives}


class BadCursor(ValueError):
    pass


def encode_cursor(sort: Sort, line: dict[str, Any]) -> str:
    values = []
    for name, _ in SORT_KEYS[sort]:
        value = line.get(name)
        values.append({"d": value.isoformat()} if isinstance(value, datetime) else value)
    raw = json.dumps({"s": sort.value, "v": values}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(sort: Sort, cursor: str) -> tuple[Any, ...]:
    """The cursor's values, each checked to be a string, a number or a date: a cursor
    is the caller's text and never reaches a filter unchecked."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if raw["s"] != sort.value or len(raw["v"]) != len(SORT_KEYS[sort]):
            raise BadCursor("the cursor belongs to another sort")
        values: list[Any] = []
        for value in raw["v"]:
            if isinstance(value, dict) and set(value) == {"d"} and isinstance(value["d"], str):
                values.append(datetime.fromisoformat(value["d"]))
            elif isinstance(value, str | int | float) and not isinstance(value, bool):
                values.append(value)
            else:
                raise BadCursor("the cursor holds something that is not ours")
        return tuple(values)
    except BadCursor:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise BadCursor("the cursor is not one this API gave out") from exc


# --- versions of a ticket as an operator saw it ------------------------------------------


def etag(ticket_version: int, assignment_version: int | None) -> str:
    """One tag for the two records a command may change: intake's ticket and routing's
    assignment. A command based on either one stale is refused."""
    return f'"{ticket_version}.{assignment_version or 0}"'


_ETAG = re.compile(r'^(?:W/)?"(\d{1,12})\.(\d{1,12})"$')


def read_etag(header: str) -> tuple[int, int] | None:
    found = _ETAG.match(header.strip())
    return (int(found.group(1)), int(found.group(2))) if found else None
