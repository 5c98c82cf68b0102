"""The emulator itself: what it refuses, loudly, instead of guessing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from sportello_mongo_emulator import MongoEmulator

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
