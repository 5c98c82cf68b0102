"""Ticket numbers on the run's MongoDB: consecutive and unique however many ask at once,
with one counter update for all who asked while one was on its way."""

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
