"""What SLA knows of a ticket arrives in any order: the rules that say when a clock can start
(pure), and the keeper starting the same clocks whatever the order (on the run's MongoDB)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sportello_contracts.enums import ContractTier, Priority, SlaMetric, SupportLevel
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.store import MongoStore
from sportello_sla import domain
from sportello_sla.defaults import DEFAULT_POLICY, ROUND_THE_CLOCK
from sportello_sla.domain import ClockState, SlaTicket
from sportello_sla.service import ClockKeeper, SlaMetrics
from sportello_sla.store import INDEXES, SlaStore
from support.stores import relay_without_bus

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_opening_clocks_wait_for_creation_and_priority_and_start_once() -> None:
    assert not domain.opening_clocks_due(SlaTicket("t", priority=Priority.P2))
    assert not domain.opening_clocks_due(SlaTicket("t", created_at=T0, policy_version=1))
    ready = SlaTicket("t", created_at=T0, policy_version=1, priority=Priority.P2)
    assert domain.opening_clocks_due(ready)
    assert not domain.opening_clocks_due(SlaTicket("t", created_at=T0, policy_version=1,
                                                   priority=Priority.P2, opening_clocks=True))


def test_a_level_box_waits_for_the_priority_and_a_newer_assignment() -> None:
    assigned = SlaTicket("t", created_at=T0, policy_version=1, assigned_level=SupportLevel.L1,
                         assigned_sequence=1, assigned_at=T0)
    assert not domain.level_box_due(assigned)  # no priority yet: the box's size is unknown
    sized = SlaTicket(**{**assigned.__dict__, "priority": Priority.P3})
    assert domain.level_box_due(sized)
    running = SlaTicket(**{**sized.__dict__, "sequence": 1})
    assert not domain.level_box_due(running)


def test_only_a_moving_resolution_due_is_a_new_time_limit() -> None:
    resolution = domain.start_clock("t:resolution:0", ticket_id="t", metric=SlaMetric.RESOLUTION,
                                    priority=Priority.P1, policy=DEFAULT_POLICY, started_at=T0)
    first = domain.start_clock("t:first_response", ticket_id="t",
                               metric=SlaMetric.FIRST_RESPONSE, priority=Priority.P1,
                               policy=DEFAULT_POLICY, started_at=T0)
    assert resolution is not None
    assert first is not None
    assert domain.time_limit_moved(None, resolution, ROUND_THE_CLOCK)
    assert not domain.time_limit_moved(None, first, ROUND_THE_CLOCK)
    paused = domain.pause(resolution, ROUND_THE_CLOCK, T0 + timedelta(hours=1))
    assert paused is not None
    assert domain.time_limit_moved(resolution, paused, ROUND_THE_CLOCK)
    fired, _ = domain.fire(resolution, ROUND_THE_CLOCK, T0 + timedelta(hours=3, minutes=30))
    assert not domain.time_limit_moved(resolution, fired, ROUND_THE_CLOCK)
    stopped, _ = domain.stop(resolution, ROUND_THE_CLOCK, T0 + timedelta(hours=1))
    assert not domain.time_limit_moved(resolution, stopped, ROUND_THE_CLOCK)


@pytest.fixture
async def keeper(mongo_url: str) -> AsyncIterator[ClockKeeper]:
    store = MongoStore(mongo_url, f"sla_{uuid.uuid4().hex[:10]}", app_name="test")
    await store.ensure_indexes(INDEXES)
    metrics = ServiceMetrics(f"s{uuid.uuid4().hex[:6]}")
    sla = SlaStore(store, relay_without_bus(metrics))
    await sla.add_policy(DEFAULT_POLICY, author="test", now=T0)
    yield ClockKeeper(sla, SlaMetrics.registered_on(metrics), owner="test")
    await store.client.drop_database(store.db.name)
    await store.close()


async def clocks(keeper: ClockKeeper, ticket_id: str) -> list[tuple[Any, ...]]:
    return sorted((c.id, c.metric.value, c.state, c.target_s, c.started_at)
                  for c in await keeper.store.clocks_of(ticket_id))


@pytest.mark.e2e
async def test_created_triaged_and_assigned_start_the_same_clocks_in_every_order(
    keeper: ClockKeeper,
) -> None:
    """No order costs a retry: each event records its fact and the last one starts what
    became possible (the level box is sized by the priority, which comes with triage)."""
    results = []
    for order in itertools.permutations(["created", "triaged", "assigned"]):
        ticket_id = f"t-{'-'.join(order)}"
        def step_of(name: str, t: str = ticket_id) -> Awaitable[None]:
            if name == "created":
                return keeper.ticket_created(t, T0, ContractTier.GOLD)
            if name == "triaged":
                return keeper.ticket_triaged(t, Priority.P1, None)
            return keeper.ticket_assigned(t, SupportLevel.L1, 1, T0 + timedelta(seconds=1))

        for step in order:
            await step_of(step)
        found = await clocks(keeper, ticket_id)
        results.append([(cid.removeprefix(ticket_id), *rest) for cid, *rest in found])
        # And all three at once, as the work queue's prefetch hands them over.
        ticket_id = f"{ticket_id}-together"
        await asyncio.gather(*(step_of(name, ticket_id) for name in order))
        found = await clocks(keeper, ticket_id)
        results.append([(cid.removeprefix(ticket_id), *rest) for cid, *rest in found])
    assert all(r == results[0] for r in results), results
    assert [r[0] for r in results[0]] == [":first_response", ":level_time_box:L1:1",
                                          ":resolution:0"]
    assert all(state == ClockState.RUNNING for _, _, state, _, _ in results[0])


@pytest.mark.e2e
async def test_a_late_older_assignment_changes_nothing(keeper: ClockKeeper) -> None:
    await keeper.ticket_created("t", T0, None)
    await keeper.ticket_triaged("t", Priority.P2, None)
    await keeper.ticket_assigned("t", SupportLevel.L2, 2, T0 + timedelta(minutes=5))
    await keeper.ticket_assigned("t", SupportLevel.L1, 1, T0 + timedelta(seconds=1))
    boxes = [c for c in await keeper.store.clocks_of("t") if c.metric is SlaMetric.LEVEL_TIME_BOX]
    assert [(c.level, c.state) for c in boxes] == [(SupportLevel.L2, ClockState.RUNNING)]
    ticket = await keeper.store.ticket("t")
    assert ticket is not None
    assert (ticket.sequence, ticket.level, ticket.assigned_sequence) == (2, SupportLevel.L2, 2)


@pytest.mark.e2e
async def test_an_assignment_heard_after_the_resolution_starts_no_running_box(
    keeper: ClockKeeper,
) -> None:
    """Found by the fault tests: the resolution stopped every open clock, then the
    assignment (published just before it) started a level box nothing would stop; after
    a reopening too, the late box stops at the resolution it predates."""
    await keeper.ticket_created("t", T0, None)
    await keeper.ticket_triaged("t", Priority.P2, None)
    resolved_at = T0 + timedelta(minutes=30)
    await keeper.resolved("t", resolved_at)
    await keeper.ticket_assigned("t", SupportLevel.L1, 1, T0 + timedelta(seconds=1))
    found = await keeper.store.clocks_of("t")
    assert {c.metric: c.state for c in found} == {
        SlaMetric.FIRST_RESPONSE: ClockState.STOPPED, SlaMetric.RESOLUTION: ClockState.STOPPED,
        SlaMetric.LEVEL_TIME_BOX: ClockState.STOPPED}
    box = next(c for c in found if c.metric is SlaMetric.LEVEL_TIME_BOX)
    assert box.stopped_at == resolved_at
    await keeper.reopened("t", T0 + timedelta(hours=1))
    await keeper.ticket_assigned("t", SupportLevel.L1, 2, T0 + timedelta(hours=1))
    await keeper.ticket_assigned("t", SupportLevel.L1, 1, T0 + timedelta(seconds=1))  # stale
    running = {c.id for c in await keeper.store.clocks_of("t") if c.state != ClockState.STOPPED}
    assert running == {"t:resolution:1", "t:level_time_box:L1:2"}


@pytest.mark.e2e
async def test_the_latest_policy_is_read_once_per_max_age_and_again_after_a_save(
    keeper: ClockKeeper, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int | None] = []
    read = keeper.store.policy

    async def counted(version: int | None = None) -> Any:
        reads.append(version)
        return await read(version)

    monkeypatch.setattr(keeper.store, "policy", counted)
    for n in range(5):
        await keeper.ticket_created(f"t-{n}", T0, None)
    assert reads == [None]  # five new tickets, one read
    keeper.forget_latest_policy()
    assert (await keeper.policy()).version == DEFAULT_POLICY.version
    assert reads == [None, None]
    assert (await keeper.policy(DEFAULT_POLICY.version)).version == DEFAULT_POLICY.version
    assert reads == [None, None]  # a saved version never changes: never read again
