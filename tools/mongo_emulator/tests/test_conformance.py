"""The MongoDB operations our services rely on, run against whichever backend this run uses.

The day this runs against a real MongoDB (MONGO_URL or testcontainers) it
proves the emulator did not mislead us.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

pytestmark = pytest.mark.e2e

Doc = dict[str, Any]


@pytest.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[Doc]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_url, tz_aware=True)
    database = client[f"conformance_{uuid.uuid4().hex[:10]}"]
    yield database
    await client.drop_database(database.name)
    await client.close()


async def test_unique_compound_index_refuses_a_duplicate(db: AsyncDatabase[Doc]) -> None:
    await db.processed.create_indexes(
        [IndexModel([("consumer", ASCENDING), ("event_id", ASCENDING)], unique=True)]
    )
    await db.processed.insert_one({"consumer": "routing", "event_id": "e1"})
    await db.processed.insert_one({"consumer": "intake", "event_id": "e1"})
    with pytest.raises(DuplicateKeyError):
        await db.processed.insert_one({"consumer": "routing", "event_id": "e1"})
    with pytest.raises(BulkWriteError) as bulk:
        await db.tickets.insert_many([{"_id": "t1"}, {"_id": "t1"}, {"_id": "t2"}])
    assert [e["code"] for e in bulk.value.details["writeErrors"]] == [11000]
    assert bulk.value.details["nInserted"] == 1  # ordered: stops at the first error
    assert await db.processed.count_documents({}) == 2


async def test_versioned_update_pushes_events_and_refuses_a_stale_version(
    db: AsyncDatabase[Doc],
) -> None:
    await db.tickets.insert_one({"_id": "t1", "version": 1, "status": "new", "outbox": []})
    entries = [{"event_id": "e1", "type": "ticket.status_changed"}, {"event_id": "e2"}]
    fresh = await db.tickets.update_one(
        {"_id": "t1", "version": 1},
        {"$set": {"status": "assigned", "version": 2}, "$push": {"outbox": {"$each": entries}}},
    )
    stale = await db.tickets.update_one({"_id": "t1", "version": 1}, {"$set": {"status": "x"}})
    assert (fresh.matched_count, fresh.modified_count) == (1, 1)
    assert stale.matched_count == 0
    ticket = await db.tickets.find_one({"_id": "t1"}, {"outbox": 0})
    assert ticket == {"_id": "t1", "version": 2, "status": "assigned"}
    pulled = await db.tickets.update_one({"_id": "t1"}, {"$pull": {"outbox": {"event_id": "e1"}}})
    assert pulled.modified_count == 1
    left = await db.tickets.find_one({"_id": "t1"}, {"outbox": 1})
    assert left is not None
    assert [e["event_id"] for e in left["outbox"]] == ["e2"]


async def test_outbox_sweep_query_on_array_element_dates(db: AsyncDatabase[Doc]) -> None:
    now = datetime.now(UTC)
    await db.tickets.insert_many([
        {"_id": "old", "outbox": [{"event_id": "a", "queued_at": now - timedelta(minutes=5)}]},
        {"_id": "new", "outbox": [{"event_id": "b", "queued_at": now}]},
        {"_id": "empty", "outbox": []},
    ])
    cutoff = now - timedelta(seconds=2)
    found = [d["_id"] async for d in db.tickets.find({"outbox.queued_at": {"$lte": cutoff}},
                                                     {"outbox": 1}).limit(10)]
    assert found == ["old"]
    doc = await db.tickets.find_one({"_id": "old"})
    assert doc is not None
    assert doc["outbox"][0]["queued_at"].tzinfo is not None
    assert abs(doc["outbox"][0]["queued_at"] - (now - timedelta(minutes=5))) < timedelta(
        milliseconds=1
    )


async def test_counter_upsert_returns_the_incremented_value(db: AsyncDatabase[Doc]) -> None:
    values = []
    for _ in range(3):
        counter = await db.counters.find_one_and_update(
            {"_id": "ticket-number:HD:2026"}, {"$inc": {"value": 1}},
            upsert=True, return_document=ReturnDocument.AFTER,
        )
        assert counter is not None
        values.append(counter["value"])
    assert values == [1, 2, 3]


async def test_lease_claim_takes_the_earliest_due_unleased_item(db: AsyncDatabase[Doc]) -> None:
    now = datetime.now(UTC)
    await db.clocks.insert_many([
        {"_id": "late", "due_at": now - timedelta(seconds=5), "lease_until": None},
        {"_id": "earliest", "due_at": now - timedelta(seconds=30), "lease_until": None},
        {"_id": "leased", "due_at": now - timedelta(seconds=60), "lease_until": now + timedelta(
            seconds=30)},
        {"_id": "future", "due_at": now + timedelta(hours=1), "lease_until": None},
    ])
    claim = {
        "due_at": {"$lte": now},
        "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}],
    }
    first = await db.clocks.find_one_and_update(
        claim, {"$set": {"lease_until": now + timedelta(seconds=10), "owner": "replica-a"}},
        sort=[("due_at", ASCENDING)], return_document=ReturnDocument.AFTER,
    )
    second = await db.clocks.find_one_and_update(
        claim, {"$set": {"lease_until": now + timedelta(seconds=10), "owner": "replica-b"}},
        sort=[("due_at", ASCENDING)], return_document=ReturnDocument.AFTER,
    )
    third = await db.clocks.find_one_and_update(claim, {"$set": {"owner": "replica-c"}})
    assert first is not None
    assert first["_id"] == "earliest"
    assert first["owner"] == "replica-a"
    assert second is not None
    assert second["_id"] == "late"
    assert third is None
    fenced = await db.clocks.update_one({"_id": "late", "owner": "replica-a"},
                                        {"$set": {"fired": True}})
    assert fenced.matched_count == 0  # a write fenced by the lease owner


async def test_cursor_batches_sort_skip_limit_and_count(db: AsyncDatabase[Doc]) -> None:
    await db.items.insert_many([{"n": n, "even": n % 2 == 0} for n in range(250)])
    got = [d["n"] async for d in db.items.find({"even": True}).sort("n", -1).batch_size(20)]
    assert got == list(range(248, -1, -2))
    page = [d["n"] async for d in db.items.find({}).sort("n", 1).skip(10).limit(5)]
    assert page == [10, 11, 12, 13, 14]
    assert await db.items.count_documents({"n": {"$gte": 200}}) == 50
    assert await db.items.estimated_document_count() == 250
    assert sorted(await db.items.distinct("even")) == [False, True]


async def test_aggregate_match_group_sort(db: AsyncDatabase[Doc]) -> None:
    await db.facts.insert_many([
        {"category": "network", "priority": "P1"}, {"category": "network", "priority": "P3"},
        {"category": "printer", "priority": "P4"},
    ])
    rows = [r async for r in await db.facts.aggregate([
        {"$match": {"priority": {"$in": ["P1", "P3", "P4"]}}},
        {"$group": {"_id": "$category", "tickets": {"$sum": 1}}},
        {"$sort": {"tickets": -1}},
    ])]
    assert rows == [{"_id": "network", "tickets": 2}, {"_id": "printer", "tickets": 1}]


async def test_indexes_are_listed_with_their_options(db: AsyncDatabase[Doc]) -> None:
    await db.processed.create_indexes([
        IndexModel([("processed_at", ASCENDING)], expireAfterSeconds=3600, name="ttl"),
        IndexModel([("number", ASCENDING)], unique=True, name="number"),
    ])
    indexes = {i["name"]: i async for i in await db.processed.list_indexes()}
    assert set(indexes) == {"_id_", "ttl", "number"}
    assert indexes["ttl"]["expireAfterSeconds"] == 3600
    assert indexes["number"]["unique"] is True
    assert dict(indexes["number"]["key"]) == {"number": 1}


async def test_deletes_and_drop(db: AsyncDatabase[Doc]) -> None:
    await db.junk.insert_many([{"k": 1}, {"k": 1}, {"k": 2}])
    assert (await db.junk.delete_one({"k": 1})).deleted_count == 1
    assert (await db.junk.delete_many({"k": {"$gte": 1}})).deleted_count == 2
    assert "junk" in await db.list_collection_names()
    await db.junk.drop()
    assert "junk" not in await db.list_collection_names()


async def test_text_search_is_refused_not_guessed(db: AsyncDatabase[Doc]) -> None:
    """No text index: a real server and the emulator both refuse (knowledge uses its own engine)."""
    await db.articles.insert_one({"title": "VPN error 809"})
    with pytest.raises(OperationFailure):
        await db.articles.find_one({"$text": {"$search": "vpn"}})


async def test_outbox_clearing_pulls_sent_entries_and_clears_the_mark_only_when_empty(
    db: AsyncDatabase[Doc],
) -> None:
    now = datetime.now(UTC)
    await db.tickets.create_index([("outbox_pending_at", ASCENDING)], sparse=True)
    await db.tickets.insert_many([
        {"_id": "one", "outbox": [{"event_id": "a"}, {"event_id": "b"}], "outbox_pending_at": now},
        {"_id": "two", "outbox": [{"event_id": "c"}, {"event_id": "d"}], "outbox_pending_at": now},
        {"_id": "done", "outbox": [], "outbox_pending_at": None},
    ])

    def only(sent: list[str]) -> dict[str, Any]:  # the outbox holds nothing but these
        return {"outbox": {"$not": {"$elemMatch": {"event_id": {"$nin": sent}}}}}

    def emptying(sent: list[str]) -> dict[str, Any]:
        return {"$pull": {"outbox": {"event_id": {"$in": sent}}},
                "$set": {"outbox_pending_at": None}}

    emptied = await db.tickets.update_one({"_id": "one", **only(["a", "b"])},
                                          emptying(["a", "b"]))
    only_c = await db.tickets.update_one({"_id": "two", **only(["c"])}, emptying(["c"]))
    assert emptied.modified_count == 1
    assert only_c.matched_count == 0  # more entries than we sent: the mark stays
    await db.tickets.insert_one({"_id": "three", "outbox": [{"event_id": "e"}],
                                 "outbox_pending_at": now})
    not_ours = await db.tickets.update_one(  # same size, other content: not what we sent
        {"_id": "three", **only(["z"])}, {"$set": {"outbox_pending_at": None}})
    ours = await db.tickets.count_documents({"_id": "three", **only(["e"])})
    assert not_ours.matched_count == 0
    assert ours == 1
    assert await db.tickets.count_documents({"_id": "done", **only([])}) == 1
    await db.tickets.delete_one({"_id": "three"})
    pending = [d["_id"] async for d in db.tickets.find(
        {"outbox_pending_at": {"$lte": now + timedelta(seconds=1)}})]
    assert pending == ["two"]
    one = await db.tickets.find_one({"_id": "one"})
    assert one is not None
    assert one["outbox"] == []


async def test_server_status_counts_commands_by_name(db: AsyncDatabase[Doc]) -> None:
    """What bench/ reads to count round trips per ticket. Other clients of a shared server
    add to the counts, never take from them."""

    async def counts() -> dict[str, int]:
        status = await db.client.admin.command("serverStatus")
        commands = status["metrics"]["commands"]
        return {name: int(commands.get(name, {}).get("total", 0))
                for name in ("insert", "find", "update")}

    before = await counts()
    await db.counted.insert_one({"_id": 1})
    await db.counted.find_one({"_id": 1})
    await db.counted.find_one({"_id": 2})
    await db.counted.bulk_write([UpdateOne({"_id": 1}, {"$set": {"n": n}}) for n in range(3)])
    after = await counts()
    assert after["insert"] - before["insert"] >= 1
    assert after["find"] - before["find"] >= 2
    assert after["update"] - before["update"] >= 1  # one bulk write, one command
