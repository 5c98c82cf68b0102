"""SLA fires a clock once however many replicas run: the store's timer lease and its
version-and-lease fence, tested directly on the run's MongoDB.

Each test names the protection it pins; remove that protection from ``store.py`` and the
test fails (the two-replica end-to-end test could not tell: one replica fired nearly every
clock and it counted distinct event ids).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sportello_contracts.enums import Priority, SlaMetric
from sportello_runtime.concurrency import ConcurrencyConflict
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.store import MongoStore
from sportello_sla import domain
from sportello_sla.defaults import DEFAULT_POLICY
from sportello_sla.store import INDEXES, SlaStore
from support.stores import relay_without_bus

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@pytest.fixture
async def store(mongo_url: str) -> AsyncIterator[SlaStore]:
    mongo = MongoStore(mongo_url, f"sla_{uuid.uuid4().hex[:10]}", app_name="test")
    await mongo.ensure_indexes(INDEXES)
    yield SlaStore(mongo, relay_without_bus(ServiceMetrics(f"s{uuid.uuid4().hex[:6]}")))
    await mongo.client.drop_database(mongo.db.name)
    await mongo.close()


async def due_clock(store: SlaStore, ticket_id: str = "t-1") -> domain.Clock:
    """A running resolution clock whose next firing is already due at ``T0``."""
    clock = domain.start_clock(f"{ticket_id}:resolution:0", ticket_id=ticket_id,
                               metric=SlaMetric.RESOLUTION, priority=Priority.P1,
                               policy=DEFAULT_POLICY, started_at=T0 - timedelta(hours=1))
    assert clock is not None
    assert await store.add_clocks([(clock, T0 - timedelta(seconds=1), ())]) == 1
    return clock


async def test_of_two_replicas_claiming_a_due_clock_at_once_only_one_gets_it(
    store: SlaStore,
) -> None:
    """Protection: the claim's filter on an absent or expired lease (``claim``)."""
    clock = await due_clock(store)
    for _ in range(5):  # the race, run several times over fresh leases
        claims = await asyncio.gather(*(store.claim(clock.id, f"replica-{n}", T0, LEASE)
                                        for n in range(4)))
        winners = [c for c in claims if c is not None]
        assert len(winners) == 1, claims
        assert await store.due_clock_ids(T0, 10) == []  # leased: no replica is offered it
        held = await store.clock(clock.id)
        assert held is not None
        await store.save_clock(held, expected_version=held.version,
                               next_fire=T0 - timedelta(seconds=1), events=())


async def test_a_lease_that_ran_out_can_be_claimed_by_another_replica(store: SlaStore) -> None:
    """A replica that died holding a lease does not stop the clock for good."""
    clock = await due_clock(store)
    assert await store.claim(clock.id, "dead-replica", T0, LEASE) is not None
    assert await store.claim(clock.id, "live-replica", T0 + LEASE / 2, LEASE) is None
    later = T0 + LEASE + timedelta(seconds=1)
    assert await store.due_clock_ids(later, 10) == [clock.id]
    assert await store.claim(clock.id, "live-replica", later, LEASE) is not None


async def test_a_replica_whose_lease_was_taken_over_cannot_save_what_it_fired(
    store: SlaStore,
) -> None:
    """Protection: the lease owner in ``save_clock``'s fence. The slow replica's version is
    still current (the new owner has not saved yet), so only the owner tells them apart."""
    clock = await due_clock(store)
    slow = await store.claim(clock.id, "slow", T0, LEASE)
    assert slow is not None
    later = T0 + LEASE + timedelta(seconds=1)
    fast = await store.claim(clock.id, "fast", later, LEASE)
    assert fast is not None
    fired, _ = domain.fire(slow, DEFAULT_POLICY.calendar_for(Priority.P1), later)
    with pytest.raises(ConcurrencyConflict):
        await store.save_clock(fired, expected_version=slow.version, next_fire=None,
                               events=(), lease_owner="slow")
    await store.save_clock(fired, expected_version=fast.version, next_fire=None, events=(),
                           lease_owner="fast")
    saved = await store.clock(clock.id)
    assert saved is not None
    assert saved.version == fired.version


async def test_a_clock_changed_since_it_was_read_is_not_overwritten(store: SlaStore) -> None:
    """Protection: the version in ``save_clock``'s fence (a pause saved by an event handler
    between the timer's read and its write)."""
    clock = await due_clock(store)
    paused = replace(clock, state=domain.ClockState.PAUSED, version=clock.version + 1)
    await store.save_clock(paused, expected_version=clock.version, next_fire=None, events=())
    stale = replace(clock, breached=True, version=clock.version + 1)
    with pytest.raises(ConcurrencyConflict):
        await store.save_clock(stale, expected_version=clock.version, next_fire=None,
                               events=())
    saved = await store.clock(clock.id)
    assert saved is not None
    assert saved.state == domain.ClockState.PAUSED
    assert not saved.breached


async def test_clocks_started_together_skip_the_one_already_there_and_add_the_rest(
    store: SlaStore,
) -> None:
    """Protection: ``add_clocks`` writes unordered and treats only a duplicate id as done;
    the other handler of a ticket's events may have started one of them first."""
    first = await due_clock(store, "t-2")
    second = domain.start_clock("t-2:first_response", ticket_id="t-2",
                                metric=SlaMetric.FIRST_RESPONSE, priority=Priority.P1,
                                policy=DEFAULT_POLICY, started_at=T0)
    assert second is not None
    again = replace(first, target_s=first.target_s + 1)
    assert await store.add_clocks([(again, None, ()), (second, None, ())]) == 1
    kept = await store.clock(first.id)
    assert kept is not None
    assert kept.target_s == first.target_s  # left as it was
    assert {c.id for c in await store.clocks_of("t-2")} == {first.id, second.id}
    assert await store.add_clocks([(again, None, ()), (second, None, ())]) == 0
