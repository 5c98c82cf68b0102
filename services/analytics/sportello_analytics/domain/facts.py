"""A ticket's facts, folded from its events in the order they happened.

Events arrive in any order and some twice: the facts are always recomputed from the
ticket's whole, deduplicated stream, sorted by when each thing happened, so a late or
repeated event gives the same facts as the stream in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

LEVELS = ("L1", "L2", "L3", "L4")
TARGETS = ("first_response", "resolution", "level_time_box")
"""SLA's metrics: each ticket's targets end met or breached."""


@dataclass(frozen=True)
class Event:
    """An event as analytics keeps it: what any source (the bus, an import) gives."""

    id: str
    type: str
    ticket_id: str | None
    occurred_at: datetime
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class TicketFacts:
    ticket_id: str
    number: str | None = None
    channel: str | None = None
    category: str | None = None
    priority: str | None = None
    department: str | None = None
    customer_type: str | None = None
    contract_tier: str | None = None
    level: str | None = None
    group: str | None = None
    agent: str | None = None
    created_at: datetime | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    rated_at: datetime | None = None
    rating: int | None = None
    levels_passed: tuple[str, ...] = ()
    groups_passed: tuple[str, ...] = ()
    escalations_manual: int = 0
    escalations_automatic: int = 0
    escalated_from: tuple[str, ...] = ()
    reopens: int = 0
    sla: Mapping[str, str] = field(default_factory=dict)
    """Target -> "met" or "breached" (a breach is final even if the clock later stops)."""
    business_s: Mapping[str, float] = field(default_factory=dict)
    """Target -> the business time its clock counted when it last stopped (SLA's
    calendar: working hours, holidays, pauses while waiting for the requester)."""

    @property
    def escalations(self) -> int:
        return self.escalations_manual + self.escalations_automatic

    @property
    def first_contact_resolution(self) -> bool:
        """Solved by the first line, never escalated, never reopened."""
        return (self.resolved_at is not None and self.escalations == 0 and self.reopens == 0
                and set(self.levels_passed) <= {"L1"})

    def seconds(self, since: datetime | None, until: datetime | None) -> float | None:
        if since is None or until is None:
            return None
        return max(0.0, (until - since).total_seconds())

    @property
    def time_to_first_response_s(self) -> float | None:
        return self.seconds(self.created_at, self.first_response_at)

    @property
    def time_to_resolution_s(self) -> float | None:
        return self.seconds(self.created_at, self.resolved_at)


ORDER = {"ticket.created": 0, "ticket.triaged": 1, "ticket.assigned": 2}
"""Within one instant, creation comes first, then triage, then assignment."""


def ordered(events: Iterable[Event]) -> list[Event]:
    """The ticket's stream once per event id, in the order things happened."""
    unique = {e.id: e for e in events}
    return sorted(unique.values(), key=lambda e: (e.occurred_at, ORDER.get(e.type, 9), e.id))


def facts_of(ticket_id: str, events: Iterable[Event]) -> TicketFacts:
    facts = TicketFacts(ticket_id)
    for event in ordered(events):
        facts = apply(facts, event)
    return facts


def apply(f: TicketFacts, e: Event) -> TicketFacts:
    p = e.payload
    at = e.occurred_at
    match e.type:
        case "ticket.created":
            requester = p.get("requester") or {}
            return replace(
                f, number=p.get("number"), channel=p.get("channel"),
                created_at=_when(p.get("created_at")) or at,
                category=f.category or p.get("category_hint"),
                department=f.department or requester.get("department"),
                customer_type=f.customer_type or requester.get("customer_type"),
                contract_tier=f.contract_tier or requester.get("contract_tier"))
        case "ticket.triaged":
            return replace(f, category=p.get("category") or f.category,
                           priority=p.get("priority") or f.priority,
                           department=p.get("department") or f.department,
                           customer_type=p.get("customer_type") or f.customer_type,
                           contract_tier=p.get("contract_tier") or f.contract_tier)
        case "ticket.assigned":
            level, group = p.get("level"), p.get("group_name") or p.get("group_id")
            return replace(f, level=level, group=group, agent=p.get("agent_id") or f.agent,
                           levels_passed=_with(f.levels_passed, level),
                           groups_passed=_with(f.groups_passed, group))
        case "ticket.escalated":
            manual = p.get("kind") == "manual"
            return replace(
                f, escalations_manual=f.escalations_manual + (1 if manual else 0),
                escalations_automatic=f.escalations_automatic + (0 if manual else 1),
                escalated_from=(*f.escalated_from, str(p.get("from_level"))),
                level=p.get("to_level") or f.level,
                levels_passed=_with(f.levels_passed, p.get("to_level")))
        case "ticket.priority_changed":
            return replace(f, priority=p.get("to_priority") or f.priority)
        case "ticket.recategorised":  # a coordinator's correction: the category it had
            return replace(f, category=p.get("to_category") or f.category)
        case "ticket.message_added":
            if (p.get("author") == "agent" and p.get("visibility") == "public"
                    and f.first_response_at is None):
                return replace(f, first_response_at=_when(p.get("at")) or at)
            return f
        case "ticket.resolved":  # the resolution is an answer to the requester too
            return replace(f, resolved_at=at, agent=p.get("resolved_by") or f.agent,
                           first_response_at=f.first_response_at or at)
        case "ticket.closed":
            return replace(f, closed_at=at, resolved_at=f.resolved_at or at)
        case "ticket.reopened":  # the resolution clock runs again: its next stop counts
            business = {k: v for k, v in f.business_s.items() if k != "resolution"}
            return replace(f, reopens=f.reopens + 1, resolved_at=None, closed_at=None,
                           business_s=business)
        case "ticket.rated":
            return replace(f, rating=int(p["score"]), rated_at=at)
        case "sla.breached":
            return replace(f, sla={**f.sla, str(p.get("metric")): "breached"})
        case "sla.clock_stopped":
            return replace(f, business_s={**f.business_s,
                                          str(p.get("metric")): float(p["business_s"])})
        case "sla.met":
            metric = str(p.get("metric"))
            if f.sla.get(metric) == "breached":
                return f
            return replace(f, sla={**f.sla, metric: "met"})
        case _:
            return f


def _with(items: tuple[str, ...], item: str | None) -> tuple[str, ...]:
    return items if item is None or item in items else (*items, item)


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None
