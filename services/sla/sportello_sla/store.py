"""SLA's MongoDB: clocks (with their outbox and timer lease), ticket facts, versioned policies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError

from sportello_contracts import EventEnvelope
from sportello_contracts.enums import ContractTier, Priority, SlaMetric, SupportLevel
from sportello_runtime.concurrency import ConcurrencyConflict
from sportello_runtime.outbox import (
    OUTBOX_FIELD,
    OutboxRelay,
    outbox_entry,
    outbox_fields,
    with_outbox,
)
from sportello_runtime.store import Document, MongoStore, duplicates_in
from sportello_sla.domain import MICROSECOND, Calendar, Clock, SlaPolicy, SlaTicket, Targets

CLOCKS = "clocks"
TICKETS = "tickets"
POLICIES = "policies"
COUNTERS = "counters"
ACTIVE = "active-clocks"
StartedClock = tuple[Clock, datetime | None, Sequence[EventEnvelope]]
"""A clock to add, its first firing, and what its start tells (a time limit)."""
FRESH = {"sequence": 0, "reopens": 0}
"""A ticket's counters as its first fact creates it: later writes are fenced on them."""

INDEXES = {
    CLOCKS: [
        IndexModel([("next_fire_at", ASCENDING)]),
        IndexModel([("ticket_id", ASCENDING)]),
        IndexModel([("state", ASCENDING), ("metric", ASCENDING)]),
    ],
}



class SlaStore:
    def __init__(self, store: MongoStore, relay: OutboxRelay) -> None:
        self._clocks = store.collection(CLOCKS)
        self._tickets = store.collection(TICKETS)
        self._policies = store.collection(POLICIES)
        self._counters = store.collection(COUNTERS)
        self._relay = relay
        self._pending_counts: dict[str, int] = {}

    # -- what SLA knows of each ticket -------------------------------------------------
    # Each event writes only its own fact (see domain.SlaTicket): they arrive in any order.

    async def ticket(self, ticket_id: str) -> SlaTicket | None:
        doc = await self._tickets.find_one({"_id": ticket_id})
        return ticket_from(doc) if doc else None

    async def note_created(self, ticket_id: str, *, created_at: datetime, policy_version: int,
                           tier: ContractTier | None) -> SlaTicket | None:
        """Each ``note_*`` writes its fact and answers the ticket as it now stands (one
        round trip for both)."""
        return await self._note(ticket_id, {}, {
            "created_at": created_at, "policy_version": policy_version,
            "requester_tier": tier.value if tier else None})

    async def note_priority(self, ticket_id: str, priority: Priority,
                            tier: ContractTier | None) -> SlaTicket | None:
        """Triage's priority, unless one is known already (a change that overtook it)."""
        return await self._note(ticket_id, {"priority": None}, {
            "priority": priority.value, "triage_tier": tier.value if tier else None})

    async def note_assignment(self, ticket_id: str, level: SupportLevel, sequence: int,
                              at: datetime) -> SlaTicket | None:
        """The newest assignment heard of; an older one (a late copy) changes nothing."""
        return await self._note(
            ticket_id, {"$or": [{"assigned_sequence": None},
                                {"assigned_sequence": {"$lt": sequence}}]},
            {"assigned_level": level.value, "assigned_sequence": sequence, "assigned_at": at})

    async def _note(self, ticket_id: str, only_if: dict[str, Any],
                    fact: dict[str, Any]) -> SlaTicket | None:
        try:
            doc = await self._tickets.find_one_and_update(
                {"_id": ticket_id, **only_if}, {"$set": fact, "$setOnInsert": FRESH},
                upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:  # the condition refused the fact: the ticket as it is
            return await self.ticket(ticket_id)
        return ticket_from(doc) if doc else None

    async def note_resolved(self, ticket_id: str, at: datetime) -> None:
        """Recorded before the clocks are stopped, so that a clock starting meanwhile
        finds it (``resolution_passed``)."""
        await self._tickets.update_one(
            {"_id": ticket_id}, {"$set": {"resolved_at": at, "resolved": True},
                                 "$setOnInsert": FRESH}, upsert=True)

    async def update_ticket(self, ticket_id: str, changes: dict[str, Any],
                            only_if: dict[str, Any] | None = None) -> bool:
        result = await self._tickets.update_one({"_id": ticket_id, **(only_if or {})},
                                                {"$set": changes})
        return result.matched_count == 1

    async def note_started(self, ticket_id: str, changes: dict[str, Any],
                           only_if: dict[str, Any] | None = None) -> SlaTicket | None:
        """Record which clocks run now and answer the ticket as it stands after (one round
        trip for both); ``None`` when ``only_if`` no longer holds."""
        doc = await self._tickets.find_one_and_update(
            {"_id": ticket_id, **(only_if or {})}, {"$set": changes},
            return_document=ReturnDocument.AFTER)
        return ticket_from(doc) if doc else None

    # -- clocks ---------------------------------------------------------------------

    async def add_clocks(self, started: Sequence[StartedClock]) -> int:
        """Clocks that start together (a ticket's first response and resolution) in one
        write. Clock ids are derived from the ticket: one already there (a redelivered
        event, or the other handler of a ticket's events got there first) is left as it
        is. Returns how many were added."""
        documents, entries = [], []
        for clock, next_fire, events in started:
            told = [outbox_entry(e) for e in events]
            entries.append(told)
            documents.append({**clock_document(clock), "next_fire_at": next_fire,
                              "lease_owner": None, "lease_until": None, **outbox_fields(told)})
        refused: set[int] = set()
        try:
            await self._clocks.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            refused = duplicates_in(exc)
        added = 0
        for index, (clock, _, _) in enumerate(started):
            if index in refused:
                continue
            self._relay.publish_soon(self._clocks, clock.id, entries[index])
            self.count_active(clock.metric, +1)
            added += 1
        return added

    def count_active(self, metric: SlaMetric, delta: int) -> None:
        """Active clocks are counted as they start and stop: counting a large collection
        every few seconds would cost far more than it tells. The counts are kept here and
        written together when the gauge is refreshed (``flush_active_counts``), not once a
        clock (three start a ticket); what a crash loses, the recount at start-up heals."""
        self._pending_counts[metric.value] = self._pending_counts.get(metric.value, 0) + delta

    async def flush_active_counts(self) -> None:
        counts, self._pending_counts = self._pending_counts, {}
        if not any(counts.values()):
            return
        try:
            await self._counters.update_one({"_id": ACTIVE}, {"$inc": counts}, upsert=True)
        except BaseException:
            for metric, delta in counts.items():  # written with the next refresh
                self._pending_counts[metric] = self._pending_counts.get(metric, 0) + delta
            raise

    async def clock(self, clock_id: str) -> Clock | None:
        doc = await self._clocks.find_one({"_id": clock_id}, {OUTBOX_FIELD: 0})
        return clock_from(doc) if doc else None

    async def clocks_of(self, ticket_id: str) -> list[Clock]:
        cursor = self._clocks.find({"ticket_id": ticket_id}, {OUTBOX_FIELD: 0}).sort(
            "started_at", ASCENDING)
        return [clock_from(d) async for d in cursor]

    async def save_clock(self, clock: Clock, *, expected_version: int,
                         next_fire: datetime | None, events: Sequence[EventEnvelope],
                         lease_owner: str | None = None) -> None:
        """Write a clock's new state and events, fenced by the version read (and, for the
        timer engine, by the lease it holds); releases the lease."""
        entries = [outbox_entry(e) for e in events]
        fence: dict[str, Any] = {"_id": clock.id, "version": expected_version}
        if lease_owner is not None:
            fence["lease_owner"] = lease_owner
        update = with_outbox({"$set": {**clock_document(clock), "next_fire_at": next_fire,
                                       "lease_owner": None, "lease_until": None}}, entries)
        result = await self._clocks.update_one(fence, update)
        if result.matched_count == 0:
            raise ConcurrencyConflict(clock.id)
        self._relay.publish_soon(self._clocks, clock.id, entries)

    async def due_clock_ids(self, now: datetime, limit: int) -> list[str]:
        cursor = self._clocks.find(
            {"next_fire_at": {"$lte": now},
             "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]},
            {"_id": 1},
        ).sort("next_fire_at", ASCENDING).limit(limit)
        return [d["_id"] async for d in cursor]

    async def claim(self, clock_id: str, owner: str, now: datetime,
                    lease: timedelta) -> Clock | None:
        """Take the clock's timer for ``lease``: only one replica fires it."""
        doc = await self._clocks.find_one_and_update(
            {"_id": clock_id, "next_fire_at": {"$lte": now},
             "$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}]},
            {"$set": {"lease_owner": owner, "lease_until": now + lease}},
            projection={OUTBOX_FIELD: 0}, return_document=ReturnDocument.AFTER,
        )
        return clock_from(doc) if doc else None

    async def active_counts(self) -> dict[str, int]:
        doc = await self._counters.find_one({"_id": ACTIVE}) or {}
        return {m.value: int(doc.get(m.value, 0)) for m in SlaMetric}

    async def recount_active(self) -> dict[str, int]:
        """The exact counts, once at start-up: heals any drift left by a crash between a
        clock's write and its counter's."""
        counts = {}
        for metric in SlaMetric:
            counts[metric.value] = sum([
                await self._clocks.count_documents({"state": state, "metric": metric.value})
                for state in ("running", "paused")
            ])
        await self._counters.replace_one({"_id": ACTIVE}, {"_id": ACTIVE, **counts}, upsert=True)
        return counts

    # -- policies -------------------------------------------------------------------

    async def policy(self, version: int | None = None) -> SlaPolicy | None:
        if version is not None:
            doc = await self._policies.find_one({"_id": version})
            return policy_from(doc) if doc else None
        async for doc in self._policies.find({}).sort("_id", -1).limit(1):
            return policy_from(doc)
        return None

    async def add_policy(self, policy: SlaPolicy, *, author: str | None, now: datetime) -> bool:
        try:
            await self._policies.insert_one({**policy_document(policy), "saved_by": author,
                                             "saved_at": now})
        except DuplicateKeyError:
            return False
        return True


# --- mapping -------------------------------------------------------------------------------


def clock_document(c: Clock) -> Document:
    return {
        "_id": c.id, "ticket_id": c.ticket_id, "metric": c.metric.value,
        "priority": c.priority.value, "policy_version": c.policy_version,
        "calendar": c.calendar, "target_s": c.target_s, "started_at": c.started_at,
        "level": c.level.value if c.level else None,
        "contract_tier": c.contract_tier.value if c.contract_tier else None,
        "state": c.state, "spent_us": c.spent // MICROSECOND, "elapsed_s": c.elapsed_s,
        "running_since": c.running_since,
        "thresholds": list(c.thresholds), "warned": list(c.warned), "breached": c.breached,
        "met": c.met, "stopped_at": c.stopped_at, "version": c.version,
    }


def clock_from(d: Document) -> Clock:
    return Clock(
        id=d["_id"], ticket_id=d["ticket_id"], metric=SlaMetric(d["metric"]),
        priority=Priority(d["priority"]), policy_version=d["policy_version"],
        calendar=d["calendar"], target_s=d["target_s"], started_at=d["started_at"],
        level=SupportLevel(d["level"]) if d.get("level") else None,
        contract_tier=ContractTier(d["contract_tier"]) if d.get("contract_tier") else None,
        state=d["state"], running_since=d.get("running_since"),
        # spent_us is exact; elapsed_s (a float, for reading) is all that older clocks have
        spent=(timedelta(microseconds=d["spent_us"]) if "spent_us" in d
               else timedelta(seconds=d.get("elapsed_s", 0.0))),
        thresholds=tuple(d.get("thresholds", ())), warned=tuple(d.get("warned", ())),
        breached=bool(d.get("breached")), met=d.get("met"), stopped_at=d.get("stopped_at"),
        version=d["version"],
    )


def ticket_from(d: Document) -> SlaTicket:
    def tier(value: str | None) -> ContractTier | None:
        return ContractTier(value) if value else None

    return SlaTicket(
        id=d["_id"], created_at=d.get("created_at"), policy_version=d.get("policy_version"),
        # contract_tier: written by versions before the facts were typed
        requester_tier=tier(d.get("requester_tier", d.get("contract_tier"))),
        triage_tier=tier(d.get("triage_tier")),
        priority=Priority(d["priority"]) if d.get("priority") else None,
        opening_clocks=bool(d.get("opening_clocks")), reopens=int(d.get("reopens") or 0),
        assigned_level=SupportLevel(d["assigned_level"]) if d.get("assigned_level") else None,
        assigned_sequence=int(d.get("assigned_sequence") or 0),
        assigned_at=d.get("assigned_at"), sequence=int(d.get("sequence") or 0),
        level=SupportLevel(d["level"]) if d.get("level") else None,
        level_clock=d.get("level_clock"), resolved_at=d.get("resolved_at"),
        resolved=bool(d.get("resolved")),
    )


def calendar_document(c: Calendar) -> Document:
    return {
        "name": c.name, "timezone": c.timezone, "always_open": c.always_open,
        "holiday_country": c.holiday_country,
        "holidays": sorted(d.isoformat() for d in c.holidays),
        # HH:MM:SS (and microseconds when a time has them): nothing entered is lost
        "hours": {str(day): [[o.isoformat(timespec="auto"), e.isoformat(timespec="auto")]
                             for o, e in spans]
                  for day, spans in c.hours.items()},
    }


def calendar_from(d: Document) -> Calendar:
    from datetime import date

    return Calendar(
        name=d["name"], timezone=d["timezone"], always_open=bool(d.get("always_open")),
        holiday_country=d.get("holiday_country"),
        holidays=frozenset(date.fromisoformat(x) for x in d.get("holidays", [])),
        hours={int(day): tuple((time.fromisoformat(o), time.fromisoformat(e)) for o, e in spans)
               for day, spans in d.get("hours", {}).items()},
    )


def policy_document(p: SlaPolicy) -> Document:
    return {
        "_id": p.version,
        "calendars": [calendar_document(c) for c in p.calendars.values()],
        "targets": {pr.value: {"first_response_s": t.first_response_s,
                               "resolution_s": t.resolution_s, "calendar": t.calendar}
                    for pr, t in p.targets.items()},
        "level_time_box_s": {lv.value: s for lv, s in p.level_time_box_s.items()},
        "tier_factor": {t.value: f for t, f in p.tier_factor.items()},
        "warning_thresholds": list(p.warning_thresholds),
    }


def policy_from(d: Document) -> SlaPolicy:
    calendars = [calendar_from(c) for c in d["calendars"]]
    return SlaPolicy(
        version=d["_id"],
        calendars={c.name: c for c in calendars},
        targets={Priority(pr): Targets(t["first_response_s"], t["resolution_s"], t["calendar"])
                 for pr, t in d["targets"].items()},
        level_time_box_s={SupportLevel(lv): s for lv, s in d["level_time_box_s"].items()},
        tier_factor={ContractTier(t): f for t, f in d.get("tier_factor", {}).items()},
        warning_thresholds=tuple(d.get("warning_thresholds", (75, 90))),
    )
