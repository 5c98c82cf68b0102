"""Routing's desk use cases, shared by the event handlers and the HTTP API.

Each one loads what the rules need, asks ``domain`` for a change, claims
agent capacity atomically, and writes the change with its events in one
fenced document update (retrying from the top when someone else won).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import Counter, Gauge, Histogram

from sportello_contracts import EventEnvelope, utc_now
from sportello_contracts.enums import EscalationKind, Priority, SlaMetric, SupportLevel
from sportello_contracts.events import SlaBreached, TicketCreated
from sportello_routing import domain
from sportello_routing.domain import (
    Agent,
    Assignment,
    AssignmentState,
    IllegalMove,
    RoutingError,
    TriageInput,
)
from sportello_routing.service.learning import Learner
from sportello_routing.store import RoutingStore
from sportello_runtime.change import Change
from sportello_runtime.concurrency import ConcurrencyConflict, retry_on_conflict
from sportello_runtime.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class NotFound(RoutingError):
    pass


class Stale(RoutingError):
    """The caller based its move on a version of the assignment that is no longer current."""

    def __init__(self, current: Assignment) -> None:
        super().__init__(f"the assignment of {current.number} is at version {current.version}",
                         field="expected_version")
        self.current = current


@dataclass
class RoutingMetrics:
    triaged: Counter
    assigned: Counter
    escalations: Counter
    waiting: Gauge
    time_to_assign: Histogram

    @classmethod
    def registered_on(cls, m: ServiceMetrics) -> RoutingMetrics:
        return cls(
            triaged=m.counter("tickets_triaged_total",
                              "Tickets triaged, by category and priority",
                              ["category", "priority"]),
            assigned=m.counter("tickets_assigned_total",
                               "Assignments to an agent or a group queue, by level and group",
                               ["level", "group"]),
            escalations=m.counter("ticket_escalations_total", "Escalations by levels and kind",
                                  ["from_level", "to_level", "kind"]),
            waiting=m.gauge("tickets_waiting", "Tickets waiting in a group queue for an agent",
                            ["group"]),
            time_to_assign=m.histogram(
                "ticket_time_to_assign_seconds", "From ticket creation to an agent holding it",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 900, 3600, 14400, 86400),
            ),
        )


class Router:
    def __init__(self, store: RoutingStore, metrics: RoutingMetrics,
                 learner: Learner | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.learner = learner

    # -- new tickets ------------------------------------------------------------

    async def route_new_ticket(self, created: TicketCreated, cause: EventEnvelope) -> bool:
        """``False`` for a ticket routed before: its assignment's insert fails on the
        ticket's id (and a claimed agent is given back), so a copy changes nothing."""
        setup = await self.store.setup()
        if setup.policy is None:
            raise RoutingError("no triage policy configured")
        result = domain.triage(TriageInput.of(created), setup.policy)
        group = None
        if self.learner is not None:
            result, group = self.learner.triage(result, created, setup.policy, setup.groups)
        group = group or domain.group_for(setup.groups, SupportLevel.L1, result.category)
        if group is None:
            raise RoutingError("no L1 group configured")
        now = utc_now()
        agent = await self._claim_agent(group.id, result.category)
        change = domain.route_new_ticket(created, result, group, agent, cause=cause, now=now)
        if not await self.store.add_first(change.record, change.events):
            if agent is not None:
                await self.store.release_slot(agent.id)  # lost the race to a redelivery
            return False
        self.metrics.triaged.labels(result.category, result.priority.value).inc()
        self._count_assignment(change.record)
        if agent is not None:
            self.metrics.time_to_assign.observe(
                max(0.0, (now - created.created_at).total_seconds())
            )
        return True

    # -- moves ------------------------------------------------------------------

    async def escalate(
        self,
        ticket_id: str,
        *,
        reason: str,
        actor: str | None,
        to_group: str | None = None,
        kind: EscalationKind = EscalationKind.MANUAL,
        cause: EventEnvelope | None = None,
        clock_id: str | None = None,
        from_level: SupportLevel | None = None,
        expected_version: int | None = None,
    ) -> Assignment | None:
        """Up one level (or to ``to_group``). With a ``clock_id``, at most once per clock and
        only while the ticket is still at ``from_level``: checked again on every retry, since
        a concurrent copy of the same breach may have moved the ticket meanwhile."""

        async def decide(a: Assignment) -> Change[Assignment] | None:
            if clock_id is not None and (
                clock_id in a.escalated_clocks
                or a.state == AssignmentState.RELEASED
                or (from_level is not None and a.level is not from_level)
            ):
                log.info("breach of %s ignored (already escalated, resolved or stale)",
                         clock_id)
                return None
            groups = await self.store.groups()
            current = next((g for g in groups if g.id == a.group_id), None)
            if to_group is not None:
                target = next((g for g in groups if g.id == to_group), None)
                if target is None:
                    raise NotFound(f"no group {to_group}", field="to_group")
            elif current is not None:
                target = domain.escalation_target(groups, current, a.category)
            else:
                target = None
            if target is None:
                raise IllegalMove(f"nowhere to escalate ticket {a.number} from {a.group_id}")
            agent = await self._claim_agent(target.id, a.category)
            try:
                return domain.escalate(a, target, agent, kind=kind, reason=reason, actor=actor,
                                       now=utc_now(), cause=cause, clock_id=clock_id)
            except RoutingError:
                if agent is not None:
                    await self.store.release_slot(agent.id)
                raise

        change = await self._apply(ticket_id, decide, expected_version)
        if change is None:
            return None
        step = change.record.history[-1]
        self.metrics.escalations.labels(step["from_level"], step["to_level"], kind.value).inc()
        return change.record

    async def escalate_on_breach(self, breach: SlaBreached, cause: EventEnvelope) -> bool:
        """A level's time box ran out: up one level, once per clock."""
        if breach.metric is not SlaMetric.LEVEL_TIME_BOX:
            return False
        level = breach.level.value if breach.level else "level"
        moved = await self.escalate(
            breach.ticket_id, reason=f"{level} time box breached", actor="sla",
            kind=EscalationKind.AUTOMATIC, cause=cause, clock_id=breach.clock_id,
            from_level=breach.level,
        )
        return moved is not None

    async def hand_back(self, ticket_id: str, *, to_group: str, reason: str,
                        actor: str | None, expected_version: int | None = None) -> Assignment:
        async def decide(a: Assignment) -> Change[Assignment] | None:
            target = await self.store.group(to_group)
            if target is None:
                raise NotFound(f"no group {to_group}", field="to_group")
            agent = await self._claim_agent(target.id, a.category)
            try:
                return domain.hand_back(a, target, agent, reason=reason, actor=actor,
                                        now=utc_now())
            except RoutingError:
                if agent is not None:
                    await self.store.release_slot(agent.id)
                raise

        change = await self._apply(ticket_id, decide, expected_version)
        assert change is not None
        return change.record

    async def set_priority(self, ticket_id: str, priority: Priority, *, reason: str,
                           actor: str | None, expected_version: int | None = None
                           ) -> Assignment:
        async def decide(a: Assignment) -> Change[Assignment] | None:
            return domain.change_priority(a, priority, reason=reason, actor=actor, now=utc_now())

        change = await self._apply(ticket_id, decide, expected_version)
        return change.record if change else await self._get(ticket_id)

    async def assign(self, ticket_id: str, agent_id: str, *, reason: str, actor: str | None,
                     expected_version: int | None = None) -> Assignment:
        """An agent takes the ticket, or a coordinator gives it to someone: the chosen agent
        gets it even when full (a person decided), and whoever held it is freed."""
        async def decide(a: Assignment) -> Change[Assignment] | None:
            agent = await self.store.agent(agent_id)
            if agent is None:
                raise NotFound(f"no agent {agent_id}", field="agent_id")
            change = domain.assign_to(a, agent, reason=reason, actor=actor, now=utc_now())
            if change is not None:
                await self.store.add_to_load(agent.id, utc_now())
            return change

        change = await self._apply(ticket_id, decide, expected_version)
        return change.record if change else await self._get(ticket_id)

    async def recategorise(self, ticket_id: str, category: str, *, reason: str,
                           actor: str | None, expected_version: int | None = None
                           ) -> Assignment:
        """A coordinator corrects the category; the learned triage learns the correction
        (at the close, or now when the ticket closed already)."""
        policy = await self.store.policy()
        if policy is None:
            raise RoutingError("no triage policy configured")

        async def decide(a: Assignment) -> Change[Assignment] | None:
            return domain.recategorise(a, category, categories=policy.categories,
                                       reason=reason, actor=actor, now=utc_now())

        change = await self._apply(ticket_id, decide, expected_version)
        if change is not None and self.learner is not None:
            await self.learner.corrected(ticket_id, category)
        return change.record if change else await self._get(ticket_id)

    async def release(self, ticket_id: str, reason: str) -> None:
        async def decide(a: Assignment) -> Change[Assignment] | None:
            return domain.release(a, reason=reason, now=utc_now())

        await self._apply(ticket_id, decide)

    async def reopen(self, ticket_id: str, reason: str, cause: EventEnvelope) -> None:
        async def decide(a: Assignment) -> Change[Assignment] | None:
            if a.state != AssignmentState.RELEASED:
                return None
            group = await self.store.group(a.group_id)
            if group is None:
                groups = await self.store.groups()
                group = domain.group_for(groups, a.level, a.category)
            if group is None:
                raise RoutingError(f"no group left for ticket {a.number}")
            agent = await self._claim_agent(group.id, a.category)
            return domain.reopen(a, group, agent, reason=reason, cause=cause, now=utc_now())

        await self._apply(ticket_id, decide)

    # -- queues ---------------------------------------------------------------------

    async def drain(self, group_ids: Iterable[str]) -> int:
        """Give waiting tickets to agents with room, most urgent and oldest first."""
        given = 0
        for group_id in set(group_ids):
            progress = True
            while progress:
                progress = False
                # Agents first: a group's few agents are cheap to read, its queue is not, and
                # with nobody free (the usual case under load) there is nothing to take from it.
                agents = await self._agents_with_room(group_id)
                if agents is None:
                    break
                for waiting in await self.store.queued(group_id):
                    if agents is None:
                        agents = await self._agents_with_room(group_id)
                        if agents is None:
                            break
                    agent = await self._claim_agent(group_id, waiting.category, agents)
                    if agent is None:
                        continue  # nobody with the skill has room: try the next ticket
                    agents = None  # a slot was taken: read them again for the next ticket
                    change = domain.give_to_agent(waiting, agent, now=utc_now())
                    try:
                        await self.store.save(change.record,
                                              expected_version=waiting.version,
                                              events=change.events)
                    except ConcurrencyConflict:
                        await self.store.release_slot(agent.id)
                        continue
                    given += 1
                    progress = True
                    self._count_assignment(change.record)
                    self.metrics.time_to_assign.observe(
                        max(0.0, (utc_now() - waiting.created_at).total_seconds())
                    )
            await self._update_waiting(group_id)
        return given

    async def _agents_with_room(self, group_id: str) -> list[Agent] | None:
        """The group's agents, or ``None`` when none of them has room."""
        agents = await self.store.agents(group_id)
        return agents if any(a.has_room for a in agents) else None

    async def reconcile_agent(self, agent_id: str, *, quiet_for: timedelta) -> None:
        """Recount an agent's open tickets (a crash between claiming a slot and writing the
        assignment leaks one); skipped while the agent was assigned something very recently."""
        found = await self.store.versioned_agent(agent_id)
        if found is None:
            return
        agent, version = found
        last = agent.last_assigned_at
        if last is not None and utc_now() - last < quiet_for:
            return
        actual = await self.store.open_count(agent_id)
        if actual != agent.open_tickets:
            try:
                await self.store.update_agent(agent, expected_version=version,
                                              open_tickets=actual)
                log.warning("agent %s load corrected from %s to %s", agent_id,
                            agent.open_tickets, actual)
            except ConcurrencyConflict:
                pass

    # -- helpers --------------------------------------------------------------------

    async def _claim_agent(self, group_id: str, skill: str,
                           agents: list[Agent] | None = None) -> Agent | None:
        """``agents``: the group's agents, just read by the caller; read again after a
        claim lost to another replica."""
        async def step() -> Agent | None:
            nonlocal agents
            if agents is None:
                agents = await self.store.agents(group_id)
            agent = domain.pick_agent(agents, group_id, skill)
            if agent is None:
                return None
            if await self.store.claim_slot(agent.id, utc_now()):
                return agent
            agents = None
            raise ConcurrencyConflict(f"agent {agent.id} filled up meanwhile")

        try:
            return await retry_on_conflict(step, what=f"a slot in {group_id}")
        except ConcurrencyConflict:
            return None  # they keep filling up: the ticket waits in the queue

    async def _get(self, ticket_id: str) -> Assignment:
        assignment = await self.store.get(ticket_id)
        if assignment is None:
            raise NotFound(f"no assignment for ticket {ticket_id}")
        return assignment

    async def _apply(
        self, ticket_id: str, decide: Callable[[Assignment], Awaitable[Change[Assignment] | None]],
        expected_version: int | None = None,
    ) -> Change[Assignment] | None:
        """``expected_version``: the version the caller saw; a newer one refuses the move
        (``Stale``) instead of applying it to a ticket that moved meanwhile."""
        async def step() -> Change[Assignment] | None:
            current = await self._get(ticket_id)
            if expected_version is not None and current.version != expected_version:
                raise Stale(current)
            change = await decide(current)
            if change is None:
                return None
            new_agent = change.record.agent_id
            claimed = new_agent if new_agent and new_agent != current.agent_id else None
            try:
                await self.store.save(change.record, expected_version=current.version,
                                      events=change.events)
            except ConcurrencyConflict:
                if claimed:
                    await self.store.release_slot(claimed)
                raise
            released = domain.released_agent(current, change.record)
            if released:
                await self.store.release_slot(released)
                await self.drain(await self._groups_of(released))
            if change.record.agent_id != current.agent_id and change.record.agent_id:
                self._count_assignment(change.record)
            return change

        return await retry_on_conflict(step, what=f"assignment of {ticket_id}")

    async def _groups_of(self, agent_id: str) -> list[str]:
        agent = await self.store.agent(agent_id)
        return list(agent.groups) if agent else []

    def _count_assignment(self, a: Assignment) -> None:
        self.metrics.assigned.labels(a.level.value, a.group_id).inc()

    async def _update_waiting(self, group_id: str) -> None:
        """Counted when a group's queue is drained (on every release and by the periodic
        sweep), not on every new ticket: a count per ticket costs more than the gauge is worth."""
        self.metrics.waiting.labels(group_id).set(await self.store.count_queued(group_id))
