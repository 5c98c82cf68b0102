"""MongoDB through PyMongo's native asyncio client: the same code path against any server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from sportello_contracts import utc_now

log = logging.getLogger(__name__)

Document = dict[str, Any]
DUPLICATE_KEY = 11000


def duplicates_in(error: BulkWriteError) -> set[int]:
    """The writes of an unordered batch refused only because their ``_id`` (or another
    unique key) was taken, by position; the error again when any failed otherwise."""
    refused = error.details.get("writeErrors", [])
    if any(e.get("code") != DUPLICATE_KEY for e in refused):
        raise error
    return {int(e["index"]) for e in refused}


class MongoStore:
    """One client per process; the service's own database only."""

    def __init__(self, url: str, database: str, *, app_name: str, timeout_ms: int = 10_000) -> None:
        self.client: AsyncMongoClient[Document] = AsyncMongoClient(
            url,
            appname=app_name,
            tz_aware=True,
            uuidRepresentation="standard",
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
        )
        self.db: AsyncDatabase[Document] = self.client[database]

    def collection(self, name: str) -> AsyncCollection[Document]:
        return self.db[name]

    async def ensure_indexes(self, indexes: Mapping[str, Sequence[IndexModel]]) -> None:
        """Indexes are declared in code and created at start-up (idempotent)."""
        for collection, models in indexes.items():
            if models:
                await self.db[collection].create_indexes(list(models))

    async def ping(self, timeout_s: float = 2.0) -> bool:
        try:
            await asyncio.wait_for(self.client.admin.command("ping"), timeout_s)
        except (PyMongoError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        await self.client.close()


class ProcessedEvents:
    """Consumer dedupe records: (consumer, event_id), unique, forgotten after ``ttl``."""

    COLLECTION = "processed_events"

    def __init__(self, store: MongoStore, ttl: timedelta = timedelta(days=7)) -> None:
        self._collection = store.collection(self.COLLECTION)
        self.ttl = ttl

    def indexes(self) -> dict[str, list[IndexModel]]:
        return {
            self.COLLECTION: [
                IndexModel([("consumer", ASCENDING), ("event_id", ASCENDING)], unique=True),
                IndexModel(
                    [("processed_at", ASCENDING)], expireAfterSeconds=int(self.ttl.total_seconds())
                ),
            ]
        }

    async def seen(self, consumer: str, event_id: str) -> bool:
        found = await self._collection.find_one(
            {"consumer": consumer, "event_id": event_id}, {"_id": 1}
        )
        return found is not None

    async def remember(self, consumer: str, event_id: str) -> None:
        try:
            await self._collection.insert_one(
                {"consumer": consumer, "event_id": event_id, "processed_at": utc_now()}
            )
        except DuplicateKeyError:
            log.debug("event %s already remembered by %s", event_id, consumer)
