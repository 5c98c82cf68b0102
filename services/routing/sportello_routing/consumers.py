"""Routing's event handlers."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram

from sportello_contracts import EventEnvelope, parse_payload, utc_now
from sportello_contracts.events import TicketCreated
from sportello_routing.domain import Group, assign_new_ticket
from sportello_routing.store import AssignmentStore

log = logging.getLogger(__name__)


class RoutingConsumers:
    def __init__(
        self,
        assignments: AssignmentStore,
        *,
        default_group: Group,
        assigned_total: Counter,
        time_to_assign: Histogram,
    ) -> None:
        self._assignments = assignments
        self._default_group = default_group
        self._assigned_total = assigned_total
        self._time_to_assign = time_to_assign

    async def on_ticket_created(self, envelope: EventEnvelope) -> None:
        created = parse_payload(envelope, TicketCreated)
        now = utc_now()
        decision = assign_new_ticket(
            created, default_group=self._default_group, cause=envelope, now=now
        )
        if not await self._assignments.add_first(decision.assignment, decision.events):
            log.info("ticket %s already has an assignment", created.number)
            return
        a = decision.assignment
        self._assigned_total.labels(a.level.value, a.group_id).inc()
        self._time_to_assign.observe(max(0.0, (now - created.created_at).total_seconds()))
        log.info("ticket %s assigned to %s (%s)", created.number, a.group_id, a.level.value)
