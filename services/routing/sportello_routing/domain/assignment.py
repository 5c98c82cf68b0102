"""A ticket's assignment and its moves: first routing, given to an agent, escalation,
hand-back, priority change, release and reopening; each a ``Change[Assignment]``. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sportello_contracts import EventEnvelope, new_event
from sportello_contracts.enums import (
    ContractTier,
    CustomerType,
    EscalationKind,
    Priority,
    SupportLevel,
)
from sportello_contracts.events import (
    TicketAssigned,
    TicketCreated,
    TicketEscalated,
    TicketPriorityChanged,
    TicketRecategorised,
    TicketTriaged,
)
from sportello_routing.domain.classification import Triage
from sportello_routing.domain.staff import PRODUCER, Agent, Group, IllegalMove, level_rank
from sportello_runtime.change import Change

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
                       reason=reason, owner_group_id=a.owner_group_id),
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
             "policy_version": result.policy_version, **result.decided_by.fields()},
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
            **result.decided_by.fields(),
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


def assign_to(a: Assignment, agent: Agent, *, reason: str, actor: str | None,
              now: datetime) -> Change[Assignment] | None:
    """Someone chose the agent: an agent taking the ticket, or a coordinator reassigning it.
    The agent must belong to the group that holds the ticket; capacity is theirs to judge."""
    if a.state == AssignmentState.RELEASED:
        raise IllegalMove(f"ticket {a.number} is resolved or closed; reopen it first")
    if a.group_id not in agent.groups:
        raise IllegalMove(f"{agent.id} is not in {a.group_id}, which holds ticket {a.number}",
                          field="agent_id")
    if not agent.available:
        raise IllegalMove(f"{agent.id} is not on shift", field="agent_id")
    if a.agent_id == agent.id:
        return None
    group = Group(a.group_id, a.group_name, a.level)
    moved = _moved(a, group=group, agent=agent, now=now,
                   entry={"kind": "assigned", "to_level": a.level.value, "to_group": a.group_id,
                          "agent_id": agent.id, "from_agent": a.agent_id, "reason": reason,
                          "actor": actor})
    return Change(moved, (_assigned_event(moved, reason, None, now),))


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


def recategorise(a: Assignment, category: str, *, categories: Sequence[str], reason: str,
                 actor: str | None, now: datetime) -> Change[Assignment] | None:
    """A coordinator corrects the category. The ticket stays with whoever holds it (moving
    it is a separate decision); the correction is what the learned triage learns from.
    Allowed on a closed ticket too: a late correction still teaches."""
    if category not in categories:
        raise IllegalMove(f"{category!r} is not a category of the triage policy",
                          field="category")
    if category == a.category:
        return None
    record = replace(a, category=category, updated_at=now, version=a.version + 1,
                     history=(*a.history, {"at": now, "kind": "recategorised",
                                           "from": a.category, "to": category,
                                           "reason": reason, "actor": actor}))
    event = _event(TicketRecategorised(ticket_id=a.ticket_id, from_category=a.category,
                                       to_category=category, reason=reason, actor=actor),
                   None, a.ticket_id, now)
    return Change(record, (event,))
