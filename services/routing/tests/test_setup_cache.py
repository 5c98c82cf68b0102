"""The policy and groups a replica routes new tickets with: read once per max age, its own
changes seen at once, another replica's once its copy is too old."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sportello_contracts.enums import SupportLevel
from sportello_routing.defaults import DEFAULT_GROUPS, DEFAULT_POLICY
from sportello_routing.domain import Group
from sportello_routing.store import RoutingStore
from sportello_runtime.store import MongoStore
from support.stores import relay_without_bus

pytestmark = pytest.mark.e2e

MAX_AGE_S = 60.0
SAVED_AT = datetime(2026, 1, 1, tzinfo=UTC)
NEW_GROUP = Group("l1-field", "Field service", SupportLevel.L1, ("hardware",))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Replicas:
    """Two routing replicas on one database; the first reads the time from ``clock``."""

    def __init__(self, first: RoutingStore, second: RoutingStore, clock: Clock) -> None:
        self.first, self.second, self.clock = first, second, clock


@pytest.fixture
async def replicas(mongo_url: str) -> AsyncIterator[Replicas]:
    database = f"setup_{uuid.uuid4().hex[:10]}"
    mongo = [MongoStore(mongo_url, database, app_name="test") for _ in range(2)]
    relay = relay_without_bus()
    clock = Clock()
    first = RoutingStore(mongo[0], relay, setup_max_age_s=MAX_AGE_S, clock=clock)
    second = RoutingStore(mongo[1], relay, setup_max_age_s=MAX_AGE_S)
    for group in DEFAULT_GROUPS:
        await second.put_group(group)
    await second.add_policy(DEFAULT_POLICY, author="test", now=SAVED_AT)
    yield Replicas(first, second, clock)
    await mongo[0].client.drop_database(database)
    for store in mongo:
        await store.close()



def group_ids(groups: list[Group]) -> set[str]:
    return {g.id for g in groups}


async def test_a_replica_routes_with_its_copy_until_it_is_too_old(replicas: Replicas) -> None:
    before = await replicas.first.setup()
    assert before.policy == DEFAULT_POLICY
    assert group_ids(before.groups) == {g.id for g in DEFAULT_GROUPS}

    await replicas.second.put_group(NEW_GROUP)
    await replicas.second.add_policy(replace(DEFAULT_POLICY, version=2), author="test",
                                     now=SAVED_AT)
    replicas.clock.now += MAX_AGE_S - 1
    assert await replicas.first.setup() is before  # no read: the copy is young enough

    replicas.clock.now += 1
    after = await replicas.first.setup()
    assert after.policy is not None
    assert after.policy.version == 2
    assert NEW_GROUP.id in group_ids(after.groups)


async def test_a_replica_sees_its_own_changes_at_once(replicas: Replicas) -> None:
    first = replicas.first
    await first.setup()

    await first.put_group(NEW_GROUP)
    assert NEW_GROUP.id in group_ids((await first.setup()).groups)

    assert await first.add_policy(replace(DEFAULT_POLICY, version=2), author="test",
                                  now=SAVED_AT)
    policy = (await first.setup()).policy
    assert policy is not None
    assert policy.version == 2

    assert await first.delete_group(NEW_GROUP.id)
    assert NEW_GROUP.id not in group_ids((await first.setup()).groups)


async def test_handlers_that_find_the_copy_too_old_together_share_one_read(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = replicas.first
    await first.setup()
    reads = 0
    read_policy = first.policy

    async def counted_policy() -> object:
        nonlocal reads
        reads += 1
        return await read_policy()

    monkeypatch.setattr(first, "policy", counted_policy)
    replicas.clock.now += MAX_AGE_S

    copies = await asyncio.gather(*(first.setup() for _ in range(32)))

    assert reads == 1
    assert all(copy is copies[0] for copy in copies)
    assert copies[0].read_at == replicas.clock.now


async def test_a_handler_after_a_change_does_not_join_a_read_from_before_it(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = replicas.first
    read_groups = first.groups
    first_read_done, release_first_read = asyncio.Event(), asyncio.Event()

    async def groups_held_on_first_read() -> list[Group]:
        groups = await read_groups()
        if not first_read_done.is_set():
            first_read_done.set()
            await release_first_read.wait()  # in flight, with the groups as they were
        return groups

    monkeypatch.setattr(first, "groups", groups_held_on_first_read)
    replicas.clock.now += MAX_AGE_S
    started_before = asyncio.ensure_future(first.setup())
    await asyncio.wait_for(first_read_done.wait(), timeout=10)

    await first.put_group(NEW_GROUP)
    after_the_change = asyncio.ensure_future(first.setup())
    await asyncio.sleep(0)
    release_first_read.set()

    assert NEW_GROUP.id not in group_ids((await started_before).groups)
    assert NEW_GROUP.id in group_ids((await after_the_change).groups)
    assert NEW_GROUP.id in group_ids((await first.setup()).groups)  # the older read not kept
