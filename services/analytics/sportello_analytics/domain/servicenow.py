"""A ServiceNow incident event log (the UCI "incident management process enriched event
log" format: one row per update of an incident) as Sportello's own events.

What maps: opening (channel from ``contact_type``, the caller's ``location`` as the
department), category and priority (triage; each later priority change), each change of
assignment group (an assignment), waiting states, each reopening (``reopen_count``
rising), the resolution (``resolved_at``, else ``closed_at``), the closing, and whether
the SLA was made (the resolution target, met or breached). What has no counterpart:
support levels (every incident stays at L1, so escalation rates say nothing), the first
answer to the caller (the resolution counts as it), ratings, the customer's type,
``u_symptom``, ``cmdb_ci``, ``knowledge``, ``problem_id``, ``rfc``, ``vendor``,
``caused_by``, ``closed_code`` and the subcategory (the second ``category`` column).
Times are read as UTC, day first (``29/2/2016 01:16``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from sportello_analytics.domain.facts import Event
from sportello_contracts import new_event
from sportello_contracts.enums import (
    Channel,
    Impact,
    Priority,
    SlaMetric,
    SupportLevel,
    TicketStatus,
    Urgency,
)
from sportello_contracts.events import (
    Requester,
    SlaBreached,
    SlaMet,
    TicketAssigned,
    TicketClosed,
    TicketCreated,
    TicketPriorityChanged,
    TicketReopened,
    TicketResolved,
    TicketStatusChanged,
    TicketTriaged,
)

PRODUCER = "servicenow-import"
IDS = uuid.UUID("0f5d3a52-2b7e-4f0c-9d55-5a8e1c3b7d21")
CHANNELS = {"Phone": Channel.PHONE, "IVR": Channel.PHONE, "Email": Channel.EMAIL,
            "Self service": Channel.WEB, "Direct opening": Channel.WEB}
PRIORITIES = {"1": Priority.P1, "2": Priority.P2, "3": Priority.P3, "4": Priority.P4}
LEVELS_OF_3 = {"1": "high", "2": "medium", "3": "low"}
STATES = {"New": TicketStatus.NEW, "Active": TicketStatus.IN_PROGRESS,
          "Awaiting User Info": TicketStatus.WAITING_CUSTOMER,
          "Awaiting Vendor": TicketStatus.WAITING_CUSTOMER,
          "Awaiting Problem": TicketStatus.WAITING_CUSTOMER,
          "Awaiting Evidence": TicketStatus.WAITING_CUSTOMER,
          "Resolved": TicketStatus.RESOLVED, "Closed": TicketStatus.CLOSED}


def when(value: str) -> datetime | None:
    """``29/2/2016 01:16`` (day first), or None for ServiceNow's ``?``."""
    if not value or value == "?":
        return None
    return datetime.strptime(value, "%d/%m/%Y %H:%M").replace(tzinfo=UTC)


def known(value: str, prefix: str) -> str | None:
    return None if not value or value == "?" else f"{prefix} {value}"


def final_row(rows: Sequence[dict[str, str]]) -> dict[str, str]:
    """The incident as its last update left it."""
    return max(rows, key=lambda r: (int(r["sys_mod_count"] or 0), when(r["sys_updated_at"])
                                    or datetime.min.replace(tzinfo=UTC)))


def resolved_at(last: dict[str, str]) -> datetime | None:
    """When it was resolved: ``resolved_at``, else its closing."""
    return when(last["resolved_at"]) or when(last["closed_at"])


def incident_events(number: str, rows: Sequence[dict[str, str]]) -> list[Event]:
    """One incident's rows (any order) as the events Sportello's services would have
    published about it."""
    rows = sorted(rows, key=lambda r: (int(r["sys_mod_count"] or 0),
                                       when(r["sys_updated_at"]) or datetime.min.replace(
                                           tzinfo=UTC)))
    first, last = rows[0], final_row(rows)
    ticket_id = f"servicenow-{number}"
    opened = when(first["opened_at"]) or when(first["sys_created_at"])
    if opened is None:
        return []
    solved = resolved_at(last)
    if solved is not None:
        solved = max(solved, opened)
    made: list[tuple[BaseModel, datetime]] = []

    def add(payload: BaseModel, at: datetime) -> None:
        made.append((payload, at))

    channel = CHANNELS.get(first["contact_type"], Channel.PHONE)
    add(TicketCreated(
        ticket_id=ticket_id, number=number, channel=channel,
        requester=Requester(name=known(first["caller_id"], "caller") or "unknown caller",
                            department=known(first["location"], "location")),
        subject=f"ServiceNow incident {number}", description="",
        category_hint=known(last["category"], "category"), created_at=opened), opened)
    priority = PRIORITIES.get(first["priority"], Priority.P3)
    add(TicketTriaged(ticket_id=ticket_id, category=known(last["category"], "category")
                      or "uncategorised", priority=priority,
                      impact=Impact(LEVELS_OF_3.get(first["impact"], "medium")),
                      urgency=Urgency(LEVELS_OF_3.get(first["urgency"], "medium")),
                      customer_type="private",
                      department=known(first["location"], "location")), opened)
    group: str | None = None
    agent: str | None = None
    status, reopens, sequence = TicketStatus.NEW, 0, 0
    at = opened
    for row in rows:  # in update order: times rise by at least a microsecond a row, so
        # two updates in one minute (the log's precision) keep their order
        at = max(when(row["sys_updated_at"]) or at, at + timedelta(microseconds=1))
        row_priority = PRIORITIES.get(row["priority"], priority)
        if row_priority is not priority:
            add(TicketPriorityChanged(ticket_id=ticket_id, from_priority=priority,
                                      to_priority=row_priority, reason="ServiceNow update"), at)
            priority = row_priority
        row_group, row_agent = known(row["assignment_group"], "group"), known(
            row["assigned_to"], "agent")
        if row_group and (row_group, row_agent) != (group, agent):
            sequence += 1
            add(TicketAssigned(ticket_id=ticket_id, level=SupportLevel.L1, group_id=row_group,
                               group_name=row_group, agent_id=row_agent, sequence=sequence),
                at)
            group, agent = row_group, row_agent
        row_reopens = int(row["reopen_count"] or 0)
        for _ in range(row_reopens - reopens):  # before the final resolution, always
            reopen_at = min(at, solved - timedelta(seconds=1)) if solved else at
            add(TicketReopened(ticket_id=ticket_id, number=number), reopen_at)
        reopens = max(reopens, row_reopens)
        state = STATES.get(row["ident_state"])
        if state is not None and state is not status and state not in (
                TicketStatus.RESOLVED, TicketStatus.CLOSED):
            add(TicketStatusChanged(ticket_id=ticket_id, number=number, from_status=status,
                                    to_status=state, version=len(made) + 1), at)
            status = state
    if solved is not None:
        add(TicketResolved(ticket_id=ticket_id, number=number, resolution="",
                           resolved_by=known(last["resolved_by"], "agent")), solved)
    closed = when(last["closed_at"])
    if closed is not None:
        add(TicketClosed(ticket_id=ticket_id, number=number, category=known(
            last["category"], "category")), max(closed, solved or opened))
    outcome_at = solved or closed or opened
    sla: dict[str, Any] = {"ticket_id": ticket_id, "clock_id": f"{ticket_id}:resolution",
                           "metric": SlaMetric.RESOLUTION, "priority": priority,
                           "due_at": outcome_at}
    if last["made_sla"] == "true":
        add(SlaMet(**sla, stopped_at=outcome_at), outcome_at)
    else:
        add(SlaBreached(**sla), outcome_at)
    events = []
    for n, (payload, at) in enumerate(made):
        envelope = new_event(payload, producer=PRODUCER, correlation_id=ticket_id,
                             occurred_at=at, event_id=uuid.uuid5(IDS, f"{number}:{n}"))
        events.append(Event(str(envelope.event_id), envelope.type, ticket_id, at,
                            envelope.payload))
    return events


def incidents(rows: Iterable[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        grouped.setdefault(row["number"], []).append(row)
    return grouped


def rows_of(header: Sequence[str], records: Iterable[Sequence[str]]) -> Iterable[dict[str, str]]:
    """Rows by column name; of two columns with one name (this log's two ``category``),
    the first is kept: the second is the subcategory."""
    names = []
    for name in header:
        names.append(name if name not in names else f"{name}_2")
    for record in records:
        yield dict(zip(names, record, strict=False))
