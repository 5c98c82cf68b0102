"""Analytics' MongoDB: every event received (append-only, once per event id), the facts of
each ticket with what it last added to the buckets, and the daily buckets.

A change of a ticket's facts is saved (fenced on its version) together with the delta it
owes the buckets; each bucket then takes that delta once (the bucket remembers which
versions of which tickets it took), and the fact is marked settled. A crash in between
leaves the delta on the fact, where the next start settles it: nothing counted twice or
lost.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError

from sportello_analytics.domain.buckets import DIMENSIONS, Contribution, bucket_fields
from sportello_analytics.domain.facts import Event, TicketFacts
from sportello_runtime.concurrency import ConcurrencyConflict
from sportello_runtime.store import Document, MongoStore

EVENTS = "events"
REPORTS = "reports"
FACTS = "facts"
BUCKETS = "buckets"

INDEXES = {
    EVENTS: [IndexModel([("ticket_id", ASCENDING), ("occurred_at", ASCENDING)]),
             IndexModel([("occurred_at", ASCENDING)])],
    FACTS: [IndexModel([("unsettled", ASCENDING)], sparse=True)],
    BUCKETS: [IndexModel([("day", ASCENDING)])],
}


class AnalyticsStore:
    def __init__(self, store: MongoStore) -> None:
        self._events = store.collection(EVENTS)
        self._facts = store.collection(FACTS)
        self._buckets = store.collection(BUCKETS)

    # -- the events ------------------------------------------------------------------------

    async def keep(self, event: Event, received_at: datetime) -> bool:
        """Append the event; False when its id is kept already (a copy)."""
        try:
            await self._events.insert_one(event_document(event, received_at))
        except DuplicateKeyError:
            return False
        return True

    async def keep_many(self, events: list[Event], received_at: datetime) -> int:
        """An import's batch: each kept once; answers how many were new."""
        if not events:
            return 0
        try:
            result = await self._events.insert_many(
                [event_document(e, received_at) for e in events], ordered=False)
        except BulkWriteError as exc:  # some were kept before: the rest are in
            return int(exc.details.get("nInserted", 0))
        return len(result.inserted_ids)

    async def events_of(self, ticket_id: str) -> list[Event]:
        cursor = self._events.find({"ticket_id": str(ticket_id)}).sort("occurred_at", ASCENDING)
        return [event_from(d) async for d in cursor]

    async def ticket_ids(self) -> AsyncIterator[str]:
        """Every ticket that has events: a rebuild's work list."""
        for ticket_id in await self._events.distinct("ticket_id"):
            if ticket_id:
                yield str(ticket_id)

    async def count_events(self) -> int:
        return await self._events.count_documents({})

    # -- the facts -------------------------------------------------------------------------

    async def facts(self, ticket_id: str) -> tuple[Contribution, int, Contribution | None]:
        """What the ticket adds, the version of its facts (0: none yet), and the delta of
        that version if the buckets have not all taken it yet."""
        doc = await self._facts.find_one({"_id": str(ticket_id)}, {
            "contribution": 1, "version": 1, "unsettled": 1})
        if not doc:
            return {}, 0, None
        unsettled = doc.get("unsettled")
        return (decode(doc.get("contribution") or {}), int(doc["version"]),
                decode(unsettled) if unsettled else None)

    async def save_facts(self, facts: TicketFacts, contribution: Contribution,
                         delta: Contribution, *, expected_version: int) -> int:
        """The new facts and the delta they owe the buckets, fenced on the version read."""
        version = expected_version + 1
        fields = {**facts_document(facts), "contribution": encode(contribution),
                  "version": version, "unsettled": encode(delta) if delta else None}
        if expected_version == 0:
            try:
                await self._facts.insert_one({"_id": facts.ticket_id, **fields})
            except DuplicateKeyError as exc:
                raise ConcurrencyConflict(facts.ticket_id) from exc
        else:
            result = await self._facts.update_one(
                {"_id": facts.ticket_id, "version": expected_version}, {"$set": fields})
            if result.matched_count == 0:
                raise ConcurrencyConflict(facts.ticket_id)
        return version

    async def settle(self, ticket_id: str, version: int, delta: Contribution) -> None:
        """Each bucket takes the delta once for this version of this ticket."""
        taken = f"taken.{hashlib.blake2b(ticket_id.encode(), digest_size=10).hexdigest()}"
        for key, counts in delta.items():
            increments = {f"counts.{name}": value for name, value in counts.items()}
            try:
                await self._buckets.update_one(
                    {"_id": key, taken: {"$ne": version}},
                    {"$inc": increments, "$addToSet": {taken: version},
                     "$setOnInsert": bucket_fields(key)}, upsert=True)
            except DuplicateKeyError:
                continue  # taken before: this bucket has it
        await self._facts.update_one({"_id": ticket_id, "version": version},
                                     {"$set": {"unsettled": None}})

    async def unsettled(self, limit: int = 500) -> list[tuple[str, int, Contribution]]:
        cursor = self._facts.find({"unsettled": {"$ne": None}},
                                  {"version": 1, "unsettled": 1}).limit(limit)
        return [(d["_id"], int(d["version"]), decode(d["unsettled"])) async for d in cursor]

    async def facts_of(self, ticket_id: str) -> Document | None:
        return await self._facts.find_one({"_id": str(ticket_id)},
                                          {"contribution": 0, "unsettled": 0})

    # -- the buckets -----------------------------------------------------------------------

    async def buckets(self, *, since: str | None, until: str,
                      filters: Mapping[str, str | None]) -> list[Document]:
        """Buckets of the days in [since, until) that match the filters (exact values)."""
        days: dict[str, Any] = {"$lt": until}
        if since is not None:
            days["$gte"] = since
        query: dict[str, Any] = {"day": days}
        for name in DIMENSIONS:
            value = filters.get(name)
            if value is not None:
                query[name] = str(value)
        cursor = self._buckets.find(query, {"taken": 0})
        return [d async for d in cursor]

    async def clear_derived(self) -> None:
        """A rebuild starts from the events alone."""
        await self._facts.delete_many({})
        await self._buckets.delete_many({})


class ReportStore:
    """The months whose report went out, to whom and when."""

    def __init__(self, store: MongoStore) -> None:
        self._reports = store.collection(REPORTS)

    async def sent(self, month: str, recipients: list[str], at: datetime) -> None:
        await self._reports.update_one({"_id": month}, {"$set": {
            "sent_at": at, "recipients": recipients}}, upsert=True)

    async def sent_months(self) -> set[str]:
        return {str(d["_id"]) async for d in self._reports.find({}, {"_id": 1})}


def encode(contribution: Contribution) -> list[dict[str, Any]]:
    """Bucket keys are JSON text: stored as a list, not as field names."""
    return [{"key": key, "counts": counts} for key, counts in contribution.items()]


def decode(stored: Iterable[Mapping[str, Any]]) -> Contribution:
    return {item["key"]: dict(item["counts"]) for item in stored}


def event_document(event: Event, received_at: datetime) -> Document:
    return {"_id": event.id, "type": event.type, "ticket_id": event.ticket_id,
            "occurred_at": event.occurred_at, "payload": dict(event.payload),
            "received_at": received_at}


def event_from(doc: Document) -> Event:
    return Event(id=str(doc["_id"]), type=doc["type"], ticket_id=doc.get("ticket_id"),
                 occurred_at=doc["occurred_at"], payload=doc.get("payload") or {})


def facts_document(facts: TicketFacts) -> dict[str, Any]:
    return {"number": facts.number, "channel": facts.channel, "category": facts.category,
            "priority": facts.priority, "department": facts.department,
            "customer_type": facts.customer_type, "level": facts.level, "group": facts.group,
            "agent": facts.agent, "created_at": facts.created_at,
            "first_response_at": facts.first_response_at, "resolved_at": facts.resolved_at,
            "closed_at": facts.closed_at, "rating": facts.rating,
            "levels_passed": list(facts.levels_passed), "escalations": facts.escalations,
            "reopens": facts.reopens, "sla": dict(facts.sla),
            "first_contact_resolution": facts.first_contact_resolution}
