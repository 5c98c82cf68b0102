"""Intake's MongoDB: tickets (with their conversation and outbox), number counters,
mail threads, attachments and the record of notifications sent."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from bson import Binary
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from sportello_contracts import EventEnvelope, utc_now
from sportello_contracts.enums import Author, Channel, SupportLevel, TicketStatus, Visibility
from sportello_contracts.events import Requester
from sportello_intake.domain import AttachmentRef, HistoryEntry, Message, Rating, Ticket
from sportello_runtime.batching import Batcher
from sportello_runtime.concurrency import ConcurrencyConflict
from sportello_runtime.outbox import (
    OUTBOX_FIELD,
    OutboxRelay,
    outbox_entry,
    outbox_fields,
    with_outbox,
)
from sportello_runtime.store import Document, MongoStore, duplicates_in

TICKETS = "tickets"
COUNTERS = "counters"
THREADS = "threads"
ATTACHMENTS = "attachments"
NOTIFICATIONS = "notifications"
ACK_WINDOWS = "ack_windows"
ACK_WAIT_UNTIL = "ack_wait_until"
"""On a new ticket: until when its acknowledgement waits for SLA's time limit. Removed
when the time limit comes; the sweep acknowledges what is still waiting past it."""

INDEXES = {
    TICKETS: [
        IndexModel([("number", ASCENDING)], unique=True),
        IndexModel([("origin_key", ASCENDING)], unique=True),
        IndexModel([("status", ASCENDING), ("level", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("resolved_at", ASCENDING)]),
        IndexModel([("requester_email", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("requester_domain", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([(ACK_WAIT_UNTIL, ASCENDING)], sparse=True),
    ],
    ATTACHMENTS: [IndexModel([("ticket_id", ASCENDING)])],
    NOTIFICATIONS: [IndexModel([("ticket_id", ASCENDING)]),
                    IndexModel([("status", ASCENDING), ("wait_until", ASCENDING)]),
                    IndexModel([("message_id", ASCENDING)])],
    ACK_WINDOWS: [IndexModel([("opened_at", ASCENDING)], expireAfterSeconds=2 * 3600)],
}

LIGHT = {OUTBOX_FIELD: 0}
MAX_NUMBERS_AHEAD = 100
"""Most ticket numbers a replica reserves beyond what it was asked for."""

log = logging.getLogger(__name__)



class DuplicateOrigin(Exception):
    """A ticket with this origin (idempotency key, conversation, Message-ID) already exists."""


class TicketNumbers:
    """Ticket numbers from one counter document per prefix and year, atomic across replicas.

    Requests that want a number while the counter's update is on its way wait for the next
    one and share it: one ``$inc`` by how many they are. A busy replica also takes, in the
    same ``$inc``, as many numbers as it was asked for in the last ``ahead_s`` and hands
    them out from memory (hi/lo): at a steady 100 tickets/s that is one counter update per
    ``ahead_s`` instead of one per ticket, and the counter document stops being a hot spot.
    A quiet replica reserves nothing, so its numbers stay consecutive and in order. What a
    busy replica reserved and did not hand out before it stopped is a gap, as is a request
    cancelled while it waits; numbers from two busy replicas interleave within ``ahead_s``.
    """

    def __init__(self, counters: AsyncCollection[Document], *, ahead_s: float = 0.0,
                 max_ahead: int = MAX_NUMBERS_AHEAD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._counters = counters
        self._ahead_s = ahead_s
        self._max_ahead = max_ahead
        self._clock = clock
        self._batches: Batcher[str, None, int] = Batcher(self._draw)
        self._reserved: dict[str, range] = {}
        self._asked: dict[str, deque[float]] = {}
        """When each recent request came, per counter: the demand to reserve for."""

    async def next(self, counter_id: str) -> int:
        if self._ahead_s > 0:
            now = self._clock()
            asked = self._asked.setdefault(counter_id, deque())
            asked.append(now)
            while asked[0] < now - self._ahead_s:
                asked.popleft()
            reserved = self._reserved.get(counter_id)
            if reserved:
                self._reserved[counter_id] = reserved[1:]
                return reserved[0]
        return await self._batches.submit(counter_id, None)

    async def _draw(self, counter_id: str, requests: list[None]) -> list[int]:
        reserved = self._reserved.pop(counter_id, range(0))
        given = list(reserved[:len(requests)])
        if len(given) == len(requests):  # refilled while these waited for the last draw
            self._reserved[counter_id] = reserved[len(requests):]
            return given
        wanted = len(requests) - len(given)
        ahead = min(self._max_ahead, max(0, len(self._asked.get(counter_id, ())) - wanted))
        counter = await self._counters.find_one_and_update(
            {"_id": counter_id},
            {"$inc": {"value": wanted + ahead}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert counter is not None  # upsert + return_document=AFTER returns one
        drawn = range(int(counter["value"]) - wanted - ahead + 1, int(counter["value"]) + 1)
        self._reserved[counter_id] = drawn[wanted:]
        return given + list(drawn[:wanted])


RECENT_TICKET_MAX_CHARS = 64 * 1024
"""A ticket with a longer conversation is not kept: memory stays bounded by the count."""


class RecentTickets:
    """The tickets this process opened last, as it last wrote them (least recently used out).

    For read-modify-write under the version fence only: a copy that another replica has
    moved on from fails its save with ``ConcurrencyConflict`` and is dropped, so a stale
    copy costs one retry, never a lost update. A ticket's first change (routing's
    assignment, milliseconds after its creation) then starts from memory instead of a
    round trip. Never used to answer a read: that may come from another replica's
    change."""

    def __init__(self, capacity: int, max_chars: int = RECENT_TICKET_MAX_CHARS) -> None:
        self._capacity = capacity
        self._max_chars = max_chars
        self._tickets: OrderedDict[str, Ticket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tickets)

    def get(self, ticket_id: str) -> Ticket | None:
        ticket = self._tickets.get(ticket_id)
        if ticket is not None:
            self._tickets.move_to_end(ticket_id)
        return ticket

    def put(self, ticket: Ticket) -> None:
        if self._capacity <= 0:
            return
        if sum(len(m.body) for m in ticket.messages) > self._max_chars:
            self._tickets.pop(ticket.id, None)  # an older, shorter copy is stale now
            return
        self._tickets[ticket.id] = ticket
        self._tickets.move_to_end(ticket.id)
        while len(self._tickets) > self._capacity:
            self._tickets.popitem(last=False)

    def refresh(self, ticket: Ticket) -> None:
        """Replace the copy of a ticket kept here; one not kept stays out. Under a backlog
        larger than the capacity, tickets read back from the store would otherwise evict
        exactly the ones next in line for their first change, and every change would read."""
        if ticket.id in self._tickets:
            self.put(ticket)

    def drop(self, ticket_id: str) -> None:
        self._tickets.pop(ticket_id, None)


class TicketStore:
    def __init__(self, store: MongoStore, relay: OutboxRelay, *,
                 recent_capacity: int = 2000, numbers_ahead_s: float = 0.0) -> None:
        self._tickets = store.collection(TICKETS)
        self._counters = store.collection(COUNTERS)
        self._threads = store.collection(THREADS)
        self._notices_sent = store.collection(NOTIFICATIONS)
        self._attachments = store.collection(ATTACHMENTS)
        self._relay = relay
        self._numbers = TicketNumbers(self._counters, ahead_s=numbers_ahead_s)
        self.recent = RecentTickets(recent_capacity)

    async def next_sequence(self, prefix: str, year: int) -> int:
        return await self._numbers.next(f"ticket-number:{prefix}:{year}")

    async def add(self, ticket: Ticket, events: Sequence[EventEnvelope], *,
                  ack_wait_until: datetime | None = None) -> None:
        """Insert a new ticket; ``DuplicateOrigin`` when its origin was taken meanwhile.
        ``ack_wait_until``: hold its acknowledgement for SLA's time limit until then."""
        entries = [outbox_entry(e) for e in events]
        held = {ACK_WAIT_UNTIL: ack_wait_until} if ack_wait_until is not None else {}
        try:
            await self._tickets.insert_one({**to_document(ticket), **held,
                                            **outbox_fields(entries)})
        except DuplicateKeyError as exc:
            if await self._tickets.find_one({"origin_key": ticket.origin_key}, {"_id": 1}):
                raise DuplicateOrigin(ticket.origin_key) from exc
            raise
        self.recent.put(ticket)
        self._relay.publish_soon(self._tickets, ticket.id, entries)

    async def save(
        self, ticket: Ticket, *, previous: Ticket, events: Sequence[EventEnvelope]
    ) -> None:
        """Write the new state and its events in one update, fenced by the version read.
        Only the fields that differ from ``previous`` are sent: the fence guarantees the
        stored ticket is ``previous``, and a ticket carries its whole conversation."""
        entries = [outbox_entry(e) for e in events]
        result = await self._tickets.update_one(
            {"_id": ticket.id, "version": previous.version},
            with_outbox({"$set": changed_fields(previous, ticket)}, entries),
        )
        if result.matched_count == 0:
            self.recent.drop(ticket.id)
            raise ConcurrencyConflict(ticket.number)
        self.recent.refresh(ticket)
        self._relay.publish_soon(self._tickets, ticket.id, entries)

    async def note_time_limit(self, ticket_id: str, due_at: datetime | None, *,
                              as_of: datetime) -> Ticket | None:
        """SLA's time limit, unless a newer one is kept; the ticket as it now stands (None
        when a newer one was kept). Not a change of the ticket: no version, no event. A
        save from a copy kept before it (``recent``) leaves it alone: only the fields a
        rule changed are sent, and no rule changes these."""
        doc = await self._tickets.find_one_and_update(
            {"_id": ticket_id, "$or": [{"time_limit_as_of": None},
                                       {"time_limit_as_of": {"$lte": as_of}}]},
            {"$set": {"time_limit": due_at, "time_limit_as_of": as_of},
             "$unset": {ACK_WAIT_UNTIL: ""}},  # SLA answered: the acknowledgement waits no more
            projection=LIGHT, return_document=ReturnDocument.AFTER)
        return from_document(doc) if doc else None

    async def waiting_for_sla(self, now: datetime, limit: int = 100) -> list[str]:
        """Tickets whose acknowledgement waited for SLA's time limit past its time."""
        cursor = self._tickets.find({ACK_WAIT_UNTIL: {"$lte": now}}, {"_id": 1}).sort(
            ACK_WAIT_UNTIL, ASCENDING).limit(limit)
        return [str(doc["_id"]) async for doc in cursor]

    async def stop_waiting_for_sla(self, ticket_id: str) -> None:
        await self._tickets.update_one({"_id": ticket_id}, {"$unset": {ACK_WAIT_UNTIL: ""}})

    async def note_suggestions(self, ticket_id: str,
                               suggestions: list[tuple[str, str | None]]) -> Ticket | None:
        """Knowledge's articles for the requester; like the time limit, not a change of
        the ticket (no version, no event). The ticket as it now stands."""
        doc = await self._tickets.find_one_and_update(
            {"_id": ticket_id}, {"$set": {"suggestions": [list(s) for s in suggestions]}},
            projection=LIGHT, return_document=ReturnDocument.AFTER)
        return from_document(doc) if doc else None

    async def by_id(self, ticket_id: str) -> Ticket | None:
        doc = await self._tickets.find_one({"_id": ticket_id}, LIGHT)
        return from_document(doc) if doc else None

    async def to_change(self, ticket_id: str) -> Ticket | None:
        """The ticket as a starting point for ``save``: this process's last written copy
        when it has one (the save's version fence catches a stale one), else the store's."""
        return self.recent.get(ticket_id) or await self.by_id(ticket_id)

    async def by_number(self, number: str) -> Ticket | None:
        doc = await self._tickets.find_one({"number": number}, LIGHT)
        return from_document(doc) if doc else None

    async def by_origin(self, origin_key: str) -> Ticket | None:
        doc = await self._tickets.find_one({"origin_key": origin_key}, LIGHT)
        return from_document(doc) if doc else None

    async def resolved_before(self, cutoff: datetime, limit: int = 100) -> list[Ticket]:
        cursor = self._tickets.find(
            {"resolved_at": {"$lte": cutoff}, "status": TicketStatus.RESOLVED.value}, LIGHT
        ).sort("resolved_at", ASCENDING).limit(limit)
        return [from_document(doc) async for doc in cursor]

    async def of_requester(self, email: str, *, closed: bool, limit: int,
                           organisation: str | None = None) -> list[dict[str, Any]]:
        """One requester's tickets (or, with ``organisation``, those of every requester
        whose address is in that domain), newest first: the fields a list shows, not the
        whole record (a requester with years of tickets must not cost their conversations)."""
        wanted = {"$in" if closed else "$nin": [TicketStatus.CLOSED.value]}
        whose = ({"requester_domain": organisation.casefold()} if organisation
                 else {"requester_email": requester_key(email)})
        cursor = self._tickets.find(
            {**whose, "status": wanted},
            {"number": 1, "subject": 1, "status": 1, "level": 1, "time_limit": 1,
             "created_at": 1, "updated_at": 1, "rating": 1, "requester_email": 1},
        ).sort("created_at", DESCENDING).limit(limit)
        return [doc async for doc in cursor]

    # --- mail threads: Message-ID -> ticket, for replies that lost the [number] tag
    # Mail received is remembered here; the notices we sent keep their Message-ID in their
    # own record (``NoticeStore.sent``), so a notice costs no second write.

    async def remember_mail_ids(self, message_ids: Sequence[str], ticket_id: str) -> None:
        for message_id in message_ids:
            await self._threads.update_one(
                {"_id": f"mail:{message_id}"},
                {"$setOnInsert": {"ticket_id": ticket_id, "at": utc_now()}},
                upsert=True,
            )

    async def ticket_for_mail_ids(self, message_ids: Sequence[str]) -> str | None:
        """The ticket of the nearest known message in the thread (ids come nearest first):
        a mail received, or a notice we sent."""
        ids = [m for m in message_ids if isinstance(m, str)]
        if not ids:
            return None
        found = {doc["_id"].removeprefix("mail:"): doc["ticket_id"] async for doc in
                 self._threads.find({"_id": {"$in": [f"mail:{m}" for m in ids]}})}
        if not all(m in found for m in ids):
            async for doc in self._notices_sent.find({"message_id": {"$in": ids}},
                                                     {"message_id": 1, "ticket_id": 1}):
                found.setdefault(doc["message_id"], doc["ticket_id"])
        for message_id in ids:
            if message_id in found:
                return str(found[message_id])
        return None

    # --- attachments: written before the message that names them, by a deterministic id

    async def put_attachments(
        self, ticket_id: str, message_id: str, files: Sequence[tuple[AttachmentRef, bytes]]
    ) -> None:
        for ref, content in files:
            await self._attachments.replace_one(
                {"_id": ref.id},
                {"_id": ref.id, "ticket_id": ticket_id, "message_id": message_id,
                 "filename": ref.filename, "content_type": ref.content_type, "size": ref.size,
                 "content": Binary(content)},
                upsert=True,
            )

    async def drop_attachments(self, ticket_id: str, message_id: str) -> None:
        """Files of a message that was not stored after all; best effort (a leftover is
        unreachable: only a stored message names its files)."""
        try:
            await self._attachments.delete_many({"ticket_id": ticket_id,
                                                 "message_id": message_id})
        except PyMongoError:
            log.warning("could not drop the attachments of message %s", message_id)

    async def attachment(self, ticket_id: str, attachment_id: str) -> Document | None:
        return await self._attachments.find_one({"_id": attachment_id, "ticket_id": ticket_id})


def _message_document(m: Message) -> Document:
    return {
        "id": m.id, "author": m.author.value, "visibility": m.visibility.value,
        "channel": m.channel.value if m.channel else None, "body": m.body, "at": m.at,
        "author_name": m.author_name, "author_id": m.author_id, "external_id": m.external_id,
        "attachments": [{"id": a.id, "filename": a.filename, "content_type": a.content_type,
                         "size": a.size} for a in m.attachments],
        "call": m.call,
    }


def _message(doc: Document) -> Message:
    return Message(
        id=doc["id"], author=Author(doc["author"]), visibility=Visibility(doc["visibility"]),
        channel=Channel(doc["channel"]) if doc.get("channel") else None, body=doc["body"],
        at=doc["at"], author_name=doc.get("author_name"), author_id=doc.get("author_id"),
        external_id=doc.get("external_id"),
        attachments=tuple(AttachmentRef(a["id"], a["filename"], a["content_type"], a["size"])
                          for a in doc.get("attachments") or []),
        call=doc.get("call"),
    )


class NoticeStatus:
    WAITING = "waiting"
    """An acknowledgement waiting for SLA's time limit (until ``wait_until``)."""
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    """Nobody to tell, or no way to: recorded with the reason."""
    FAILED = "failed"
    """The relay or chat platform refused it: retried with the event."""
    UNSENDABLE = "unsendable"
    """Failed for good: the notice cannot be written as mail. Never tried again."""


FINAL = (NoticeStatus.SENT, NoticeStatus.SKIPPED, NoticeStatus.UNSENDABLE)
"""Never sent (again): a claim passes them by."""
DONE = (*FINAL, NoticeStatus.FAILED)
"""Past the point where a later notice should wait for it."""


@dataclass(frozen=True)
class SentNotice:
    """A notice that went out, as its record says it."""

    notice_id: str
    ticket_id: str
    message_id: str | None
    with_suggestions: bool
    sent_as: dict[str, str]
    """channel, to, subject, language."""


@dataclass(frozen=True)
class NoticeClaim:
    notice_id: str
    ticket_id: str
    kind: str
    at: datetime
    owner: str
    earlier: tuple[str, ...] = ()
    """Names of this process's earlier claims whose answers were lost: any may be written."""


def _sent(sent: SentNotice) -> Document:
    """The record's update: the Message-ID kept, so that a reply that lost the [number] tag
    is threaded by it (``TicketStore.ticket_for_mail_ids``)."""
    return {"$set": {**sent.sent_as, "status": NoticeStatus.SENT, "sent_at": utc_now(),
                     "message_id": sent.message_id, "with_suggestions": sent.with_suggestions}}


class NoticeStore:
    """The record of every notice: one document per notice id, claimed before sending so that
    two handlers (or a redelivery) never send the same notice twice."""

    def __init__(self, store: MongoStore, *, stale_sending_s: float = 60.0) -> None:
        self._notices = store.collection(NOTIFICATIONS)
        self._ack_windows = store.collection(ACK_WINDOWS)
        self._stale_sending = timedelta(seconds=stale_sending_s)

    async def status(self, notice_id: str) -> str | None:
        doc = await self._notices.find_one({"_id": notice_id}, {"status": 1})
        return doc.get("status") if doc else None

    async def is_done(self, notice_id: str) -> bool:
        return await self.status(notice_id) in DONE

    async def carried_suggestions(self, notice_id: str) -> bool:
        doc = await self._notices.find_one({"_id": notice_id}, {"with_suggestions": 1})
        return bool(doc and doc.get("with_suggestions"))

    async def overdue(self, now: datetime, limit: int = 100) -> list[str]:
        """Tickets whose acknowledgement waited for SLA past its time, held as a notice by
        versions before the hold moved onto the ticket (``ACK_WAIT_UNTIL``)."""
        cursor = self._notices.find(
            {"status": NoticeStatus.WAITING, "wait_until": {"$lte": now}}, {"ticket_id": 1}
        ).sort("wait_until", ASCENDING).limit(limit)
        return [str(doc["ticket_id"]) async for doc in cursor]

    async def abandoned(self, now: datetime, limit: int = 100) -> list[tuple[str, str]]:
        """(ticket, kind) of acknowledgements and first assignment notices claimed longer
        ago than a send takes: their sender died with them."""
        cursor = self._notices.find(
            {"status": NoticeStatus.SENDING, "at": {"$lt": now - self._stale_sending},
             "kind": {"$in": ["acknowledged", "assigned"]}}, {"ticket_id": 1, "kind": 1},
        ).limit(limit)
        return [(str(doc["ticket_id"]), str(doc["kind"])) async for doc in cursor]

    async def claim(self, notice_id: str, ticket_id: str, kind: str, now: datetime,
                    owner: str, earlier: tuple[str, ...] = ()) -> bool:
        """Take the notice for sending; False when it is sent or skipped, or another handler
        is sending it right now (one that died meanwhile loses it after a minute). A claim
        made under the same name, or under one of ``earlier``, is taken again: its answer
        may have been lost with the database's connection after it was written."""
        try:
            await self._notices.update_one(
                *self._claiming(notice_id, ticket_id, kind, now, (owner, *earlier)), upsert=True)
        except DuplicateKeyError:
            return False
        return True

    async def sent_then_claim(self, sent: SentNotice, claim: NoticeClaim) -> bool:
        """Record one notice as sent and claim the next in the same round trip (in order: the
        claim is tried only once the record is written); whether the next was claimed."""
        try:
            await self._notices.bulk_write([
                UpdateOne({"_id": sent.notice_id}, _sent(sent)),
                UpdateOne(*self._claiming(claim.notice_id, claim.ticket_id, claim.kind,
                                          claim.at, (claim.owner, *claim.earlier)), upsert=True),
            ], ordered=True)
        except BulkWriteError as error:
            if duplicates_in(error) == {1}:
                return False  # taken by another handler, or done
            raise
        return True

    def _claiming(self, notice_id: str, ticket_id: str, kind: str, now: datetime,
                  names: tuple[str, ...]) -> tuple[Document, Document]:
        """The claim's filter and update (an upsert: a notice's first claim creates it),
        made under the first of ``names``, retaking a claim made under any of them."""
        return (
            {"_id": notice_id, "$or": [
                {"status": {"$nin": [*FINAL, NoticeStatus.SENDING]}},
                {"status": NoticeStatus.SENDING, "at": {"$lt": now - self._stale_sending}},
                {"status": NoticeStatus.SENDING, "claimed_by": {"$in": list(names)}},
            ]},
            {"$set": {"ticket_id": ticket_id, "kind": kind, "claimed_by": names[0],
                      "status": NoticeStatus.SENDING, "at": now},
             "$unset": {"wait_until": ""}, "$inc": {"attempts": 1}},
        )

    async def skipped(self, notice_id: str, reason: str) -> None:
        await self._notices.update_one({"_id": notice_id}, {"$set": {
            "status": NoticeStatus.SKIPPED, "reason": reason, "at": utc_now()}})

    async def failed(self, notice_id: str, error: str, **sent_as: str) -> None:
        """``sent_as``: channel, to, subject, language, recorded with the outcome (one write
        per attempt besides the claim)."""
        await self._notices.update_one({"_id": notice_id}, {"$set": {
            **sent_as, "status": NoticeStatus.FAILED, "error": error[:500]}})

    async def unsendable(self, notice_id: str, error: str, **sent_as: str) -> None:
        await self._notices.update_one({"_id": notice_id}, {"$set": {
            **sent_as, "status": NoticeStatus.UNSENDABLE, "error": error[:500]}})

    async def sent(self, sent: SentNotice) -> None:
        await self._notices.update_one({"_id": sent.notice_id}, _sent(sent))

    async def acknowledgement_rank(self, address: str, notice_id: str, now: datetime) -> int:
        """How many acknowledgements to ``address`` this hour came before this one. Atomic
        across replicas, and a retried notice keeps its place ($addToSet)."""
        window = now.strftime("%Y%m%d%H")
        doc = await self._ack_windows.find_one_and_update(
            {"_id": f"{address}|{window}"},
            {"$addToSet": {"notices": notice_id}, "$setOnInsert": {"opened_at": now}},
            upsert=True, return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        notices: list[str] = doc["notices"]
        return notices.index(notice_id)


DERIVED_KEYS = frozenset({"requester_email", "requester_domain"})
"""Stored beside the record to find a requester's (or an organisation's) tickets; derived
from the requester, which no change alters after the opening, so no save sends them."""


def requester_key(email: str | None) -> str | None:
    """How a requester's tickets are found: the address, case folded (mail clients write
    the same person's address with capitals one day and without the next)."""
    return email.casefold() if email else None


def domain_of(email: str | None) -> str | None:
    """The organisation an address belongs to, as the portal sees it: its mail domain."""
    return email.rpartition("@")[2].casefold() if email and "@" in email else None


def to_document(ticket: Ticket) -> Document:
    rating: dict[str, Any] | None = None
    if ticket.rating is not None:
        rating = {"score": ticket.rating.score, "comment": ticket.rating.comment,
                  "at": ticket.rating.at}
    return {
        "_id": ticket.id,
        "number": ticket.number,
        "status": ticket.status.value,
        "channel": ticket.channel.value,
        "requester": ticket.requester.model_dump(mode="json"),
        "requester_email": requester_key(ticket.requester.email),
        "requester_domain": domain_of(ticket.requester.email),
        "subject": ticket.subject,
        "description": ticket.description,
        "origin_key": ticket.origin_key,
        "origin_fingerprint": ticket.origin_fingerprint,
        "category_hint": ticket.category_hint,
        "level": ticket.level.value if ticket.level else None,
        "group_id": ticket.group_id,
        "group_name": ticket.group_name,
        "agent_id": ticket.agent_id,
        "routing_sequence": ticket.routing_sequence,
        "resolution": ticket.resolution,
        "resolved_at": ticket.resolved_at,
        "rating": rating,
        "version": ticket.version,
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "messages": [_message_document(m) for m in ticket.messages],
        "history": [{"at": h.at, "kind": h.kind, "detail": h.detail} for h in ticket.history],
        "time_limit": ticket.time_limit,
        "time_limit_as_of": ticket.time_limit_as_of,
        "suggestions": [list(s) for s in ticket.suggestions],
    }


def changed_fields(before: Ticket, after: Ticket) -> Document:
    """``after``'s stored fields that differ from ``before``'s (unchanged ones are usually
    the very same objects, so the comparison is cheap)."""
    changed = {
        f.name for f in fields(Ticket)
        if (old := getattr(before, f.name)) is not (new := getattr(after, f.name)) and old != new
    }
    return {key: value for key, value in to_document(after).items() if key in changed}


def from_document(doc: Document) -> Ticket:
    rating = doc.get("rating")
    return Ticket(
        id=doc["_id"],
        number=doc["number"],
        status=TicketStatus(doc["status"]),
        channel=Channel(doc["channel"]),
        requester=Requester.model_validate(doc["requester"]),
        subject=doc["subject"],
        description=doc["description"],
        origin_key=doc.get("origin_key") or f"ticket:{doc['_id']}",  # tickets older than keys
        origin_fingerprint=doc.get("origin_fingerprint"),
        category_hint=doc.get("category_hint"),
        level=SupportLevel(doc["level"]) if doc.get("level") else None,
        group_id=doc.get("group_id"),
        group_name=doc.get("group_name"),
        agent_id=doc.get("agent_id"),
        routing_sequence=doc.get("routing_sequence", 0),
        resolution=doc.get("resolution"),
        resolved_at=doc.get("resolved_at"),
        rating=Rating(rating["score"], rating.get("comment"), rating["at"]) if rating else None,
        version=doc["version"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        messages=tuple(_message(m) for m in doc.get("messages") or []),
        history=tuple(
            HistoryEntry(h["at"], h["kind"], h.get("detail") or {}) for h in doc.get("history", [])
        ),
        time_limit=doc.get("time_limit"),
        time_limit_as_of=doc.get("time_limit_as_of"),
        suggestions=tuple((title, url) for title, url in doc.get("suggestions") or ()),
    )
