"""The emulator itself: what it refuses, loudly, instead of guessing."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import mongomock
import pytest
from bson import Binary, Int64, ObjectId, Timestamp
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError, OperationFailure

from sportello_mongo_emulator import MongoEmulator
from sportello_mongo_emulator.server import _taken
from sportello_mongo_emulator.speedups import (
    _copy_document,
    _original_patch_datetimes,
    _patch_datetimes,
)

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def emulator() -> Iterator[MongoEmulator]:
    server = MongoEmulator("127.0.0.1", 0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(emulator: MongoEmulator) -> AsyncIterator[AsyncMongoClient[Doc]]:
    mongo: AsyncMongoClient[Doc] = AsyncMongoClient(emulator.uri, serverSelectionTimeoutMS=5000)
    yield mongo
    await mongo.close()


async def test_unknown_commands_fail_with_command_not_found(
    client: AsyncMongoClient[Doc],
) -> None:
    with pytest.raises(OperationFailure) as failure:
        await client.admin.command("replSetGetStatus")
    assert failure.value.code == 59
    assert "replSetGetStatus" in str(failure.value)


@pytest.mark.parametrize(
    ("call", "what"),
    [
        pytest.param(lambda db: db.c.update_one({}, [{"$set": {"a": 1}}], upsert=True),
                     "pipeline-style updates", id="pipeline-update"),
        pytest.param(lambda db: db.c.find_one({}, collation={"locale": "it"}),
                     "collation", id="collation"),
        pytest.param(lambda db: db.c.create_index([("body", "text")]), "indexes", id="text-index"),
        pytest.param(lambda db: db.c.aggregate([{"$merge": {"into": "other"}}]),
                     "$merge", id="merge-stage"),
    ],
)
async def test_unsupported_features_fail_clearly(
    client: AsyncMongoClient[Doc], call: Any, what: str
) -> None:
    with pytest.raises(OperationFailure) as failure:
        await call(client.emulated)
    assert "not supported" in str(failure.value)
    assert what in str(failure.value)


async def test_transactions_are_refused(client: AsyncMongoClient[Doc]) -> None:
    async with client.start_session() as session:
        with pytest.raises(OperationFailure):
            async with await session.start_transaction():
                await client.emulated.c.insert_one({"a": 1}, session=session)


async def test_mongomock_gaps_surface_as_operation_failures(
    client: AsyncMongoClient[Doc],
) -> None:
    with pytest.raises(OperationFailure):
        await client.emulated.c.find_one({"$where": "this.a == 1"})


async def test_hash_indexes_follow_every_kind_of_change(client: AsyncMongoClient[Doc]) -> None:
    """The emulator's key lookups must never miss a document mongomock would match."""
    db = client.indexes_follow
    await db.t.create_index("number", unique=True)
    await db.t.create_index([("tags", 1)])
    await db.t.insert_one({"_id": "a", "number": 1, "tags": ["vpn", "network"]})
    await db.t.update_one({"_id": "a"}, {"$set": {"number": 2}})  # in place
    assert [d["_id"] async for d in db.t.find({"number": 2})] == ["a"]
    assert await db.t.find_one({"number": 1}) is None
    await db.t.insert_one({"_id": "b", "number": 1})  # the old key is free again
    with pytest.raises(DuplicateKeyError):
        await db.t.insert_one({"_id": "c", "number": 2})
    with pytest.raises(DuplicateKeyError):
        await db.t.update_one({"_id": "b"}, {"$set": {"number": 2}})
    assert (await db.t.find_one({"_id": "b"}) or {}).get("number") == 1  # left as it was

    await db.t.find_one_and_update({"_id": "a"}, {"$set": {"number": 7}})
    await db.t.replace_one({"_id": "b"}, {"number": 8, "tags": "printer"})
    await db.t.update_one({"number": 9}, {"$set": {"tags": ["email"]}}, upsert=True)
    assert sorted([d["number"] async for d in db.t.find({})]) == [7, 8, 9]
    assert [d["number"] async for d in db.t.find({"tags": "vpn"})] == [7]  # array element
    assert [d["number"] async for d in db.t.find({"tags": "printer"})] == [8]
    assert [d["number"] async for d in db.t.find({"tags": "email"})] == [9]

    await db.t.delete_one({"number": 7})
    assert await db.t.find_one({"tags": "vpn"}) is None
    await db.t.insert_one({"_id": "d", "number": 7})  # the deleted key is free
    await db.t.drop()
    await db.t.create_index("number", unique=True)
    await db.t.insert_one({"_id": "e", "number": 7})
    assert [d["_id"] async for d in db.t.find({"number": 7})] == ["e"]


async def test_an_update_that_keeps_an_index_key_keeps_the_document_found(
    client: AsyncMongoClient[Doc],
) -> None:
    """An index whose fields an update left alone is not re-keyed; a value equal in Python
    but of another BSON type (True and 1) is a new key, and ranges see the change."""
    db = client.keys_kept
    await db.k.create_index("level")
    await db.k.insert_many([{"_id": "flag", "level": True, "note": "a"},
                            {"_id": "two", "level": 2, "note": "a"}])
    await db.k.update_one({"_id": "two"}, {"$set": {"note": "b"}})  # the key stays
    assert [d["_id"] async for d in db.k.find({"level": {"$gte": 1, "$lte": 3}})] == ["two"]
    await db.k.update_one({"_id": "flag"}, {"$set": {"level": 1}})  # True == 1 in Python
    found = [d["_id"] async for d in db.k.find({"level": {"$gte": 1, "$lte": 3}})]
    assert sorted(found) == ["flag", "two"]


async def test_an_equality_on_a_compound_indexs_first_fields_finds_what_a_scan_finds(
    client: AsyncMongoClient[Doc],
) -> None:
    """Looked up by the leading part of an index's key (as the sweeps' and counts' queries
    are), a query matches exactly what mongomock's matcher finds over every document."""
    db = client.prefixes
    await db.n.create_index([("status", 1), ("wait_until", 1)])
    await db.n.create_index([("group", 1), ("state", 1), ("priority", 1)])
    t0 = datetime(2026, 12, 7, 9, 0)
    await db.n.insert_many(
        [{"_id": n, "status": ["sent", "sending", "waiting"][n % 3],
          "wait_until": t0 + timedelta(minutes=n), "group": f"g{n % 4}",
          "state": ["queued", "assigned"][n % 2], "priority": n % 5} for n in range(60)]
        + [{"_id": "array", "status": ["waiting", "sent"], "group": "g1", "state": "queued"},
           {"_id": "missing"}, {"_id": "none", "status": None, "group": None}])
    await db.n.update_many({"status": "sending", "priority": {"$lt": 2}},
                           {"$set": {"status": "waiting"}})  # moved to another bucket
    await db.n.update_one({"_id": 7}, {"$set": {"group": "g0", "state": "queued"}})
    await db.n.delete_many({"status": "sent", "group": "g2"})
    queries: list[Doc] = [
        {"status": "waiting", "wait_until": {"$lte": t0 + timedelta(minutes=40)}},
        {"status": "sending"},
        {"status": "waiting", "group": "g1"},
        {"group": "g0", "state": "queued"},
        {"group": "g1", "state": "queued", "priority": {"$gte": 1}},
        {"group": "g3", "state": "assigned", "priority": 3},
        {"status": "nothing"},
    ]
    for query in queries:
        looked_up = {d["_id"] async for d in db.n.find(query)}
        scanned = {d["_id"] async for d in db.n.find({"$and": [query]})}  # no lookup
        assert looked_up == scanned, query
        assert await db.n.count_documents(query) == len(scanned), query
    assert {d["_id"] async for d in db.n.find({"status": "waiting"})} >= {"array", 1}


async def test_top_tells_what_ran_on_each_collection(client: AsyncMongoClient[Doc]) -> None:
    """MongoDB's ``top``, which the system benchmark reads for commands a ticket by
    collection: counted per command (a round trip), filed as MongoDB files them."""
    db = client.top_counts
    await db.a.insert_one({"_id": 1, "n": 1})
    await db.a.insert_many([{"_id": 2}, {"_id": 3}])  # one command
    await db.a.find_one({"_id": 1})
    await db.a.update_one({"_id": 1}, {"$set": {"n": 2}})
    await db.a.find_one_and_update({"_id": 2}, {"$set": {"n": 1}})
    await db.a.count_documents({})
    await db.b.delete_one({"_id": 9})
    with pytest.raises(DuplicateKeyError):
        await db.a.insert_one({"_id": 1})  # failed, and counted all the same
    totals = (await client.admin.command("top"))["totals"]
    a = totals["top_counts.a"]
    assert {kind: a[kind]["count"] for kind in a} == {
        "insert": 3, "queries": 1, "update": 1, "commands": 2, "total": 7}
    assert all(a[kind]["time"] >= 0 for kind in a)
    assert totals["top_counts.b"]["remove"]["count"] == 1
    assert not [name for name in totals if name.startswith("admin.")]


async def test_compound_unique_index_on_the_dedupe_pattern(
    client: AsyncMongoClient[Doc],
) -> None:
    db = client.dedupe_pattern
    await db.p.create_index([("consumer", 1), ("event_id", 1)], unique=True)
    for n in range(300):
        await db.p.insert_one({"consumer": "routing", "event_id": f"e{n}"})
    await db.p.insert_one({"consumer": "intake", "event_id": "e1"})
    with pytest.raises(DuplicateKeyError):
        await db.p.insert_one({"consumer": "routing", "event_id": "e299"})
    found = await db.p.find_one({"consumer": "routing", "event_id": "e150"})
    assert found is not None
    assert await db.p.count_documents({"event_id": "e1"}) == 2


async def test_ranges_on_an_indexed_field_match_what_mongomock_matches(
    client: AsyncMongoClient[Doc],
) -> None:
    from datetime import datetime, timedelta

    db = client.ranges
    await db.c.create_index("due_at")
    t0 = datetime(2026, 11, 23, 9, 0)
    await db.c.insert_many(
        [{"_id": n, "due_at": t0 + timedelta(seconds=n)} for n in range(50)]
        + [{"_id": "none", "due_at": None}, {"_id": "missing"},
           {"_id": "array", "due_at": [t0 - timedelta(days=1)]}, {"_id": "number", "due_at": 7}]
    )
    due = [d["_id"] async for d in db.c.find({"due_at": {"$lte": t0 + timedelta(seconds=9)}})
           .sort("_id", 1)]
    assert sorted(map(str, due)) == sorted(map(str, [*range(10), "array"]))
    window = [d["_id"] async for d in db.c.find(
        {"due_at": {"$gt": t0 + timedelta(seconds=10), "$lt": t0 + timedelta(seconds=13)}})]
    assert sorted(window) == [11, 12]
    await db.c.update_one({"_id": 3}, {"$set": {"due_at": t0 + timedelta(hours=1)}})
    await db.c.delete_one({"_id": 4})
    await db.c.update_one({"_id": "none"}, {"$set": {"due_at": t0 - timedelta(seconds=1)}})
    first = [d["_id"] async for d in db.c.find({"due_at": {"$lte": t0 + timedelta(seconds=5)},
                                                "_id": {"$ne": "array"}})
             .sort("due_at", 1).limit(3)]
    assert first == ["none", 0, 1]
    assert [d["_id"] async for d in db.c.find({"due_at": {"$gte": 5, "$lte": 8}})] == ["number"]


async def test_a_refused_update_leaves_nested_values_as_they_were(
    client: AsyncMongoClient[Doc],
) -> None:
    """The snapshot taken before an update must not share the nested documents and arrays
    the update changes in place, or the rollback would keep half of the update."""
    db = client.rollback_nested
    await db.t.create_index("number", unique=True)
    at = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    original = {"_id": "x", "number": 1, "at": at, "blob": Binary(b"\x00\x01"),
                "nested": {"list": [{"a": 1}, {"a": 2}], "tags": ["vpn"]}}
    await db.t.insert_one(original)
    await db.t.insert_one({"_id": "y", "number": 2})

    with pytest.raises(DuplicateKeyError):
        await db.t.update_one({"_id": "x"}, {"$set": {"number": 2, "nested.list.0.a": 5},
                                             "$push": {"nested.tags": "wifi"}})
    stored = await db.t.find_one({"_id": "x"})
    assert stored is not None
    assert stored["nested"] == {"list": [{"a": 1}, {"a": 2}], "tags": ["vpn"]}
    assert stored["number"] == 1
    assert stored["blob"] == b"\x00\x01"
    assert stored["at"].replace(tzinfo=UTC) == at


def test_document_copies_share_only_immutable_values() -> None:
    original: Doc = {"_id": ObjectId(), "n": Int64(7), "blob": Binary(b"\x01", 4),
                "at": datetime.now(UTC), "nested": {"list": [{"a": 1}], "raw": bytearray(b"x")}}
    copied = _copy_document(original)
    assert copied == original
    assert copied["nested"] is not original["nested"]
    assert copied["nested"]["list"][0] is not original["nested"]["list"][0]
    assert copied["nested"]["raw"] is not original["nested"]["raw"]  # mutable: deep-copied
    assert type(copied["n"]) is Int64
    assert type(copied["blob"]) is Binary
    assert copied["blob"].subtype == 4


def test_a_stored_document_is_copied_as_the_ordered_dict_it_is() -> None:
    """mongomock keeps stored documents as OrderedDicts and snapshots one before every
    update: that copy must rebuild it too, not share its nested values."""
    stored: OrderedDict[str, Any] = OrderedDict([("_id", "x"), ("nested", {"tags": ["vpn"]})])
    copied = _copy_document(stored)
    assert type(copied) is OrderedDict
    assert list(copied) == ["_id", "nested"]
    assert copied == stored
    assert copied["nested"]["tags"] is not stored["nested"]["tags"]


def test_datetimes_are_patched_exactly_as_mongomock_patches_them() -> None:
    aware = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=1)))
    document = OrderedDict([
        ("_id", ObjectId()), ("at", aware), ("naive", datetime(2026, 1, 1, 0, 0, 0, 999999)),
        ("nested", {"list": [aware, {"deep": aware}], "pair": (aware, 1)}),
        ("zero", Timestamp(0, 0)), ("n", Int64(3)), ("text", "x"), ("none", None),
    ])
    patched = _patch_datetimes(document)
    expected = _original_patch_datetimes(document)
    assert type(patched) is OrderedDict
    assert {k: v for k, v in patched.items() if k != "zero"} == {
        k: v for k, v in expected.items() if k != "zero"}
    assert patched["at"] == datetime(2026, 11, 23, 8, 30, 15, 123000)
    assert patched["nested"]["pair"] == [datetime(2026, 11, 23, 8, 30, 15, 123000), 1]
    assert patched["zero"].time > 0  # an empty Timestamp becomes the current one


@pytest.mark.parametrize("tz_aware", [False, True])
def test_a_limited_find_returns_what_mongomock_returns_copying_only_what_it_takes(
    tz_aware: bool,
) -> None:
    """Sorted on two keys with ties, a projection, datetimes, skip and limit: the same
    documents in the same order as mongomock's own cursor, and copies, not the stored ones."""
    collection: Any = mongomock.MongoClient(tz_aware=tz_aware).db.queue
    t0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    collection.insert_many([
        {"_id": n, "group": "l1" if n % 3 else "l2", "priority": f"P{n % 4 + 1}",
         "created_at": t0 + timedelta(seconds=n % 7), "history": [{"n": n}]}
        for n in range(120)
    ])
    spec = {"group": "l1"}
    sort = [("priority", 1), ("created_at", -1)]
    for skip, limit in [(0, 50), (10, 5), (70, 50), (200, 5)]:
        expected = list(collection.find(spec, {"history": 0}, sort=sort, skip=skip,
                                        limit=limit))
        taken = _taken(collection.find(spec, {"history": 0}, sort=sort, skip=skip,
                                       limit=limit), skip, limit)
        assert taken == expected
        assert [type(d["created_at"].tzinfo) for d in taken] == [
            type(d["created_at"].tzinfo) for d in expected]
    first = _taken(collection.find(spec, sort=sort, limit=1), 0, 1)[0]
    first["history"].append("changed")
    assert collection.find_one({"_id": first["_id"]})["history"] == [{"n": first["_id"]}]
