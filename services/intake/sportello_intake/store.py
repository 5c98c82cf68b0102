"""Intake's MongoDB: tickets (with their outbox) and the ticket-number counters."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from sportello_contracts import EventEnvelope
from sportello_contracts.enums import Channel, SupportLevel, TicketStatus
from sportello_contracts.events import Requester
from sportello_intake.domain import HistoryEntry, Ticket
from sportello_runtime.outbox import (
    OUTBOX_FIELD,
    OutboxRelay,
    outbox_entry,
    outbox_fields,
    with_outbox,
)
from sportello_runtime.store import Document, MongoStore

TICKETS = "tickets"
COUNTERS = "counters"

INDEXES = {
    TICKETS: [
        IndexModel([("number", ASCENDING)], unique=True),
        IndexModel([("status", ASCENDING), ("level", ASCENDING), ("created_at", DESCENDING)]),
    ],
}


class ConcurrencyConflict(Exception):
    """The ticket changed since it was read: reload and decide again."""


class TicketStore:
    def __init__(self, store: MongoStore, relay: OutboxRelay) -> None:
        self._tickets = store.collection(TICKETS)
        self._counters = store.collection(COUNTERS)
        self._relay = relay

    async def next_sequence(self, prefix: str, year: int) -> int:
        """Atomic across replicas: one counter document per prefix and year."""
        counter = await self._counters.find_one_and_update(
            {"_id": f"ticket-number:{prefix}:{year}"},
            {"$inc": {"value": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert counter is not None  # upsert with return_document=AFTER always returns one
        return int(counter["value"])

    async def add(self, ticket: Ticket, events: Sequence[EventEnvelope]) -> None:
        entries = [outbox_entry(e) for e in events]
        await self._tickets.insert_one({**to_document(ticket), **outbox_fields(entries)})
        self._relay.publish_soon(self._tickets, ticket.id, entries)

    async def save(
        self, ticket: Ticket, *, expected_version: int, events: Sequence[EventEnvelope]
    ) -> None:
        """Write the new state and its events in one update, fenced by the version read."""
        entries = [outbox_entry(e) for e in events]
        result = await self._tickets.update_one(
            {"_id": ticket.id, "version": expected_version},
            with_outbox({"$set": to_document(ticket)}, entries),
        )
        if result.matched_count == 0:
            raise ConcurrencyConflict(ticket.number)
        self._relay.publish_soon(self._tickets, ticket.id, entries)

    async def by_id(self, ticket_id: str) -> Ticket | None:
        doc = await self._tickets.find_one({"_id": ticket_id}, {OUTBOX_FIELD: 0})
        return from_document(doc) if doc else None

    async def by_number(self, number: str) -> Ticket | None:
        doc = await self._tickets.find_one({"number": number}, {OUTBOX_FIELD: 0})
        return from_document(doc) if doc else None


def to_document(ticket: Ticket) -> Document:
    return {
        "_id": ticket.id,
        "number": ticket.number,
        "status": ticket.status.value,
        "channel": ticket.channel.value,
        "requester": ticket.requester.model_dump(mode="json"),
        "subject": ticket.subject,
        "description": ticket.description,
        "category_hint": ticket.category_hint,
        "level": ticket.level.value if ticket.level else None,
        "group_id": ticket.group_id,
        "group_name": ticket.group_name,
        "agent_id": ticket.agent_id,
        "routing_sequence": ticket.routing_sequence,
        "resolution": ticket.resolution,
        "version": ticket.version,
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "history": [{"at": h.at, "kind": h.kind, "detail": h.detail} for h in ticket.history],
    }


def from_document(doc: Document) -> Ticket:
    return Ticket(
        id=doc["_id"],
        number=doc["number"],
        status=TicketStatus(doc["status"]),
        channel=Channel(doc["channel"]),
        requester=Requester.model_validate(doc["requester"]),
        subject=doc["subject"],
        description=doc["description"],
        category_hint=doc.get("category_hint"),
        level=SupportLevel(doc["level"]) if doc.get("level") else None,
        group_id=doc.get("group_id"),
        group_name=doc.get("group_name"),
        agent_id=doc.get("agent_id"),
        routing_sequence=doc.get("routing_sequence", 0),
        resolution=doc.get("resolution"),
        version=doc["version"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        history=tuple(
            HistoryEntry(h["at"], h["kind"], h.get("detail") or {}) for h in doc.get("history", [])
        ),
    )
