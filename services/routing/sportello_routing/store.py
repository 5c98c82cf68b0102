"""Routing's MongoDB: assignments (with outbox and history), groups, agents, triage policies;
and, for the learned triage, the lessons of closed tickets and the models trained on them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel, ReplaceOne, ReturnDocument
from pymongo.errors import DuplicateKeyError

from sportello_contracts import EventEnvelope
from sportello_contracts.enums import (
    ContractTier,
    CustomerType,
    Impact,
    Priority,
    SupportLevel,
    Urgency,
)
from sportello_routing.domain import (
    Agent,
    Assignment,
    Group,
    Lesson,
    TriagePolicy,
    TriageRule,
)
from sportello_runtime.concurrency import ConcurrencyConflict
from sportello_runtime.outbox import (
    OUTBOX_FIELD,
    OutboxRelay,
    outbox_entry,
    outbox_fields,
    with_outbox,
)
from sportello_runtime.store import Document, MongoStore

ASSIGNMENTS = "assignments"
GROUPS = "groups"
AGENTS = "agents"
POLICIES = "triage_policies"
LESSONS = "lessons"
MODELS = "triage_models"
MODEL_PARTS = "triage_model_parts"
LEARNING = "learning"

INDEXES = {
    ASSIGNMENTS: [
        # A group's queue, in the order it is served (see ``queued``).
        IndexModel([("group_id", ASCENDING), ("state", ASCENDING), ("priority", ASCENDING),
                    ("created_at", ASCENDING)]),
        IndexModel([("agent_id", ASCENDING), ("state", ASCENDING)]),
        IndexModel([("level", ASCENDING), ("state", ASCENDING)]),
    ],
    AGENTS: [IndexModel([("groups", ASCENDING)])],
    LESSONS: [IndexModel([("learned_at", ASCENDING)])],
    MODEL_PARTS: [IndexModel([("version", ASCENDING), ("n", ASCENDING)])],
}
OUTBOX_COLLECTIONS = [ASSIGNMENTS, LEARNING]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)



@dataclass(frozen=True)
class Setup:
    """What routing a new ticket needs besides the ticket: the current triage policy and
    the groups."""

    policy: TriagePolicy | None
    groups: list[Group]
    read_at: float


class RoutingStore:
    def __init__(self, store: MongoStore, relay: OutboxRelay, *,
                 setup_max_age_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._assignments = store.collection(ASSIGNMENTS)
        self._groups = store.collection(GROUPS)
        self._agents = store.collection(AGENTS)
        self._policies = store.collection(POLICIES)
        self._relay = relay
        self._setup_max_age_s = setup_max_age_s
        self._clock = clock
        self._setup: Setup | None = None
        self._setup_changes = 0
        self._setup_reading: tuple[int, asyncio.Future[Setup]] | None = None
        """The read in flight, and the count of this replica's changes it started after."""

    # -- the setup new tickets are routed with --------------------------------------

    async def setup(self) -> Setup:
        """The policy and the groups, read at most every ``setup_max_age_s`` seconds: every
        new ticket needs both, and they change a few times a month. This replica's own
        changes are seen at once; another replica's within ``setup_max_age_s``. Operators'
        reads and changes never go through this copy.

        When the copy is too old, the handlers in flight (up to the prefetch) all want it at
        once: they share one read instead of each reading both collections. A caller after
        one of this replica's changes never joins a read that started before it."""
        now = self._clock()
        cached = self._setup
        if cached is not None and now - cached.read_at < self._setup_max_age_s:
            return cached
        changes = self._setup_changes
        reading = self._setup_reading
        if reading is None or reading[0] != changes:
            read = asyncio.ensure_future(self._read_setup(changes, now))
            self._setup_reading = reading = (changes, read)
            read.add_done_callback(self._setup_read)
        # Shielded: a caller cancelled while waiting does not cancel the others' read.
        return await asyncio.shield(reading[1])

    async def _read_setup(self, changes: int, now: float) -> Setup:
        fresh = Setup(await self.policy(), await self.groups(), now)
        if changes == self._setup_changes:  # a change made during the reads wins over them
            self._setup = fresh
        return fresh

    def _setup_read(self, read: asyncio.Future[Setup]) -> None:
        if self._setup_reading is not None and self._setup_reading[1] is read:
            self._setup_reading = None
        if not read.cancelled():
            read.exception()  # retrieved: every waiter has it; the next call reads again

    def _setup_changed(self) -> None:
        self._setup_changes += 1
        self._setup = None

    # -- assignments ------------------------------------------------------------

    async def add_first(self, assignment: Assignment, events: Sequence[EventEnvelope]) -> bool:
        """Insert a ticket's first assignment; ``False`` when it already has one (redelivery)."""
        entries = [outbox_entry(e) for e in events]
        try:
            await self._assignments.insert_one(
                {**assignment_document(assignment), **outbox_fields(entries)}
            )
        except DuplicateKeyError:
            return False
        self._relay.publish_soon(self._assignments, assignment.ticket_id, entries)
        return True

    async def save(
        self, assignment: Assignment, *, expected_version: int, events: Sequence[EventEnvelope]
    ) -> None:
        entries = [outbox_entry(e) for e in events]
        result = await self._assignments.update_one(
            {"_id": assignment.ticket_id, "version": expected_version},
            with_outbox({"$set": assignment_document(assignment)}, entries),
        )
        if result.matched_count == 0:
            raise ConcurrencyConflict(assignment.number)
        self._relay.publish_soon(self._assignments, assignment.ticket_id, entries)

    async def get(self, ticket_id: str) -> Assignment | None:
        doc = await self._assignments.find_one({"_id": ticket_id}, {OUTBOX_FIELD: 0})
        return assignment_from(doc) if doc else None

    async def pending_events(self, ticket_id: str) -> int:
        doc = await self._assignments.find_one({"_id": ticket_id}, {OUTBOX_FIELD: 1})
        return len(doc.get(OUTBOX_FIELD) or []) if doc else 0

    async def queued(self, group_id: str, limit: int = 50) -> list[Assignment]:
        """A group's waiting tickets, most urgent first, then oldest."""
        cursor = self._assignments.find(
            {"group_id": group_id, "state": "queued"}, {OUTBOX_FIELD: 0}
        ).sort([("priority", ASCENDING), ("created_at", ASCENDING)]).limit(limit)
        return [assignment_from(d) async for d in cursor]

    async def count_queued(self, group_id: str) -> int:
        return await self._assignments.count_documents({"group_id": group_id, "state": "queued"})

    async def view(
        self, *, level: SupportLevel | None, group_id: str | None, agent_id: str | None,
        state: str | None, limit: int,
    ) -> list[Assignment]:
        query: dict[str, Any] = {"state": state} if state else {"state": {"$ne": "released"}}
        if level is not None:
            query["level"] = level.value
        if group_id is not None:
            query["group_id"] = group_id
        if agent_id is not None:
            query["agent_id"] = agent_id
        cursor = self._assignments.find(query, {OUTBOX_FIELD: 0}).sort(
            [("priority", ASCENDING), ("created_at", ASCENDING)]
        ).limit(limit)
        return [assignment_from(d) async for d in cursor]

    async def open_count(self, agent_id: str) -> int:
        return await self._assignments.count_documents({"agent_id": agent_id, "state": "assigned"})

    # -- groups -----------------------------------------------------------------

    async def groups(self) -> list[Group]:
        return [group_from(d) async for d in self._groups.find({}).sort("_id", ASCENDING)]

    async def group(self, group_id: str) -> Group | None:
        doc = await self._groups.find_one({"_id": group_id})
        return group_from(doc) if doc else None

    async def put_group(self, group: Group) -> None:
        await self._groups.replace_one({"_id": group.id}, group_document(group), upsert=True)
        self._setup_changed()

    async def delete_group(self, group_id: str) -> bool:
        deleted = (await self._groups.delete_one({"_id": group_id})).deleted_count == 1
        self._setup_changed()
        return deleted

    async def has_groups(self) -> bool:
        return await self._groups.find_one({}, {"_id": 1}) is not None

    # -- agents -----------------------------------------------------------------

    async def agents(self, group_id: str | None = None) -> list[Agent]:
        query = {"groups": group_id} if group_id else {}
        return [agent_from(d) async for d in self._agents.find(query).sort("_id", ASCENDING)]

    async def versioned_agent(self, agent_id: str) -> tuple[Agent, int] | None:
        """The agent and its version, which ``update_agent`` must be given back."""
        doc = await self._agents.find_one({"_id": agent_id})
        return (agent_from(doc), doc["version"]) if doc else None

    async def agent(self, agent_id: str) -> Agent | None:
        found = await self.versioned_agent(agent_id)
        return found[0] if found else None

    async def add_agent(self, agent: Agent) -> bool:
        try:
            await self._agents.insert_one(
                {**agent_document(agent), "open_tickets": 0, "free": agent.capacity, "version": 1}
            )
        except DuplicateKeyError:
            return False
        return True

    async def update_agent(self, agent: Agent, *, expected_version: int, open_tickets: int) -> None:
        """Replace an agent's profile; free slots follow the new capacity."""
        fields = agent_document(agent)
        fields.update({"open_tickets": open_tickets, "free": agent.capacity - open_tickets})
        result = await self._agents.update_one(
            {"_id": agent.id, "version": expected_version},
            {"$set": fields, "$inc": {"version": 1}},
        )
        if result.matched_count == 0:
            raise ConcurrencyConflict(agent.id)

    async def delete_agent(self, agent_id: str) -> bool:
        return (await self._agents.delete_one({"_id": agent_id})).deleted_count == 1

    async def claim_slot(self, agent_id: str, now: datetime) -> bool:
        """Take one of the agent's free slots, atomically: capacity holds across replicas."""
        claimed = await self._agents.find_one_and_update(
            {"_id": agent_id, "available": True, "free": {"$gt": 0}},
            {"$inc": {"free": -1, "open_tickets": 1, "version": 1},
             "$set": {"last_assigned_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        return claimed is not None

    async def add_to_load(self, agent_id: str, now: datetime) -> None:
        """One more open ticket for an agent someone chose, whether or not it had room."""
        await self._agents.update_one(
            {"_id": agent_id},
            {"$inc": {"free": -1, "open_tickets": 1, "version": 1},
             "$set": {"last_assigned_at": now}},
        )

    async def release_slot(self, agent_id: str) -> None:
        await self._agents.update_one(
            {"_id": agent_id, "open_tickets": {"$gt": 0}},
            {"$inc": {"free": 1, "open_tickets": -1, "version": 1}},
        )

    # -- triage policies ----------------------------------------------------------

    async def policy(self) -> TriagePolicy | None:
        cursor = self._policies.find({}).sort("_id", -1).limit(1)
        async for doc in cursor:
            return policy_from(doc)
        return None

    async def add_policy(self, policy: TriagePolicy, *, author: str | None, now: datetime) -> bool:
        """Versions are never overwritten: ``False`` when that version exists already."""
        try:
            await self._policies.insert_one(
                {**policy_document(policy), "saved_by": author, "saved_at": now}
            )
        except DuplicateKeyError:
            return False
        self._setup_changed()
        return True


class LearningStore:
    """The learned triage's records: a lesson per closed ticket, the models (metadata, and
    the saved model in parts: a document holds at most 16 MB) and one ``learning`` document
    with the models activated in turn, the next version number and the training lease."""

    PART_BYTES = 4 * 1024 * 1024

    def __init__(self, store: MongoStore, relay: OutboxRelay) -> None:
        self._lessons = store.collection(LESSONS)
        self._models = store.collection(MODELS)
        self._parts = store.collection(MODEL_PARTS)
        self._learning = store.collection(LEARNING)
        self._relay = relay

    # -- lessons --------------------------------------------------------------------

    async def add_lesson(self, lesson: Lesson) -> None:
        """A redelivered close writes the same lesson again: nothing doubles."""
        await self._lessons.replace_one({"_id": lesson.ticket_id}, lesson_document(lesson),
                                        upsert=True)

    async def add_lessons(self, lessons: Sequence[Lesson], batch: int = 1000) -> None:
        """Many at once (an import): in batches, each lesson replacing its earlier copy."""
        for start in range(0, len(lessons), batch):
            await self._lessons.bulk_write(
                [ReplaceOne({"_id": lesson.ticket_id}, lesson_document(lesson), upsert=True)
                 for lesson in lessons[start:start + batch]], ordered=False)

    async def correct_lesson(self, ticket_id: str, category: str) -> None:
        await self._lessons.update_one({"_id": ticket_id}, {"$set": {"category": category}})

    async def lessons(self) -> list[Lesson]:
        return [lesson_from_document(doc) async for doc in self._lessons.find({})]

    async def count_lessons(self, since: datetime | None = None) -> int:
        query: Document = {} if since is None else {"learned_at": {"$gt": since}}
        return await self._lessons.count_documents(query)

    # -- models ---------------------------------------------------------------------

    async def state(self) -> Document:
        doc = await self._learning.find_one({"_id": LEARNING}, {OUTBOX_FIELD: 0})
        return doc or {"_id": LEARNING, "history": [], "next_version": 1}

    async def active_version(self) -> int | None:
        history = (await self.state()).get("history") or []
        return int(history[-1]) if history else None

    async def claim_training(self, holder: str, now: datetime, lease: timedelta) -> bool:
        """``False`` while another training holds the lease: replicas train one at a time."""
        await self._learning.update_one(
            {"_id": LEARNING},
            {"$setOnInsert": {"history": [], "next_version": 1, "training_until": EPOCH}},
            upsert=True)
        doc = await self._learning.find_one_and_update(
            {"_id": LEARNING, "training_until": {"$lt": now}},
            {"$set": {"training_until": now + lease, "training_by": holder}},
            projection={"_id": 1})
        return doc is not None

    async def next_version(self) -> int:
        """Numbers only models that are stored: a training refused for too few lessons
        takes none."""
        doc = await self._learning.find_one_and_update(
            {"_id": LEARNING}, {"$inc": {"next_version": 1}}, projection={"next_version": 1},
            return_document=ReturnDocument.BEFORE)
        assert doc is not None  # claim_training created it
        return int(doc["next_version"])

    async def end_training(self, holder: str, now: datetime, *,
                           refused_with: int | None = None) -> None:
        """Free the lease. A model stored moves ``last_trained_at``; a training refused for
        too few lessons records how many there were instead, so that the schedule tries
        again only once more have come."""
        done: Document = ({"refused_with": refused_with} if refused_with is not None
                          else {"last_trained_at": now, "refused_with": None})
        await self._learning.update_one(
            {"_id": LEARNING, "training_by": holder},
            {"$set": {"training_until": EPOCH, **done}})

    async def add_model(self, record: Document, model: bytes) -> Document:
        """Parts first, then the record that names them: a record found is whole. Answers
        the record as stored."""
        parts = [model[i:i + self.PART_BYTES] for i in range(0, len(model), self.PART_BYTES)]
        version = record["_id"]
        for n, part in enumerate(parts):
            await self._parts.replace_one(
                {"_id": f"{version}:{n}"},
                {"_id": f"{version}:{n}", "version": version, "n": n, "data": part},
                upsert=True)
        stored = {**record, "parts": len(parts), "size": len(model)}
        await self._models.insert_one(stored)
        return stored

    async def model_record(self, version: int) -> Document | None:
        return await self._models.find_one({"_id": version})

    async def model_records(self, limit: int = 50) -> list[Document]:
        cursor = self._models.find({}).sort("_id", DESCENDING).limit(limit)
        return [doc async for doc in cursor]

    async def model_bytes(self, version: int) -> bytes | None:
        record = await self.model_record(version)
        if record is None:
            return None
        parts = [doc async for doc in self._parts.find({"version": version}).sort("n", ASCENDING)]
        if len(parts) != record["parts"]:
            return None
        return b"".join(bytes(doc["data"]) for doc in parts)

    async def set_history(self, expected: Sequence[int], history: Sequence[int],
                          event: EventEnvelope) -> None:
        """Switch the model in use and announce it, in one update; fenced by the history
        the caller decided on, so that two switches at once cannot interleave."""
        entries = [outbox_entry(event)]
        result = await self._learning.update_one(
            {"_id": LEARNING, "history": list(expected)},
            with_outbox({"$set": {"history": list(history)}}, entries))
        if result.matched_count == 0:
            raise ConcurrencyConflict("the model in use changed meanwhile")
        self._relay.publish_soon(self._learning, LEARNING, entries)


# --- mapping -------------------------------------------------------------------------


def lesson_document(lesson: Lesson) -> Document:
    return {"_id": lesson.ticket_id, "text": lesson.text, "category": lesson.category,
            "group": lesson.group, "language": lesson.language,
            "learned_at": lesson.learned_at}


def lesson_from_document(doc: Document) -> Lesson:
    return Lesson(doc["_id"], doc["text"], doc["category"], doc.get("group"),
                  doc.get("language"), doc["learned_at"])


def assignment_document(a: Assignment) -> Document:
    return {
        "_id": a.ticket_id, "number": a.number, "category": a.category,
        "priority": a.priority.value, "level": a.level.value, "group_id": a.group_id,
        "group_name": a.group_name, "agent_id": a.agent_id, "state": a.state,
        "sequence": a.sequence, "created_at": a.created_at, "updated_at": a.updated_at,
        "owner_group_id": a.owner_group_id, "customer_type": a.customer_type.value,
        "contract_tier": a.contract_tier.value if a.contract_tier else None,
        "department": a.department, "escalated_clocks": list(a.escalated_clocks),
        "history": list(a.history), "version": a.version,
    }


def assignment_from(doc: Document) -> Assignment:
    return Assignment(
        ticket_id=doc["_id"], number=doc["number"], category=doc["category"],
        priority=Priority(doc["priority"]), level=SupportLevel(doc["level"]),
        group_id=doc["group_id"], group_name=doc["group_name"], agent_id=doc.get("agent_id"),
        state=doc["state"], sequence=doc["sequence"], created_at=doc["created_at"],
        updated_at=doc["updated_at"], owner_group_id=doc.get("owner_group_id"),
        customer_type=CustomerType(doc.get("customer_type", "private")),
        contract_tier=ContractTier(doc["contract_tier"]) if doc.get("contract_tier") else None,
        department=doc.get("department"),
        escalated_clocks=tuple(doc.get("escalated_clocks", [])),
        history=tuple(doc.get("history", [])), version=doc["version"],
    )


def group_document(g: Group) -> Document:
    return {"_id": g.id, "name": g.name, "level": g.level.value, "categories": list(g.categories),
            "escalates_to": g.escalates_to, "default_for_level": g.default_for_level,
            "vendor_contact": g.vendor_contact}


def group_from(doc: Document) -> Group:
    return Group(doc["_id"], doc["name"], SupportLevel(doc["level"]),
                 tuple(doc.get("categories", [])), doc.get("escalates_to"),
                 bool(doc.get("default_for_level")), doc.get("vendor_contact"))


def agent_document(a: Agent) -> Document:
    return {"_id": a.id, "name": a.name, "level": a.level.value, "groups": list(a.groups),
            "skills": list(a.skills), "capacity": a.capacity, "available": a.available}


def agent_from(doc: Document) -> Agent:
    return Agent(doc["_id"], doc["name"], SupportLevel(doc["level"]), tuple(doc["groups"]),
                 tuple(doc.get("skills", [])), doc["capacity"], doc["available"],
                 doc.get("open_tickets", 0), doc.get("last_assigned_at"))


def policy_document(p: TriagePolicy) -> Document:
    return {
        "_id": p.version,
        "categories": list(p.categories),
        "rules": [
            {"category": r.category, "when": r.when,
             "impact": r.impact.value if r.impact else None,
             "urgency": r.urgency.value if r.urgency else None, "critical": r.critical}
            for r in p.rules
        ],
        "matrix": {i.value: {u.value: pr.value for u, pr in row.items()}
                   for i, row in p.matrix.items()},
        "tier_raise": {t.value: n for t, n in p.tier_raise.items()},
        "default_impact": p.default_impact.value,
        "default_urgency": p.default_urgency.value,
        "model_threshold": p.model_threshold,
    }


def policy_from(doc: Document) -> TriagePolicy:
    return TriagePolicy(
        version=doc["_id"],
        categories=tuple(doc["categories"]),
        rules=tuple(
            TriageRule(r.get("category"), r["when"],
                       Impact(r["impact"]) if r.get("impact") else None,
                       Urgency(r["urgency"]) if r.get("urgency") else None,
                       bool(r.get("critical")))
            for r in doc["rules"]
        ),
        matrix={Impact(i): {Urgency(u): Priority(p) for u, p in row.items()}
                for i, row in doc["matrix"].items()},
        tier_raise={ContractTier(t): n for t, n in doc.get("tier_raise", {}).items()},
        default_impact=Impact(doc.get("default_impact", "medium")),
        default_urgency=Urgency(doc.get("default_urgency", "medium")),
        model_threshold=float(doc.get("model_threshold", TriagePolicy.model_threshold)),
    )
