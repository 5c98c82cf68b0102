"""Routing's desk routes: groups, agents, triage policy, queues, and moving tickets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel, Field

from sportello_contracts import utc_now
from sportello_contracts.enums import (
    ContractTier,
    CustomerType,
    Impact,
    Priority,
    SupportLevel,
    Urgency,
)
from sportello_routing import domain
from sportello_routing.api.deps import SLUG, Model, RouterDep, Slug, refusing
from sportello_routing.domain import (
    Agent,
    Assignment,
    Group,
    TriagePolicy,
    TriageRule,
)
from sportello_routing.service import Router
from sportello_runtime.concurrency import ConcurrencyConflict, retry_on_conflict
from sportello_runtime.http import ApiError

desk = APIRouter()


# --- groups -------------------------------------------------------------------------


class GroupIn(Model):
    name: str = Field(min_length=1, max_length=100)
    level: SupportLevel
    categories: list[Annotated[str, Field(pattern=SLUG)]] = Field(default=[], max_length=50)
    escalates_to: str | None = Field(default=None, pattern=SLUG)
    default_for_level: bool = False
    vendor_contact: str | None = Field(default=None, max_length=200)


class GroupOut(GroupIn):
    id: str


def group_out(g: Group) -> GroupOut:
    return GroupOut(id=g.id, name=g.name, level=g.level, categories=list(g.categories),
                    escalates_to=g.escalates_to, default_for_level=g.default_for_level,
                    vendor_contact=g.vendor_contact)


@desk.get("/groups", response_model=list[GroupOut], tags=["admin"])
async def list_groups(router: RouterDep) -> list[GroupOut]:
    return [group_out(g) for g in await router.store.groups()]


@desk.put("/groups/{group_id}", response_model=GroupOut, tags=["admin"],
           responses={201: {"model": GroupOut, "description": "The group was created"}})
async def put_group(group_id: Slug, body: GroupIn, router: RouterDep,
                    response: Response) -> GroupOut:
    """Create or replace a group; refused when its escalation chain is unknown, loops, or
    does not go up."""
    group = Group(group_id, body.name, body.level, tuple(body.categories), body.escalates_to,
                  body.default_for_level, body.vendor_contact)
    existing = await router.store.groups()
    others = [g for g in existing if g.id != group_id]

    with refusing():
        domain.check_groups([*others, group])
    await router.store.put_group(group)
    if len(others) == len(existing):
        response.status_code = status.HTTP_201_CREATED
    return group_out(group)


@desk.delete("/groups/{group_id}", status_code=204, tags=["admin"])
async def delete_group(group_id: Slug, router: RouterDep) -> None:
    groups = await router.store.groups()
    if not any(g.id == group_id for g in groups):
        raise ApiError(404, "not_found", f"no group {group_id}")
    if any(g.escalates_to == group_id for g in groups):
        raise ApiError(409, "in_use", f"other groups escalate to {group_id}")
    if await router.store.agents(group_id):
        raise ApiError(409, "in_use", f"agents still belong to {group_id}")
    if await router.store.view(level=None, group_id=group_id, agent_id=None, state=None,
                               limit=1):
        raise ApiError(409, "in_use", f"{group_id} still holds open tickets")
    await router.store.delete_group(group_id)


# --- agents -------------------------------------------------------------------------


class AgentIn(Model):
    name: str = Field(min_length=1, max_length=100)
    level: SupportLevel
    groups: list[Annotated[str, Field(pattern=SLUG)]] = Field(min_length=1, max_length=20)
    skills: list[Annotated[str, Field(pattern=SLUG)]] = Field(default=[], max_length=50)
    capacity: int = Field(ge=0, le=200, description="Most open tickets the agent holds at once")
    available: bool = True


class AgentOut(AgentIn):
    id: str
    open_tickets: int
    last_assigned_at: datetime | None


class Availability(Model):
    available: bool


def agent_out(a: Agent) -> AgentOut:
    return AgentOut(id=a.id, name=a.name, level=a.level, groups=list(a.groups),
                    skills=list(a.skills), capacity=a.capacity, available=a.available,
                    open_tickets=a.open_tickets, last_assigned_at=a.last_assigned_at)


@desk.get("/agents", response_model=list[AgentOut], tags=["admin"])
async def list_agents(router: RouterDep,
                      group_id: Annotated[str | None, Query(pattern=SLUG)] = None
                      ) -> list[AgentOut]:
    return [agent_out(a) for a in await router.store.agents(group_id)]


@desk.get("/agents/{agent_id}", response_model=AgentOut, tags=["admin"])
async def get_agent(agent_id: Slug, router: RouterDep) -> AgentOut:
    agent = await router.store.agent(agent_id)
    if agent is None:
        raise ApiError(404, "not_found", f"no agent {agent_id}")
    return agent_out(agent)


@desk.put("/agents/{agent_id}", response_model=AgentOut, tags=["admin"])
async def put_agent(agent_id: Slug, body: AgentIn, router: RouterDep,
                    response: Response) -> AgentOut:
    known = {g.id for g in await router.store.groups()}
    unknown = [g for g in body.groups if g not in known]
    if unknown:
        raise ApiError(422, "invalid", f"unknown groups: {', '.join(unknown)}", field="groups")
    agent = Agent(agent_id, body.name, body.level, tuple(body.groups), tuple(body.skills),
                  body.capacity, body.available)
    if await router.store.add_agent(agent):
        response.status_code = status.HTTP_201_CREATED
    else:
        await _update_agent(router, agent_id, lambda current: agent)
    await router.drain(agent.groups)
    stored = await router.store.agent(agent_id)
    assert stored is not None
    return agent_out(stored)


@desk.put("/agents/{agent_id}/availability", response_model=AgentOut, tags=["admin"])
async def set_availability(agent_id: Slug, body: Availability, router: RouterDep) -> AgentOut:
    """On shift or away; coming on shift takes waiting tickets at once."""
    agent = await _update_agent(
        router, agent_id,
        lambda current: Agent(current.id, current.name, current.level, current.groups,
                              current.skills, current.capacity, body.available),
    )
    await router.drain(agent.groups)
    stored = await router.store.agent(agent_id)
    assert stored is not None
    return agent_out(stored)


async def _update_agent(router: Router, agent_id: str,
                        change: Callable[[Agent], Agent]) -> Agent:
    async def step() -> Agent:
        found = await router.store.versioned_agent(agent_id)
        if found is None:
            raise ApiError(404, "not_found", f"no agent {agent_id}")
        current, version = found
        updated = change(current)
        await router.store.update_agent(updated, expected_version=version,
                                        open_tickets=current.open_tickets)
        return updated

    try:
        return await retry_on_conflict(step, what=f"agent {agent_id}")
    except ConcurrencyConflict as exc:
        raise ApiError(409, "conflict", f"agent {agent_id} keeps changing; try again") from exc


@desk.delete("/agents/{agent_id}", status_code=204, tags=["admin"])
async def delete_agent(agent_id: Slug, router: RouterDep) -> None:
    agent = await router.store.agent(agent_id)
    if agent is None:
        raise ApiError(404, "not_found", f"no agent {agent_id}")
    if agent.open_tickets:
        raise ApiError(409, "in_use", f"{agent_id} still holds {agent.open_tickets} tickets")
    await router.store.delete_agent(agent_id)


# --- triage policy ---------------------------------------------------------------------


class RuleIn(Model):
    category: str | None = Field(default=None, pattern=SLUG)
    when: str = Field(min_length=1, max_length=2000,
                      description='e.g. text =~~ "vpn|wi-?fi" or department == "Network"')
    impact: Impact | None = None
    urgency: Urgency | None = None
    critical: bool = False


class PolicyIn(Model):
    based_on_version: int | None = Field(
        default=None, description="The version you edited; refused with 409 if it is stale"
    )
    categories: list[str] = Field(min_length=1, max_length=100)
    rules: list[RuleIn] = Field(max_length=500)
    matrix: dict[Impact, dict[Urgency, Priority]]
    tier_raise: dict[ContractTier, int] = {}
    default_impact: Impact = Impact.MEDIUM
    default_urgency: Urgency = Urgency.MEDIUM
    model_threshold: float = Field(
        default=TriagePolicy.model_threshold, gt=0, le=1,
        description="When no rule decides the category, the learned model's guess is taken "
                    "at this confidence or above")


class PolicyOut(PolicyIn):
    version: int


def policy_out(p: TriagePolicy) -> PolicyOut:
    return PolicyOut(
        version=p.version, categories=list(p.categories),
        rules=[RuleIn(category=r.category, when=r.when, impact=r.impact, urgency=r.urgency,
                      critical=r.critical) for r in p.rules],
        matrix={i: dict(row) for i, row in p.matrix.items()}, tier_raise=dict(p.tier_raise),
        default_impact=p.default_impact, default_urgency=p.default_urgency,
        model_threshold=p.model_threshold,
    )


@desk.get("/triage/policy", response_model=PolicyOut, tags=["admin"])
async def get_policy(router: RouterDep) -> PolicyOut:
    policy = await router.store.policy()
    if policy is None:
        raise ApiError(404, "not_found", "no triage policy yet")
    return policy_out(policy)


@desk.put("/triage/policy", response_model=PolicyOut, status_code=201, tags=["admin"])
async def put_policy(body: PolicyIn, router: RouterDep, request: Request) -> PolicyOut:
    """Save a new version of the rules and the priority matrix; tickets keep the version
    they were triaged with. A rule that does not compile is refused with the reason."""
    current = await router.store.policy()
    version = (current.version if current else 0) + 1
    if body.based_on_version is not None and current and body.based_on_version != current.version:
        raise ApiError(409, "conflict", f"version {current.version} was saved meanwhile",
                       field="based_on_version")
    policy = TriagePolicy(
        version=version, categories=tuple(body.categories),
        rules=tuple(TriageRule(r.category, r.when, r.impact, r.urgency, r.critical)
                    for r in body.rules),
        matrix=body.matrix, tier_raise=body.tier_raise,
        default_impact=body.default_impact, default_urgency=body.default_urgency,
        model_threshold=body.model_threshold,
    )

    with refusing():
        domain.check_policy(policy)
    author = request.headers.get("x-actor")
    if not await router.store.add_policy(policy, author=author, now=utc_now()):
        raise ApiError(409, "conflict", f"version {version} was saved meanwhile")
    return policy_out(policy)


class PreviewIn(Model):
    subject: str = Field(max_length=200)
    description: str = Field(default="", max_length=20000)
    sender_email: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=200)
    channel: str = "web"
    customer_type: CustomerType = CustomerType.PRIVATE
    contract_tier: ContractTier | None = None
    category_hint: str | None = None
    impact: Impact | None = None
    urgency: Urgency | None = None


@desk.post("/triage/preview", tags=["admin"])
async def preview(body: PreviewIn, router: RouterDep) -> dict[str, Any]:
    """What the current policy would decide for this ticket (nothing is stored)."""
    policy = await router.store.policy()
    if policy is None:
        raise ApiError(404, "not_found", "no triage policy yet")
    result = domain.triage(domain.TriageInput(
        body.subject, body.description, body.sender_email, body.department, body.channel,
        body.customer_type, body.contract_tier, body.category_hint, body.impact, body.urgency,
    ), policy)
    return {"category": result.category, "priority": result.priority, "impact": result.impact,
            "urgency": result.urgency, "critical": result.critical,
            "matched_rules": list(result.matched_rules), "policy_version": result.policy_version}


# --- tickets: views and moves ------------------------------------------------------------


class AssignmentView(BaseModel):
    ticket_id: str
    number: str
    category: str
    priority: Priority
    level: SupportLevel
    group_id: str
    group_name: str
    agent_id: str | None
    state: str
    owner_group_id: str | None
    sequence: int
    version: int = Field(description="Grows with every change; moves may name the one they saw")
    created_at: datetime
    updated_at: datetime
    history: list[dict[str, Any]]


def view(a: Assignment) -> AssignmentView:
    return AssignmentView(
        ticket_id=a.ticket_id, number=a.number, category=a.category, priority=a.priority,
        level=a.level, group_id=a.group_id, group_name=a.group_name, agent_id=a.agent_id,
        state=a.state, owner_group_id=a.owner_group_id, sequence=a.sequence, version=a.version,
        created_at=a.created_at, updated_at=a.updated_at, history=list(a.history),
    )


class AssignmentDetail(AssignmentView):
    pending_events: int


@desk.get("/queues", response_model=list[AssignmentView], tags=["queues"])
async def queues(
    router: RouterDep,
    level: SupportLevel | None = None,
    group_id: Annotated[str | None, Query(pattern=SLUG)] = None,
    agent_id: Annotated[str | None, Query(pattern=SLUG)] = None,
    state: Annotated[str | None, Query(pattern="^(assigned|queued|released)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AssignmentView]:
    """Open tickets by level, group or agent, most urgent first, then oldest."""
    found = await router.store.view(level=level, group_id=group_id, agent_id=agent_id,
                                    state=state, limit=limit)
    return [view(a) for a in found]


TicketId = Annotated[str, Path(min_length=1, max_length=100)]


@desk.get("/assignments/{ticket_id}", response_model=AssignmentDetail, tags=["queues"])
async def get_assignment(ticket_id: TicketId, router: RouterDep) -> AssignmentDetail:
    """Who holds the ticket, its assignment and escalation history, unsent events."""
    assignment = await router.store.get(ticket_id)
    if assignment is None:
        raise ApiError(404, "not_found", f"no assignment for ticket {ticket_id}")
    return AssignmentDetail(**view(assignment).model_dump(),
                            pending_events=await router.store.pending_events(ticket_id))


class Move(Model):
    reason: str = Field(min_length=1, max_length=200)
    actor: str | None = Field(default=None, max_length=100)
    expected_version: int | None = Field(
        default=None, ge=1, le=2**31 - 1,
        description="The version you saw; 409 when the ticket moved since")


class EscalateIn(Move):
    to_group: str | None = Field(default=None, pattern=SLUG,
                                 description="Default: the next group in the chain")


class HandBackIn(Move):
    to_group: str = Field(pattern=SLUG)


class PriorityIn(Move):
    priority: Priority


class AssignIn(Move):
    agent_id: str = Field(pattern=SLUG)


class CategoryIn(Move):
    category: str = Field(pattern=SLUG)


@desk.post("/assignments/{ticket_id}/escalate", response_model=AssignmentView,
               tags=["moves"])
async def escalate(ticket_id: TicketId, body: EscalateIn, router: RouterDep) -> AssignmentView:
    """The current level cannot solve it: up to the next level or the chosen group
    (L3 may hand over to an L4 vendor)."""
    with refusing():
        moved = await router.escalate(ticket_id, reason=body.reason, actor=body.actor,
                                      to_group=body.to_group,
                                      expected_version=body.expected_version)
    assert moved is not None  # only breach-driven escalations may decline
    return view(moved)


@desk.post("/assignments/{ticket_id}/hand-back", response_model=AssignmentView,
               tags=["moves"])
async def hand_back(ticket_id: TicketId, body: HandBackIn, router: RouterDep) -> AssignmentView:
    """A higher level gives requester contact back to L1/L2 and keeps owning the fix."""
    with refusing():
        return view(await router.hand_back(ticket_id, to_group=body.to_group,
                                           reason=body.reason, actor=body.actor,
                                           expected_version=body.expected_version))


@desk.post("/assignments/{ticket_id}/priority", response_model=AssignmentView,
               tags=["moves"])
async def set_priority(ticket_id: TicketId, body: PriorityIn, router: RouterDep
                       ) -> AssignmentView:
    """The coordinator overrides the priority, with a reason."""
    with refusing():
        return view(await router.set_priority(ticket_id, body.priority, reason=body.reason,
                                              actor=body.actor,
                                              expected_version=body.expected_version))


@desk.post("/assignments/{ticket_id}/assign", response_model=AssignmentView, tags=["moves"])
async def assign(ticket_id: TicketId, body: AssignIn, router: RouterDep) -> AssignmentView:
    """Give the ticket to a chosen agent of the group that holds it (an agent taking it, or
    a coordinator reassigning it); whoever held it is freed."""
    with refusing():
        return view(await router.assign(ticket_id, body.agent_id, reason=body.reason,
                                        actor=body.actor,
                                        expected_version=body.expected_version))


@desk.post("/assignments/{ticket_id}/category", response_model=AssignmentView, tags=["moves"])
async def recategorise(ticket_id: TicketId, body: CategoryIn, router: RouterDep
                       ) -> AssignmentView:
    """Correct the category (the ticket stays where it is): the learned triage learns the
    corrected one. A category the policy lacks is refused, naming the field."""
    with refusing():
        return view(await router.recategorise(ticket_id, body.category, reason=body.reason,
                                              actor=body.actor,
                                              expected_version=body.expected_version))
