"""The safety net's recount of an agent's load: a replica that crashed between claiming a
slot and writing the assignment leaked the slot, and only the recount gives it back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from sportello_contracts import utc_now
from sportello_contracts.enums import SupportLevel
from sportello_routing.domain import Agent
from sportello_routing.service import Router, RoutingMetrics
from sportello_routing.store import RoutingStore
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.store import MongoStore
from support.stores import relay_without_bus

pytestmark = pytest.mark.e2e

QUIET_FOR = timedelta(seconds=30)


@pytest.fixture
async def router(mongo_url: str) -> AsyncIterator[Router]:
    database = f"reconcile_{uuid.uuid4().hex[:10]}"
    mongo = MongoStore(mongo_url, database, app_name="test")
    metrics = ServiceMetrics(f"r{uuid.uuid4().hex[:6]}")
    store = RoutingStore(mongo, relay_without_bus(metrics), setup_max_age_s=60)
    yield Router(store, RoutingMetrics.registered_on(metrics))
    await mongo.client.drop_database(database)
    await mongo.close()


async def stored(store: RoutingStore, agent_id: str) -> Agent:
    found = await store.versioned_agent(agent_id)
    assert found is not None, agent_id
    return found[0]


async def leak_slots(store: RoutingStore, agent_id: str, count: int, *, ago: timedelta) -> None:
    """Claims with no assignment behind them, as a crash right after the claim leaves."""
    for _ in range(count):
        assert await store.claim_slot(agent_id, utc_now() - ago)


async def test_leaked_slots_are_given_back_once_the_agent_is_quiet(router: Router) -> None:
    store = router.store
    await store.add_agent(Agent("anna", "Anna", SupportLevel.L1, ("l1-service-desk",), capacity=2))
    await leak_slots(store, "anna", 2, ago=timedelta(minutes=5))
    assert not (await stored(store, "anna")).has_room

    await router.reconcile_agent("anna", quiet_for=QUIET_FOR)

    assert (await stored(store, "anna")).open_tickets == 0
    assert await store.claim_slot("anna", utc_now())  # both slots are usable again
    assert await store.claim_slot("anna", utc_now())


async def test_an_agent_assigned_just_now_is_not_recounted(router: Router) -> None:
    """Its assignment may be in flight between claim and insert: recounting now would take
    away a slot that is about to be used."""
    store = router.store
    await store.add_agent(Agent("bruno", "Bruno", SupportLevel.L1, ("l1-service-desk",)))
    await leak_slots(store, "bruno", 1, ago=timedelta(seconds=1))

    await router.reconcile_agent("bruno", quiet_for=QUIET_FOR)

    assert (await stored(store, "bruno")).open_tickets == 1


async def test_an_unknown_agent_is_ignored(router: Router) -> None:
    await router.reconcile_agent("nobody", quiet_for=QUIET_FOR)
    assert await router.store.versioned_agent("nobody") is None
