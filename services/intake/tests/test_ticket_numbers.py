"""Ticket numbers on the run's MongoDB: unique however many ask at once, with one counter
update for all who asked while one was on its way, and, for a busy replica, numbers
reserved ahead; a quiet replica's stay consecutive."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from sportello_intake.store import TicketNumbers
from support.commands import CommandCounter

pytestmark = pytest.mark.e2e


@pytest.fixture
async def counters(mongo_url: str) -> AsyncIterator[tuple[Any, CommandCounter]]:
    listener = CommandCounter("findAndModify")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url,
                                                                event_listeners=[listener])
    database = client[f"numbers_{uuid.uuid4().hex[:10]}"]
    yield database["counters"], listener
    await client.drop_database(database.name)
    await client.close()


async def test_a_lone_request_takes_the_next_number(counters: tuple[Any, CommandCounter]) -> None:
    collection, updates = counters
    numbers = TicketNumbers(collection)
    assert [await numbers.next("n:HD:2026") for _ in range(3)] == [1, 2, 3]
    assert updates.count == 3
    assert await numbers.next("n:HD:2027") == 1  # each year its own counter


async def test_requests_at_once_share_updates_and_never_a_number(
    counters: tuple[Any, CommandCounter],
) -> None:
    collection, updates = counters
    numbers, other_replica = TicketNumbers(collection), TicketNumbers(collection)
    taken = await asyncio.gather(*(numbers.next("n:HD:2026") for _ in range(50)),
                                 *(other_replica.next("n:HD:2026") for _ in range(50)))
    assert sorted(taken) == list(range(1, 101))
    assert updates.count < 100  # the ones who waited shared an update
    assert (await collection.find_one({"_id": "n:HD:2026"}))["value"] == 100


async def test_a_store_error_reaches_every_waiting_request(
    counters: tuple[Any, CommandCounter], monkeypatch: pytest.MonkeyPatch,
) -> None:
    collection, _ = counters
    numbers = TicketNumbers(collection)

    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        raise PyMongoError("store unreachable")

    monkeypatch.setattr(collection, "find_one_and_update", unreachable)
    results = await asyncio.gather(*(numbers.next("n:HD:2026") for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, PyMongoError) for r in results)
    monkeypatch.undo()
    assert await numbers.next("n:HD:2026") == 1  # nothing was counted, and it recovers


class Ticking:
    """A clock that moves ``step`` seconds each time it is read: one read per request."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def test_a_busy_replica_reserves_ahead_and_still_hands_out_numbers_in_order(
    counters: tuple[Any, CommandCounter],
) -> None:
    collection, updates = counters
    numbers = TicketNumbers(collection, ahead_s=0.25, clock=Ticking(0.01))  # 100 a second
    taken = [await numbers.next("n:HD:2026") for _ in range(200)]
    assert taken == list(range(1, 201))
    assert updates.count <= 15  # one per request without reserving: 200


async def test_a_quiet_replica_reserves_nothing(counters: tuple[Any, CommandCounter]) -> None:
    collection, updates = counters
    numbers = TicketNumbers(collection, ahead_s=0.25, clock=Ticking(1.0))  # one a second
    assert [await numbers.next("n:HD:2026") for _ in range(3)] == [1, 2, 3]
    assert updates.count == 3
    assert (await collection.find_one({"_id": "n:HD:2026"}))["value"] == 3  # no gap behind


async def test_busy_replicas_never_share_a_number_and_a_restart_skips_what_was_reserved(
    counters: tuple[Any, CommandCounter],
) -> None:
    collection, _ = counters
    clock = Ticking(0.005)
    first, second = (TicketNumbers(collection, ahead_s=0.25, clock=clock) for _ in range(2))
    mine: dict[str, list[int]] = {"first": [], "second": []}
    for _ in range(100):
        mine["first"].append(await first.next("n:HD:2026"))
        mine["second"].append(await second.next("n:HD:2026"))
    together = mine["first"] + mine["second"]
    assert len(set(together)) == 200
    assert all(m == sorted(m) for m in mine.values())  # each replica's in order
    reserved = (await collection.find_one({"_id": "n:HD:2026"}))["value"]
    assert reserved >= max(together)

    restarted = TicketNumbers(collection, ahead_s=0.25, clock=clock)
    assert await restarted.next("n:HD:2026") == reserved + 1  # what was reserved is a gap


async def test_requests_waiting_for_a_draw_are_served_from_what_it_reserved(
    counters: tuple[Any, CommandCounter],
) -> None:
    """Those who asked while a draw was on its way take from its reserve, no second draw."""
    collection, updates = counters
    key = "n:HD:2026"
    numbers = TicketNumbers(collection, ahead_s=0.25, clock=Ticking(0.001))
    for _ in range(20):  # the demand to reserve for
        await numbers.next(key)
    while numbers._reserved.get(key):  # hand out what is left, so the next one draws
        await numbers.next(key)
    last = (await collection.find_one({"_id": key}))["value"]
    before = updates.count

    drawing = asyncio.create_task(numbers.next(key))
    await asyncio.sleep(0)  # its draw is on its way
    waiting = await asyncio.gather(*(numbers.next(key) for _ in range(10)))
    assert [await drawing, *waiting] == list(range(last + 1, last + 12))
    assert updates.count - before == 1
