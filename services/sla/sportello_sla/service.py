"""SLA use cases: starting, pausing, stopping and retargeting clocks; and the timer engine.

Every clock change is one fenced document update carrying its events. The
timer engine lets any number of replicas share the due clocks: a replica
claims a clock with a lease, fires what is due, and writes the result fenced
by that lease; event ids derive from clock and threshold, so even a replica
that lost its lease mid-way cannot announce anything twice downstream.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from sportello_contracts import utc_now
from sportello_contracts.enums import ContractTier, Priority, SlaMetric, SupportLevel
from sportello_contracts.events import SlaBreached, SlaMet, SlaWarning
from sportello_runtime.change import Change
from sportello_runtime.concurrency import ConcurrencyConflict, retry_on_conflict
from sportello_runtime.metrics import ServiceMetrics
from sportello_sla import domain
from sportello_sla.domain import Clock, ClockState, SlaPolicy, SlaTicket
from sportello_sla.store import SlaStore, StartedClock

log = logging.getLogger(__name__)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


class TicketNotKnownYet(Exception):
    """An event about a ticket whose creation or triage has not reached us: retried."""


@dataclass
class SlaMetrics:
    active: Gauge
    warnings: Counter
    breaches: Counter
    met: Counter
    lag: Histogram

    @classmethod
    def registered_on(cls, m: ServiceMetrics) -> SlaMetrics:
        labels = ["metric", "priority", "level"]
        return cls(
            active=m.gauge("sla_active_clocks", "Running or paused clocks, by metric",
                           ["metric"]),
            warnings=m.counter("sla_warnings_total", "Warnings before a breach", labels),
            breaches=m.counter("sla_breaches_total", "Breached targets", labels),
            met=m.counter("sla_met_total", "Targets met in time", labels),
            lag=m.histogram("sla_timer_lag_seconds",
                            "From the instant a warning or breach fell due to its emission",
                            buckets=LAG_BUCKETS),
        )


def replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ClockKeeper:
    def __init__(self, store: SlaStore, metrics: SlaMetrics, *, owner: str | None = None,
                 latest_policy_max_age_s: float = 2.0) -> None:
        self.store = store
        self.metrics = metrics
        self.owner = owner or replica_name()
        self._policies: dict[int, SlaPolicy] = {}
        self._latest: tuple[float, SlaPolicy] | None = None
        self._latest_max_age_s = latest_policy_max_age_s

    async def policy(self, version: int | None = None) -> SlaPolicy:
        """A saved version (they never change), or the latest: read at most every
        ``latest_policy_max_age_s`` (every new ticket asks), dropped at once when this
        replica saves a new one; another replica's is seen within that time."""
        if version is not None and version in self._policies:
            return self._policies[version]
        if version is None and self._latest is not None and (
                time.monotonic() - self._latest[0] < self._latest_max_age_s):
            return self._latest[1]
        policy = await self.store.policy(version)
        if policy is None:
            raise TicketNotKnownYet(f"no SLA policy {version or ''} configured".strip())
        self._policies[policy.version] = policy
        if version is None:
            self._latest = (time.monotonic(), policy)
        return policy

    def forget_latest_policy(self) -> None:
        self._latest = None

    # -- events from the ticket's life ---------------------------------------------

    async def ticket_created(self, ticket_id: str, created_at: datetime,
                             tier: ContractTier | None) -> None:
        policy = await self.policy()
        await self._start_what_is_due(await self.store.note_created(
            ticket_id, created_at=created_at, policy_version=policy.version, tier=tier))

    async def ticket_triaged(self, ticket_id: str, priority: Priority,
                             tier: ContractTier | None) -> None:
        await self._start_what_is_due(await self.store.note_priority(ticket_id, priority, tier))

    async def ticket_assigned(self, ticket_id: str, level: SupportLevel, sequence: int,
                              at: datetime) -> None:
        """A new level (or the same level again after the clock stopped) restarts its box.
        Never the opening clocks: of creation and triage, whichever wrote its fact second
        read both, and started them (or its event is redelivered until it has)."""
        await self._start_what_is_due(
            await self.store.note_assignment(ticket_id, level, sequence, at), opening=False)

    async def _start_what_is_due(self, ticket: SlaTicket | None, *,
                                 opening: bool = True) -> None:
        """Start the clocks whose facts are all known now, whichever event completed them."""
        if ticket is None:
            return
        ticket_id = ticket.id
        opening = opening and domain.opening_clocks_due(ticket)
        box = domain.level_box_due(ticket)
        after: SlaTicket | None = None
        """The ticket as it stood once the clocks started, when the last write answered it."""
        if opening:
            assert ticket.priority
            assert ticket.created_at
            assert ticket.policy_version is not None
            policy = await self.policy(ticket.policy_version)
            await self.store.add_clocks([started for started in (
                self._starting(f"{ticket_id}:{clock}", ticket_id, metric, ticket.priority,
                               policy, ticket.created_at, None, ticket.triage_tier)
                for metric, clock in ((SlaMetric.FIRST_RESPONSE, "first_response"),
                                      (SlaMetric.RESOLUTION, "resolution:0"))) if started])
            after = await self.store.note_started(ticket_id, {"opening_clocks": True})
        if box:
            after = await self._start_level_box(ticket)
        if opening or box:
            await self._stop_what_the_resolution_passed(ticket_id, after)

    async def _stop_what_the_resolution_passed(self, ticket_id: str,
                                               after: SlaTicket | None) -> None:
        """A clock started from facts that arrived after the ticket was resolved stops at
        the resolution. Read after starting (``after``, or again): ``resolved`` writes its
        fact before it stops the open clocks, so one of the two sees the other's work."""
        ticket = after or await self.store.ticket(ticket_id)
        if ticket is None or ticket.resolved_at is None:
            return  # never resolved: the usual case
        for clock in await self._open_clocks(ticket_id, *SlaMetric):
            if (at := domain.resolution_passed(ticket, clock)) is not None:
                await self._stop(clock.id, at)

    async def _start_level_box(self, ticket: SlaTicket) -> SlaTicket | None:
        """The ticket as it stands after, or ``None`` when another handler moved it on."""
        level, sequence, at = ticket.assigned_level, ticket.assigned_sequence, ticket.assigned_at
        assert level
        assert at
        assert ticket.priority
        assert ticket.policy_version is not None
        current = await self.store.clock(ticket.level_clock) if ticket.level_clock else None
        still_running = current is not None and current.state != ClockState.STOPPED
        if current is not None and current.level is level and still_running:
            return await self.store.note_started(ticket.id, {"sequence": sequence},
                                                 only_if={"sequence": ticket.sequence})
        if current is not None:
            await self._stop(current.id, at)
        policy = await self.policy(ticket.policy_version)
        clock_id = f"{ticket.id}:level_time_box:{level.value}:{sequence}"
        await self._start(clock_id, ticket.id, SlaMetric.LEVEL_TIME_BOX, ticket.priority,
                          policy, at, level, ticket.requester_tier)
        return await self.store.note_started(
            ticket.id, {"sequence": sequence, "level": level.value, "level_clock": clock_id},
            only_if={"sequence": ticket.sequence},
        )

    async def first_response(self, ticket_id: str, at: datetime) -> None:
        await self._stop(f"{ticket_id}:first_response", at)

    async def waiting_for_customer(self, ticket_id: str, at: datetime) -> None:
        for clock in await self._open_clocks(ticket_id, SlaMetric.RESOLUTION,
                                             SlaMetric.LEVEL_TIME_BOX):
            await self._change(clock.id, at, lambda c, cal: domain.pause(c, cal, at))

    async def customer_answered(self, ticket_id: str, at: datetime) -> None:
        for clock in await self._open_clocks(ticket_id, SlaMetric.RESOLUTION,
                                             SlaMetric.LEVEL_TIME_BOX):
            await self._change(clock.id, at, lambda c, _: domain.resume(c, at))

    async def resolved(self, ticket_id: str, at: datetime) -> None:
        await self.store.note_resolved(ticket_id, at)
        for clock in await self._open_clocks(ticket_id, *SlaMetric):
            await self._stop(clock.id, at)

    async def reopened(self, ticket_id: str, at: datetime) -> None:
        ticket = await self._known(ticket_id, need_priority=True)
        assert ticket.priority is not None
        assert ticket.policy_version is not None
        reopens = ticket.reopens + 1
        if not await self.store.update_ticket(ticket_id, {"reopens": reopens,
                                                          "resolved": False},
                                              only_if={"reopens": ticket.reopens}):
            return
        policy = await self.policy(ticket.policy_version)
        await self._start(f"{ticket_id}:resolution:{reopens}", ticket_id, SlaMetric.RESOLUTION,
                          ticket.priority, policy, at, None, ticket.requester_tier)

    async def priority_changed(self, ticket_id: str, priority: Priority, at: datetime) -> None:
        ticket = await self._known(ticket_id)
        assert ticket.policy_version is not None
        await self.store.update_ticket(ticket_id, {"priority": priority.value})
        policy = await self.policy(ticket.policy_version)
        calendar = policy.targets[priority].calendar
        for clock in await self._open_clocks(ticket_id, *SlaMetric):
            target = policy.target_s(clock.metric, priority, clock.contract_tier, clock.level)
            if target is None:
                continue

            def retarget(c: Clock, cal: domain.Calendar, t: int = target) -> Clock | None:
                return domain.retarget(c, cal, at, target_s=t, priority=priority,
                                       calendar=calendar)

            await self._change(clock.id, at, retarget)

    # -- reading ------------------------------------------------------------------------

    async def report(self, ticket_id: str, now: datetime) -> list[dict[str, Any]]:
        rows = []
        for clock in await self.store.clocks_of(ticket_id):
            policy = await self.policy(clock.policy_version)
            calendar = policy.calendars[clock.calendar]
            spent = domain.elapsed(clock, calendar, now)
            rows.append({
                "clock_id": clock.id, "metric": clock.metric, "level": clock.level,
                "priority": clock.priority, "state": clock.state, "calendar": clock.calendar,
                "policy_version": clock.policy_version, "target_s": clock.target_s,
                "elapsed_s": round(spent, 1), "remaining_s": round(clock.target_s - spent, 1),
                "due_at": domain.due_at(clock, calendar), "started_at": clock.started_at,
                "stopped_at": clock.stopped_at, "warned": list(clock.warned),
                "breached": clock.breached, "met": clock.met,
            })
        return rows

    # -- the timer engine -----------------------------------------------------------------

    async def fire_due(self, now: datetime | None = None, *, lease: timedelta,
                       batch: int = 200) -> int:
        """Fire every clock due by now that no live replica holds; returns events emitted."""
        now = now or utc_now()
        emitted = 0
        for clock_id in await self.store.due_clock_ids(now, batch):
            clock = await self.store.claim(clock_id, self.owner, now, lease)
            if clock is None:
                continue  # another replica holds it
            policy = await self.policy(clock.policy_version)
            calendar = policy.calendars[clock.calendar]
            change = domain.announce(*domain.fire(clock, calendar, now))
            try:
                await self.store.save_clock(
                    change.record, expected_version=clock.version,
                    next_fire=domain.next_fire_at(change.record, calendar), events=change.events,
                    lease_owner=self.owner,
                )
            except ConcurrencyConflict:
                log.warning("lost the lease on %s before writing; its new holder fires it",
                            clock_id)
                continue
            self._count(change)
            emitted += len(change.events)
            for event in change.events:
                self.metrics.lag.observe(max(0.0, (utc_now() - event.occurred_at).total_seconds()))
        return emitted

    async def fire_all_due(self, *, lease: timedelta) -> None:
        """Fire batches until nothing is due: one round of the timer engine."""
        while await self.fire_due(lease=lease):
            pass

    async def refresh_gauges(self) -> None:
        await self.store.flush_active_counts()
        for metric, count in (await self.store.active_counts()).items():
            self.metrics.active.labels(metric).set(count)

    # -- helpers ----------------------------------------------------------------------------

    async def _known(self, ticket_id: str, *, need_priority: bool = False) -> SlaTicket:
        """For the events that only come well after creation (reopening, a new priority)."""
        ticket = await self.store.ticket(ticket_id)
        if ticket is None or ticket.policy_version is None or (
                need_priority and ticket.priority is None):
            raise TicketNotKnownYet(ticket_id)
        return ticket

    async def _open_clocks(self, ticket_id: str, *metrics: SlaMetric) -> list[Clock]:
        return [c for c in await self.store.clocks_of(ticket_id)
                if c.metric in metrics and c.state != ClockState.STOPPED]

    async def _start(self, clock_id: str, ticket_id: str, metric: SlaMetric, priority: Priority,
                     policy: SlaPolicy, at: datetime, level: SupportLevel | None,
                     tier: ContractTier | None) -> None:
        started = self._starting(clock_id, ticket_id, metric, priority, policy, at, level, tier)
        if started is not None:
            await self.store.add_clocks([started])

    @staticmethod
    def _starting(clock_id: str, ticket_id: str, metric: SlaMetric, priority: Priority,
                  policy: SlaPolicy, at: datetime, level: SupportLevel | None,
                  tier: ContractTier | None) -> StartedClock | None:
        """A new clock, when its next firing and the time limit it tells; ``None`` when
        the policy sets no target for it (e.g. vendors' own contracts)."""
        clock = domain.start_clock(clock_id, ticket_id=ticket_id, metric=metric,
                                   priority=priority, policy=policy, started_at=at, level=level,
                                   contract_tier=tier)
        if clock is None:
            return None
        calendar = policy.calendars[clock.calendar]
        told = [domain.time_limit_told(clock, calendar, at)] if domain.time_limit_moved(
            None, clock, calendar) else []
        return clock, domain.next_fire_at(clock, calendar), told

    async def _stop(self, clock_id: str, at: datetime) -> None:
        def stopped(c: Clock, cal: domain.Calendar) -> Change[Clock] | None:
            new, met = domain.stop(c, cal, at)
            if new is c:
                return None
            told = domain.announce(new, [met] if met else [])
            return Change(told.record, (*told.events, domain.stopped_told(new)))

        await self._change_with_events(clock_id, at, stopped)

    async def _change(self, clock_id: str, at: datetime,
                      rule: Callable[[Clock, domain.Calendar], Clock | None]) -> None:
        def plain(c: Clock, cal: domain.Calendar) -> Change[Clock] | None:
            new = rule(c, cal)
            return None if new is None else Change(new)

        await self._change_with_events(clock_id, at, plain)

    async def _change_with_events(
        self, clock_id: str, at: datetime,
        rule: Callable[[Clock, domain.Calendar], Change[Clock] | None],
    ) -> None:
        """``at``: when the change happened (the ticket event's time), which orders the time
        limits told to intake."""
        async def step() -> None:
            clock = await self.store.clock(clock_id)
            if clock is None:
                return
            policy = await self.policy(clock.policy_version)
            calendar = policy.calendars[clock.calendar]
            change = rule(clock, calendar)
            if change is None:
                return
            new = change.record
            new_calendar = policy.calendars[new.calendar]
            events = list(change.events)
            if domain.time_limit_moved(clock, new, new_calendar, calendar):
                events.append(domain.time_limit_told(new, new_calendar, at))
            await self.store.save_clock(
                new, expected_version=clock.version,
                next_fire=domain.next_fire_at(new, new_calendar), events=events,
            )
            self._count(change)
            if new.state == ClockState.STOPPED and clock.state != ClockState.STOPPED:
                self.store.count_active(new.metric, -1)

        await retry_on_conflict(step, what=f"clock {clock_id}")

    def _count(self, change: Change[Clock]) -> None:
        clock = change.record
        labels = (clock.metric.value, clock.priority.value,
                  clock.level.value if clock.level else "")
        counters = {SlaWarning.event_type: self.metrics.warnings,
                    SlaBreached.event_type: self.metrics.breaches,
                    SlaMet.event_type: self.metrics.met}
        for event in change.events:
            if event.type in counters:
                counters[event.type].labels(*labels).inc()
