"""A ServiceNow incident's rows as Sportello's events, without I/O."""

from __future__ import annotations

from sportello_analytics.domain import servicenow
from sportello_analytics.domain.facts import facts_of

HEADER = ["number", "ident_state", "reopen_count", "sys_mod_count", "made_sla", "caller_id",
          "opened_at", "sys_created_at", "sys_updated_at", "contact_type", "location",
          "category", "category", "impact", "urgency", "priority", "assignment_group",
          "assigned_to", "resolved_by", "resolved_at", "closed_at"]


def row(state: str, mod: int, updated: str, *, reopens: int = 0, priority: str = "3",
        group: str = "56", agent: str = "?", made: str = "true") -> list[str]:
    return ["0000045", state, str(reopens), str(mod), made, "2403", "29/2/2016 01:16",
            "29/2/2016 01:23", updated, "Self service", "143", "55", "170", "2", "2",
            priority, group, agent, "149", "1/3/2016 10:00", "5/3/2016 12:00"]


def test_an_incident_with_a_reopening_a_priority_change_and_a_missed_sla() -> None:
    rows = list(servicenow.rows_of(HEADER, [
        row("Active", 2, "29/2/2016 02:00", priority="2", agent="7", made="false"),
        row("New", 0, "29/2/2016 01:23", made="false"),
        row("Resolved", 3, "29/2/2016 05:00", priority="2", agent="7", made="false"),
        row("Active", 4, "29/2/2016 05:00", reopens=1, priority="1", agent="7", made="false"),
        row("Closed", 5, "5/3/2016 12:00", reopens=1, priority="1", agent="7", made="false"),
    ]))
    assert rows[0]["category"] == "55"
    assert rows[0]["category_2"] == "170"
    events = servicenow.incident_events("0000045", rows)
    types = [e.type for e in events]
    assert types[:3] == ["ticket.created", "ticket.triaged", "ticket.assigned"]
    assert types.count("ticket.priority_changed") == 2
    assert types.count("ticket.reopened") == 1
    assert types[-3:] == ["ticket.resolved", "ticket.closed", "sla.breached"]
    facts = facts_of("servicenow-0000045", events)
    assert (facts.channel, facts.priority, facts.department, facts.category) == (
        "web", "P1", "location 143", "category 55")
    assert (facts.agent, facts.reopens, facts.sla) == ("agent 149", 1, {"resolution": "breached"})
    assert facts.time_to_resolution_s == (24 + 8) * 3600 + 44 * 60  # opened 01:16, 1/3 10:00
    again = servicenow.incident_events("0000045", list(reversed(rows)))
    assert [e.id for e in again] == [e.id for e in events]  # a re-import keeps the same ids


def test_an_incident_never_resolved_is_open_and_unknown_values_are_left_out() -> None:
    open_row = row("Active", 1, "29/2/2016 02:00", group="?")
    open_row[-2:] = ["?", "?"]
    facts = facts_of("x", servicenow.incident_events("0000046", list(
        servicenow.rows_of(HEADER, [open_row]))))
    assert facts.resolved_at is None
    assert facts.group is None
    assert facts.sla == {"resolution": "met"}
