"""Routing's MongoDB: one assignment document per ticket, with its outbox and history."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from sportello_contracts import EventEnvelope
from sportello_contracts.enums import SupportLevel
from sportello_routing.domain import Assignment
from sportello_runtime.outbox import OUTBOX_FIELD, OutboxRelay, outbox_entry
from sportello_runtime.store import Document, MongoStore

ASSIGNMENTS = "assignments"

INDEXES = {
    ASSIGNMENTS: [IndexModel([("level", ASCENDING), ("group_id", ASCENDING)])],
}


class AssignmentStore:
    def __init__(self, store: MongoStore, relay: OutboxRelay) -> None:
        self._assignments = store.collection(ASSIGNMENTS)
        self._relay = relay

    async def add_first(self, assignment: Assignment, events: Sequence[EventEnvelope]) -> bool:
        """Insert a ticket's first assignment; ``False`` when it already has one (redelivery)."""
        entries = [outbox_entry(e) for e in events]
        try:
            await self._assignments.insert_one({**to_document(assignment), OUTBOX_FIELD: entries})
        except DuplicateKeyError:
            return False
        self._relay.publish_soon(self._assignments, assignment.ticket_id, entries)
        return True

    async def get(self, ticket_id: str) -> Assignment | None:
        doc = await self._assignments.find_one({"_id": ticket_id}, {OUTBOX_FIELD: 0})
        return from_document(doc) if doc else None

    async def pending_events(self, ticket_id: str) -> int:
        doc = await self._assignments.find_one({"_id": ticket_id}, {OUTBOX_FIELD: 1})
        return len(doc.get(OUTBOX_FIELD) or []) if doc else 0


def to_document(a: Assignment) -> Document:
    return {
        "_id": a.ticket_id,
        "number": a.number,
        "level": a.level.value,
        "group_id": a.group_id,
        "group_name": a.group_name,
        "agent_id": a.agent_id,
        "sequence": a.sequence,
        "created_at": a.created_at,
        "history": list(a.history),
    }


def from_document(doc: Document) -> Assignment:
    return Assignment(
        ticket_id=doc["_id"],
        number=doc["number"],
        level=SupportLevel(doc["level"]),
        group_id=doc["group_id"],
        group_name=doc["group_name"],
        agent_id=doc.get("agent_id"),
        sequence=doc["sequence"],
        created_at=doc["created_at"],
        history=tuple(doc.get("history", [])),
    )
