"""Routing's rules: triage, priority, choosing a group and an agent, escalation. No I/O.

The store loads groups, agents, the triage policy and a ticket's assignment;
these functions decide; the store writes the decision and its events in one
document update.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import rule_engine

from sportello_contracts import EventEnvelope, new_event
from sportello_contracts.enums import (
    ContractTier,
    CustomerType,
    EscalationKind,
    Impact,
    Priority,
    SupportLevel,
    Urgency,
)
from sportello_contracts.events import (
    TicketAssigned,
    TicketCreated,
    TicketEscalated,
    TicketPriorityChanged,
    TicketTriaged,
)
from sportello_runtime.change import Change

PRODUCER = "routing"
GENERAL = "general"
LEVEL_ORDER = [SupportLevel.L0, SupportLevel.L1, SupportLevel.L2, SupportLevel.L3, SupportLevel.L4]
PRIORITY_ORDER = [Priority.P1, Priority.P2, Priority.P3, Priority.P4]


class RoutingError(Exception):
    """A request the rules refuse; ``field`` names what is wrong when one thing is."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidPolicy(RoutingError):
    pass


class IllegalMove(RoutingError):
    pass


def level_rank(level: SupportLevel) -> int:
    return LEVEL_ORDER.index(level)


# --- groups and agents ---------------------------------------------------------


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    level: SupportLevel
    categories: tuple[str, ...] = ()
    escalates_to: str | None = None
    default_for_level: bool = False
    vendor_contact: str | None = None


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    level: SupportLevel
    groups: tuple[str, ...]
    skills: tuple[str, ...] = ()
    capacity: int = 5
    available: bool = True
    open_tickets: int = 0
    last_assigned_at: datetime | None = None

    @property
    def load(self) -> float:
        return self.open_tickets / self.capacity if self.capacity else float("inf")

    @property
    def has_room(self) -> bool:
        return self.available and self.open_tickets < self.capacity


def check_groups(groups: Sequence[Group]) -> None:
    """Escalation chains must point to existing groups at a higher level, and never loop."""
    by_id = {g.id: g for g in groups}
    for group in groups:
        seen = {group.id}
        current = group
        while current.escalates_to is not None:
            target = by_id.get(current.escalates_to)
            if target is None:
                raise InvalidPolicy(
                    f"group {current.id} escalates to unknown group {current.escalates_to}",
                    field="escalates_to",
                )
            if target.id in seen:
                raise InvalidPolicy(
                    f"escalation chain loops: {' -> '.join([*seen, target.id])}",
                    field="escalates_to",
                )
            if level_rank(target.level) <= level_rank(current.level):
                raise InvalidPolicy(
                    f"group {current.id} ({current.level.value}) may only escalate to a higher "
                    f"level, not to {target.id} ({target.level.value})",
                    field="escalates_to",
                )
            seen.add(target.id)
            current = target
    for group in groups:
        if group.level is SupportLevel.L4 and not group.vendor_contact:
            raise InvalidPolicy(f"vendor group {group.id} needs a vendor_contact",
                                field="vendor_contact")


def group_for(groups: Sequence[Group], level: SupportLevel, category: str) -> Group | None:
    """The group at ``level`` for ``category``, else that level's default group."""
    at_level = [g for g in groups if g.level is level]
    for group in at_level:
        if category in group.categories:
            return group
    for group in at_level:
        if group.default_for_level:
            return group
    return at_level[0] if at_level else None


def escalation_target(
    groups: Sequence[Group], current: Group, category: str
) -> Group | None:
    """Where a ticket goes when ``current`` cannot solve it: its chain, else the next level."""
    if current.escalates_to is not None:
        return next((g for g in groups if g.id == current.escalates_to), None)
    for level in LEVEL_ORDER[level_rank(current.level) + 1:]:
        target = group_for(groups, level, category)
        if target is not None:
            return target
    return None


def pick_agent(agents: Iterable[Agent], group_id: str, skill: str) -> Agent | None:
    """The available agent of the group with room, the needed skill and the lowest load.

    The skill is needed only when someone in the group has it (otherwise anyone
    may take the ticket). Ties go to whoever was assigned least recently, which
    makes equal loads round-robin.
    """
    members = [a for a in agents if group_id in a.groups]
    if any(skill in a.skills for a in members):
        members = [a for a in members if skill in a.skills]
    candidates = [a for a in members if a.has_room]
    if not candidates:
        return None
    never = datetime.min.replace(tzinfo=None)
    return min(
        candidates,
        key=lambda a: (
            a.load,
            a.last_assigned_at.replace(tzinfo=None) if a.last_assigned_at else never,
            a.id,
        ),
    )


# --- triage ----------------------------------------------------------------------

RULE_FIELDS = {
    "subject": rule_engine.DataType.STRING,
    "body": rule_engine.DataType.STRING,
    "text": rule_engine.DataType.STRING,
    "sender_domain": rule_engine.DataType.STRING,
    "department": rule_engine.DataType.STRING,
    "channel": rule_engine.DataType.STRING,
    "customer_type": rule_engine.DataType.STRING,
}
_RULE_CONTEXT = rule_engine.Context(
    regex_flags=re.IGNORECASE, type_resolver=rule_engine.type_resolver_from_dict(RULE_FIELDS)
)
_CATEGORY = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


@dataclass(frozen=True)
class TriageRule:
    """``when`` is a rule-engine expression over ``RULE_FIELDS``, e.g.
    ``text =~~ "vpn|wi-?fi" or department == "Network"``."""

    category: str | None
    when: str
    impact: Impact | None = None
    urgency: Urgency | None = None
    critical: bool = False


@dataclass(frozen=True)
class TriagePolicy:
    version: int
    rules: tuple[TriageRule, ...]
    matrix: Mapping[Impact, Mapping[Urgency, Priority]]
    tier_raise: Mapping[ContractTier, int]
    categories: tuple[str, ...]
    default_impact: Impact = Impact.MEDIUM
    default_urgency: Urgency = Urgency.MEDIUM


@functools.lru_cache(maxsize=1024)
def _compiled(expression: str) -> rule_engine.Rule:
    """Parsing an expression costs far more than matching it, and every ticket runs every
    rule of the policy: each distinct expression is compiled once per process."""
    return rule_engine.Rule(expression, context=_RULE_CONTEXT)


def compile_rule(rule: TriageRule, index: int) -> rule_engine.Rule:
    try:
        return _compiled(rule.when)
    except rule_engine.EngineError as exc:
        reason = getattr(exc, "message", str(exc))
        raise InvalidPolicy(f"rule {index} does not compile: {reason}",
                            field=f"rules.{index}.when") from exc


def check_policy(policy: TriagePolicy) -> None:
    """Refuse a policy that cannot work, saying which part and why."""
    for category in policy.categories:
        if not _CATEGORY.match(category):
            raise InvalidPolicy(f"category {category!r} must be a lower-case slug",
                                field="categories")
    if GENERAL not in policy.categories:
        raise InvalidPolicy(f"the categories must include {GENERAL!r}", field="categories")
    for index, rule in enumerate(policy.rules):
        compile_rule(rule, index)
        if rule.category is not None and rule.category not in policy.categories:
            raise InvalidPolicy(f"rule {index} names unknown category {rule.category!r}",
                                field=f"rules.{index}.category")
    for impact in Impact:
        for urgency in Urgency:
            if urgency not in policy.matrix.get(impact, {}):
                raise InvalidPolicy(
                    f"the priority matrix has no cell for impact {impact.value} and urgency "
                    f"{urgency.value}",
                    field=f"matrix.{impact.value}.{urgency.value}",
                )
    for tier, steps in policy.tier_raise.items():
        if not 0 <= steps <= 3:
            raise InvalidPolicy(f"tier {tier.value} may raise priority 0 to 3 steps",
                                field=f"tier_raise.{tier.value}")


@dataclass(frozen=True)
class TriageInput:
    subject: str
    body: str
    sender_email: str | None
    department: str | None
    channel: str
    customer_type: CustomerType
    contract_tier: ContractTier | None
    category_hint: str | None = None
    impact: Impact | None = None
    urgency: Urgency | None = None

    @classmethod
    def of(cls, created: TicketCreated) -> TriageInput:
        requester = created.requester
        return cls(
            subject=created.subject,
            body=created.description,
            sender_email=str(requester.email) if requester.email else None,
            department=requester.department,
            channel=created.channel.value,
            customer_type=requester.customer_type,
            contract_tier=requester.contract_tier,
            category_hint=created.category_hint,
            impact=created.impact,
            urgency=created.urgency,
        )

    def facts(self) -> dict[str, str]:
        domain = self.sender_email.rsplit("@", 1)[-1].lower() if self.sender_email else ""
        return {
            "subject": self.subject,
            "body": self.body,
            "text": f"{self.subject}\n{self.body}",
            "sender_domain": domain,
            "department": self.department or "",
            "channel": self.channel,
            "customer_type": self.customer_type.value,
        }


@dataclass(frozen=True)
class Triage:
    category: str
    impact: Impact
    urgency: Urgency
    priority: Priority
    critical: bool
    matched_rules: tuple[int, ...]
    policy_version: int


def raise_priority(priority: Priority, steps: int) -> Priority:
    return PRIORITY_ORDER[max(0, PRIORITY_ORDER.index(priority) - steps)]


def triage(ticket: TriageInput, policy: TriagePolicy) -> Triage:
    """Category from the channel's explicit hint or the first matching rule; priority from
    impact x urgency, raised by the contract tier and by criticality markers."""
    facts = ticket.facts()
    matched = [
        (index, rule) for index, rule in enumerate(policy.rules)
        if compile_rule(rule, index).matches(facts)
    ]
    category = GENERAL
    if ticket.category_hint and ticket.category_hint in policy.categories:
        category = ticket.category_hint
    else:
        category = next((r.category for _, r in matched if r.category), GENERAL)
    impact = ticket.impact or next(
        (r.impact for _, r in matched if r.impact), policy.default_impact
    )
    urgency = ticket.urgency or next(
        (r.urgency for _, r in matched if r.urgency), policy.default_urgency
    )
    priority = policy.matrix[impact][urgency]
    if ticket.customer_type is CustomerType.BUSINESS and ticket.contract_tier is not None:
        priority = raise_priority(priority, policy.tier_raise.get(ticket.contract_tier, 0))
    critical = any(r.critical for _, r in matched)
    if critical:
        priority = raise_priority(priority, 1)
    return Triage(category, impact, urgency, priority, critical,
                  tuple(i for i, _ in matched), policy.version)


# --- a ticket's assignment ------------------------------------------------------------


class AssignmentState:
    ASSIGNED = "assigned"  # an agent holds it
    QUEUED = "queued"  # waiting in its group's queue for an agent
    RELEASED = "released"  # resolved or closed: nobody holds it


@dataclass(frozen=True)
class Assignment:
    """Who holds a ticket; ``sequence`` grows with every move so that stale events lose."""

    ticket_id: str
    number: str
    category: str
    priority: Priority
    level: SupportLevel
    group_id: str
    group_name: str
    state: str
    sequence: int
    created_at: datetime
    updated_at: datetime
    agent_id: str | None = None
    owner_group_id: str | None = None
    customer_type: CustomerType = CustomerType.PRIVATE
    contract_tier: ContractTier | None = None
    department: str | None = None
    escalated_clocks: tuple[str, ...] = ()
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    version: int = 1


def released_agent(before: Assignment, after: Assignment) -> str | None:
    """The agent whose slot a change frees: the one who held the ticket and no longer does
    (escalated, handed back, resolved or closed)."""
    if before.agent_id and before.agent_id != after.agent_id:
        return before.agent_id
    return None


def _event(payload: Any, cause: EventEnvelope | None, correlation_id: str,
           now: datetime) -> EventEnvelope:
    return new_event(
        payload,
        producer=PRODUCER,
        correlation_id=cause.correlation_id if cause else correlation_id,
        causation_id=str(cause.event_id) if cause else None,
        occurred_at=now,
    )


def _assigned_event(a: Assignment, reason: str, cause: EventEnvelope | None,
                    now: datetime) -> EventEnvelope:
    return _event(
        TicketAssigned(ticket_id=a.ticket_id, level=a.level, group_id=a.group_id,
                       group_name=a.group_name, agent_id=a.agent_id, sequence=a.sequence,
                       reason=reason),
        cause, a.ticket_id, now,
    )


def route_new_ticket(
    created: TicketCreated,
    result: Triage,
    group: Group,
    agent: Agent | None,
    *,
    cause: EventEnvelope,
    now: datetime,
) -> Change[Assignment]:
    """A new ticket starts at the first line, with an agent when one has room."""
    assignment = Assignment(
        ticket_id=created.ticket_id,
        number=created.number,
        category=result.category,
        priority=result.priority,
        level=group.level,
        group_id=group.id,
        group_name=group.name,
        agent_id=agent.id if agent else None,
        state=AssignmentState.ASSIGNED if agent else AssignmentState.QUEUED,
        sequence=1,
        created_at=created.created_at,
        updated_at=now,
        customer_type=created.requester.customer_type,
        contract_tier=created.requester.contract_tier,
        department=created.requester.department,
        history=(
            {"at": now, "kind": "triaged", "category": result.category,
             "priority": result.priority.value, "rules": list(result.matched_rules),
             "policy_version": result.policy_version},
            {"at": now, "kind": "assigned", "to_level": group.level.value, "to_group": group.id,
             "agent_id": agent.id if agent else None, "reason": "new ticket", "actor": PRODUCER},
        ),
    )
    triaged = _event(
        TicketTriaged(
            ticket_id=created.ticket_id, category=result.category, priority=result.priority,
            impact=result.impact, urgency=result.urgency,
            customer_type=created.requester.customer_type,
            contract_tier=created.requester.contract_tier,
            department=created.requester.department, rules_version=result.policy_version,
        ),
        cause, created.ticket_id, now,
    )
    return Change(assignment, (triaged, _assigned_event(assignment, "new ticket", cause, now)))


def _moved(
    a: Assignment,
    *,
    group: Group,
    agent: Agent | None,
    now: datetime,
    entry: dict[str, Any],
    **changes: Any,
) -> Assignment:
    return replace(
        a,
        level=group.level,
        group_id=group.id,
        group_name=group.name,
        agent_id=agent.id if agent else None,
        state=AssignmentState.ASSIGNED if agent else AssignmentState.QUEUED,
        sequence=a.sequence + 1,
        updated_at=now,
        version=a.version + 1,
        history=(*a.history, {"at": now, **entry}),
        **changes,
    )


def give_to_agent(a: Assignment, agent: Agent, *, now: datetime) -> Change[Assignment]:
    """A queued ticket reaches an agent who has room."""
    if a.state != AssignmentState.QUEUED:
        raise IllegalMove(f"ticket {a.number} is not waiting in a queue")
    group = Group(a.group_id, a.group_name, a.level)
    moved = _moved(a, group=group, agent=agent, now=now,
                   entry={"kind": "assigned", "to_level": a.level.value, "to_group": a.group_id,
                          "agent_id": agent.id, "reason": "agent free", "actor": PRODUCER})
    return Change(moved, (_assigned_event(moved, "agent free", None, now),))


def escalate(
    a: Assignment,
    target: Group,
    agent: Agent | None,
    *,
    kind: EscalationKind,
    reason: str,
    actor: str | None,
    now: datetime,
    cause: EventEnvelope | None = None,
    clock_id: str | None = None,
) -> Change[Assignment]:
    """Move the ticket up to ``target`` (a higher level); the agent's slot is freed."""
    if a.state == AssignmentState.RELEASED:
        raise IllegalMove(f"ticket {a.number} is resolved or closed; reopen it first")
    if level_rank(target.level) <= level_rank(a.level):
        raise IllegalMove(
            f"escalation goes up: {target.id} is {target.level.value}, the ticket is at "
            f"{a.level.value}", field="to_group",
        )
    if target.level is SupportLevel.L4 and a.level is not SupportLevel.L3:
        raise IllegalMove("only L3 hands a ticket over to an external vendor (L4)",
                          field="to_group")
    moved = _moved(
        a, group=target, agent=agent, now=now,
        entry={"kind": "escalated", "from_level": a.level.value, "from_group": a.group_id,
               "to_level": target.level.value, "to_group": target.id,
               "agent_id": agent.id if agent else None, "reason": reason, "actor": actor,
               "escalation": kind.value, "clock_id": clock_id},
        owner_group_id=None,
        escalated_clocks=(*a.escalated_clocks, clock_id) if clock_id else a.escalated_clocks,
    )
    escalated = _event(
        TicketEscalated(ticket_id=a.ticket_id, from_level=a.level, to_level=target.level,
                        from_group=a.group_id, to_group=target.id, kind=kind, reason=reason,
                        actor=actor, sequence=moved.sequence),
        cause, a.ticket_id, now,
    )
    return Change(moved, (escalated, _assigned_event(moved, f"escalated: {reason}", cause, now)))


def hand_back(
    a: Assignment, target: Group, agent: Agent | None, *, reason: str, actor: str | None,
    now: datetime,
) -> Change[Assignment]:
    """A higher level gives the requester contact back to L1/L2 and keeps owning the fix."""
    if a.state == AssignmentState.RELEASED:
        raise IllegalMove(f"ticket {a.number} is resolved or closed")
    if level_rank(target.level) >= level_rank(a.level):
        raise IllegalMove(f"hand-back goes down: {target.id} is {target.level.value}, the ticket"
                          f" is at {a.level.value}", field="to_group")
    if target.level not in (SupportLevel.L1, SupportLevel.L2):
        raise IllegalMove("tickets are handed back to L1 or L2", field="to_group")
    moved = _moved(
        a, group=target, agent=agent, now=now,
        entry={"kind": "handed_back", "from_level": a.level.value, "from_group": a.group_id,
               "to_level": target.level.value, "to_group": target.id,
               "agent_id": agent.id if agent else None, "reason": reason, "actor": actor,
               "owner_group": a.owner_group_id or a.group_id},
        owner_group_id=a.owner_group_id or a.group_id,
    )
    return Change(moved, (_assigned_event(moved, f"handed back: {reason}", None, now),))


def change_priority(
    a: Assignment, priority: Priority, *, reason: str, actor: str | None, now: datetime
) -> Change[Assignment] | None:
    if priority is a.priority:
        return None
    changed = replace(
        a, priority=priority, updated_at=now, version=a.version + 1,
        history=(*a.history, {"at": now, "kind": "priority_changed", "from": a.priority.value,
                              "to": priority.value, "reason": reason, "actor": actor}),
    )
    event = _event(
        TicketPriorityChanged(ticket_id=a.ticket_id, from_priority=a.priority,
                              to_priority=priority, reason=reason, actor=actor),
        None, a.ticket_id, now,
    )
    return Change(changed, (event,))


def release(a: Assignment, *, reason: str, now: datetime) -> Change[Assignment] | None:
    """The ticket is resolved or closed: whoever held it is free again."""
    if a.state == AssignmentState.RELEASED:
        return None
    released = replace(
        a, state=AssignmentState.RELEASED, agent_id=None, updated_at=now, version=a.version + 1,
        history=(*a.history, {"at": now, "kind": "released", "reason": reason,
                              "agent_id": a.agent_id}),
    )
    return Change(released, (), )


def reopen(a: Assignment, group: Group, agent: Agent | None, *, reason: str,
           cause: EventEnvelope | None, now: datetime) -> Change[Assignment] | None:
    """A reopened ticket goes back to the group that last held it."""
    if a.state != AssignmentState.RELEASED:
        return None
    moved = _moved(a, group=group, agent=agent, now=now,
                   entry={"kind": "reopened", "to_level": group.level.value, "to_group": group.id,
                          "agent_id": agent.id if agent else None, "reason": reason,
                          "actor": PRODUCER})
    return Change(moved, (_assigned_event(moved, f"reopened: {reason}", cause, now),))
