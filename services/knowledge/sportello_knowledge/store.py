"""Knowledge's MongoDB: articles and their versions, archived cases (with their candidate),
recurring-problem groups per period, suggestions per ticket, feedback and deflections.

Filters are built here from typed values only; the search index is derived from these
collections and rebuilt from them (``entries``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from sportello_contracts import EventEnvelope
from sportello_contracts.enums import SupportLevel
from sportello_knowledge.domain.articles import (
    Article,
    ArticleStatus,
    Audience,
    Content,
    Version,
)
from sportello_knowledge.domain.cases import ArchivedCase
from sportello_knowledge.domain.recurring import Group
from sportello_knowledge.index import Entry
from sportello_runtime.concurrency import ConcurrencyConflict
from sportello_runtime.outbox import (
    OUTBOX_FIELD,
    OutboxRelay,
    outbox_entry,
    outbox_fields,
    with_outbox,
)
from sportello_runtime.store import Document, MongoStore

ARTICLES = "articles"
VERSIONS = "versions"
CASES = "cases"
GROUPS = "groups"
SUGGESTIONS = "suggestions"
FEEDBACK = "feedback"
DEFLECTIONS = "deflections"

INDEXES = {
    ARTICLES: [IndexModel([("updated_at", ASCENDING)]),
               IndexModel([("status", ASCENDING), ("updated_at", DESCENDING)]),
               IndexModel([("translation_group", ASCENDING)])],
    VERSIONS: [IndexModel([("article_id", ASCENDING), ("number", ASCENDING)])],
    CASES: [IndexModel([("updated_at", ASCENDING)]),
            IndexModel([("candidate.status", ASCENDING), ("closed_at", DESCENDING)])],
    GROUPS: [IndexModel([("period", ASCENDING)])],
    FEEDBACK: [IndexModel([("article_id", ASCENDING), ("helpful", ASCENDING)])],
    DEFLECTIONS: [IndexModel([("at", ASCENDING)])],
}
OUTBOX_COLLECTIONS = (ARTICLES, CASES, GROUPS, SUGGESTIONS, DEFLECTIONS)


class KnowledgeStore:
    def __init__(self, store: MongoStore, relay: OutboxRelay) -> None:
        self._articles = store.collection(ARTICLES)
        self._versions = store.collection(VERSIONS)
        self._cases = store.collection(CASES)
        self._groups = store.collection(GROUPS)
        self._suggestions = store.collection(SUGGESTIONS)
        self._feedback = store.collection(FEEDBACK)
        self._deflections = store.collection(DEFLECTIONS)
        self._relay = relay

    # -- articles ------------------------------------------------------------------------

    async def article(self, article_id: str) -> Article | None:
        doc = await self._articles.find_one({"_id": str(article_id)}, {OUTBOX_FIELD: 0})
        return article_from(doc) if doc else None

    async def articles(self, *, status: ArticleStatus | None = None, language: str | None = None,
                       limit: int = 50, skip: int = 0) -> list[Article]:
        query: dict[str, Any] = {}
        if status is not None:
            query["status"] = status.value
        if language is not None:
            query["language"] = str(language)
        cursor = self._articles.find(query, {OUTBOX_FIELD: 0}).sort(
            "updated_at", DESCENDING).skip(skip).limit(limit)
        return [article_from(d) async for d in cursor]

    async def translations(self, article: Article) -> list[Article]:
        cursor = self._articles.find({"translation_group": article.translation_group,
                                      "_id": {"$ne": article.id}}, {OUTBOX_FIELD: 0})
        return [article_from(d) async for d in cursor]

    async def add_article(self, article: Article, events: Sequence[EventEnvelope],
                          version: Version) -> None:
        entries = [outbox_entry(e) for e in events]
        await self._articles.insert_one({"_id": article.id, **article_document(article),
                                         **outbox_fields(entries)})
        await self._save_version(article.id, version)
        self._relay.publish_soon(self._articles, article.id, entries)

    async def save_article(self, article: Article, *, expected_version: int,
                           events: Sequence[EventEnvelope], version: Version) -> None:
        """Fenced on the version read: a concurrent edit makes this raise."""
        entries = [outbox_entry(e) for e in events]
        result = await self._articles.update_one(
            {"_id": article.id, "version": expected_version},
            with_outbox({"$set": article_document(article)}, entries))
        if result.matched_count == 0:
            raise ConcurrencyConflict(article.id)
        await self._save_version(article.id, version)
        self._relay.publish_soon(self._articles, article.id, entries)

    async def _save_version(self, article_id: str, version: Version) -> None:
        """After the article's own write: a crash between the two leaves only the newest
        version out of the history, and ``versions`` answers it from the article."""
        await self._versions.replace_one(
            {"_id": f"{article_id}:{version.number}"},
            {"article_id": article_id, **version_document(version)}, upsert=True)

    async def versions(self, article: Article) -> list[Version]:
        cursor = self._versions.find({"article_id": article.id}).sort("number", ASCENDING)
        found = [version_from(d) async for d in cursor]
        if not found or found[-1].number < article.version:
            found.append(article.as_version(article.owner, "saved"))
        return found

    # -- archived cases and candidates ---------------------------------------------------

    async def case(self, ticket_id: str) -> tuple[ArchivedCase, dict[str, Any] | None] | None:
        doc = await self._cases.find_one({"_id": str(ticket_id)}, {OUTBOX_FIELD: 0})
        return (case_from(doc), doc.get("candidate")) if doc else None

    async def archive_case(self, case: ArchivedCase, candidate: dict[str, Any] | None,
                           events: Sequence[EventEnvelope]) -> bool:
        """Keep the case as of its latest closing; an older closing (a late copy) changes
        nothing and answers False; the same closing again writes the same. A candidate
        already drafted or dismissed is kept."""
        entries = [outbox_entry(e) for e in events]
        fields = case_document(case)
        update: dict[str, Any] = {"$set": fields}
        if candidate is not None:
            update["$setOnInsert"] = {"candidate": candidate}
        try:
            result = await self._cases.update_one(
                {"_id": case.ticket_id, "closed_at": {"$lte": case.closed_at}},
                with_outbox(update, entries), upsert=True)
        except DuplicateKeyError:
            return False
        if candidate is not None and result.upserted_id is None:
            await self._cases.update_one(
                {"_id": case.ticket_id, "$or": [{"candidate": None},
                                                {"candidate.status": "open"}]},
                {"$set": {"candidate": candidate}})
        self._relay.publish_soon(self._cases, case.ticket_id, entries)
        return True

    async def candidates(self, *, status: str = "open", limit: int = 50) -> list[dict[str, Any]]:
        cursor = self._cases.find({"candidate.status": str(status)}, {OUTBOX_FIELD: 0}).sort(
            "closed_at", DESCENDING).limit(limit)
        return [d async for d in cursor]

    async def mark_candidate(self, ticket_id: str, *, status: str,
                             article_id: str | None) -> bool:
        result = await self._cases.update_one(
            {"_id": str(ticket_id), "candidate.status": "open"},
            {"$set": {"candidate.status": status, "candidate.article_id": article_id}})
        return result.modified_count == 1

    # -- recurring problems --------------------------------------------------------------

    async def groups(self, period: str, language: str) -> tuple[list[Group], int]:
        doc = await self._groups.find_one({"_id": f"{period}:{language}"}, {OUTBOX_FIELD: 0})
        if not doc:
            return [], 0
        return [group_from(g) for g in doc["groups"]], int(doc["version"])

    async def save_groups(self, period: str, language: str, groups: Sequence[Group], *,
                          expected_version: int, events: Sequence[EventEnvelope]) -> None:
        entries = [outbox_entry(e) for e in events]
        doc_id = f"{period}:{language}"
        fields = {"period": period, "language": language, "version": expected_version + 1,
                  "groups": [group_document(g) for g in groups]}
        if expected_version == 0:
            try:
                await self._groups.insert_one({"_id": doc_id, **fields,
                                               **outbox_fields(entries)})
            except DuplicateKeyError as exc:
                raise ConcurrencyConflict(doc_id) from exc
        else:
            result = await self._groups.update_one(
                {"_id": doc_id, "version": expected_version},
                with_outbox({"$set": fields}, entries))
            if result.matched_count == 0:
                raise ConcurrencyConflict(doc_id)
        self._relay.publish_soon(self._groups, doc_id, entries)

    async def proposals(self, period: str | None = None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"period": str(period)} if period else {}
        answer: list[dict[str, Any]] = []
        async for doc in self._groups.find(query, {OUTBOX_FIELD: 0}).sort("period", DESCENDING):
            answer.extend({**g, "period": doc["period"], "language": doc["language"]}
                          for g in doc["groups"] if g.get("proposed"))
        return answer

    # -- suggestions, feedback, deflections -------------------------------------------------

    async def save_suggestions(self, ticket_id: str, suggestions: dict[str, Any],
                               events: Sequence[EventEnvelope]) -> None:
        entries = [outbox_entry(e) for e in events]
        await self._suggestions.update_one(
            {"_id": ticket_id}, with_outbox({"$set": suggestions}, entries), upsert=True)
        self._relay.publish_soon(self._suggestions, ticket_id, entries)

    async def suggestions(self, ticket_id: str) -> dict[str, Any] | None:
        return await self._suggestions.find_one({"_id": str(ticket_id)}, {OUTBOX_FIELD: 0})

    async def add_feedback(self, article_id: str, language: str, *, helpful: bool,
                           reason: str | None, at: datetime) -> None:
        await self._feedback.insert_one({"article_id": article_id, "language": language,
                                         "helpful": helpful, "reason": reason, "at": at})

    async def feedback(self, article_id: str) -> dict[str, Any]:
        helpful = await self._feedback.count_documents({"article_id": str(article_id),
                                                        "helpful": True})
        unhelpful = await self._feedback.count_documents({"article_id": str(article_id),
                                                          "helpful": False})
        reasons = [d["reason"] async for d in self._feedback.find(
            {"article_id": str(article_id), "helpful": False, "reason": {"$ne": None}}).sort(
                "at", DESCENDING).limit(20)]
        return {"helpful": helpful, "not_helpful": unhelpful, "reasons": reasons}

    async def add_deflection(self, deflection_id: str, fields: dict[str, Any],
                             events: Sequence[EventEnvelope]) -> bool:
        """Once per id (the page's token): a double click counts once."""
        entries = [outbox_entry(e) for e in events]
        try:
            await self._deflections.insert_one({"_id": deflection_id, **fields,
                                                **outbox_fields(entries)})
        except DuplicateKeyError:
            return False
        self._relay.publish_soon(self._deflections, deflection_id, entries)
        return True

    async def tickets_suggested(self) -> int:
        """Tickets that arrived (each gets its suggestions once)."""
        return await self._suggestions.count_documents({})

    async def deflections(self, since: datetime | None = None) -> int:
        query: dict[str, Any] = {"at": {"$gte": since}} if since else {}
        return await self._deflections.count_documents(query)

    # -- what the search index is made of ----------------------------------------------------

    def _searchable(self) -> tuple[tuple[str, AsyncCollection[Document],
                                         Callable[[Document], Entry]], ...]:
        """Each kind of searchable document: its key prefix, collection, and entry."""
        return (("article", self._articles, lambda d: article_entry(article_from(d))),
                ("case", self._cases, lambda d: case_entry(case_from(d), d["updated_at"])))

    async def entries(self, keys: Sequence[str]) -> tuple[list[Entry], list[str]]:
        """The index entries for ``keys`` ("article:<id>", "case:<ticket id>") as MongoDB
        has them now, and the keys that no longer exist."""
        found: list[Entry] = []
        for kind, collection, entry_of in self._searchable():
            ids = [k.split(":", 1)[1] for k in keys if k.startswith(f"{kind}:")]
            if ids:
                async for doc in collection.find({"_id": {"$in": ids}}, {OUTBOX_FIELD: 0}):
                    found.append(entry_of(doc))
        present = {e.key for e in found}
        return found, [k for k in keys if k not in present]

    async def all_entries(self, batch: int = 2_000,
                          since: datetime | None = None) -> AsyncIterator[list[Entry]]:
        """Everything searchable (changed since ``since``), in batches: a rebuild's source."""
        query: dict[str, Any] = {"updated_at": {"$gte": since}} if since else {}
        chunk: list[Entry] = []
        for _, collection, entry_of in self._searchable():
            async for doc in collection.find(query, {OUTBOX_FIELD: 0}).batch_size(batch):
                chunk.append(entry_of(doc))
                if len(chunk) >= batch:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    async def count_searchable(self) -> int:
        return (await self._articles.count_documents({})
                + await self._cases.count_documents({}))


# -- documents <-> records ------------------------------------------------------------------


def content_document(content: Content) -> dict[str, Any]:
    return {"title": content.title, "body": content.body, "language": content.language,
            "audience": content.audience.value, "category": content.category,
            "tags": list(content.tags), "linked_tickets": list(content.linked_tickets)}


def content_from(doc: Document) -> Content:
    return Content(title=doc["title"], body=doc["body"], language=doc["language"],
                   audience=Audience(doc["audience"]), category=doc.get("category"),
                   tags=tuple(doc.get("tags") or ()),
                   linked_tickets=tuple(doc.get("linked_tickets") or ()))


def article_document(article: Article) -> dict[str, Any]:
    return {**content_document(article.content), "status": article.status.value,
            "version": article.version, "owner": article.owner,
            "created_at": article.created_at, "updated_at": article.updated_at,
            "translation_group": article.translation_group,
            "published_at": article.published_at, "candidate_of": article.candidate_of}


def article_from(doc: Document) -> Article:
    return Article(id=doc["_id"], content=content_from(doc), status=ArticleStatus(doc["status"]),
                   version=int(doc["version"]), owner=doc["owner"], created_at=doc["created_at"],
                   updated_at=doc["updated_at"], translation_group=doc["translation_group"],
                   published_at=doc.get("published_at"), candidate_of=doc.get("candidate_of"))


def version_document(version: Version) -> dict[str, Any]:
    return {"number": version.number, "content": content_document(version.content),
            "status": version.status.value, "author": version.author, "at": version.at,
            "note": version.note}


def version_from(doc: Document) -> Version:
    return Version(number=int(doc["number"]), content=content_from(doc["content"]),
                   status=ArticleStatus(doc["status"]), author=doc["author"], at=doc["at"],
                   note=doc.get("note"))


def case_document(case: ArchivedCase) -> dict[str, Any]:
    return {"number": case.number, "subject": case.subject, "problem": case.problem,
            "resolution": case.resolution, "category": case.category,
            "level": case.level.value if case.level else None, "language": case.language,
            "closed_at": case.closed_at, "created_at": case.created_at,
            "resolved_at": case.resolved_at, "time_to_resolve_s": case.time_to_resolve_s,
            "updated_at": case.closed_at}


def case_from(doc: Document) -> ArchivedCase:
    return ArchivedCase(
        ticket_id=doc["_id"], number=doc["number"], subject=doc["subject"],
        problem=doc["problem"], resolution=doc["resolution"], category=doc.get("category"),
        level=SupportLevel(doc["level"]) if doc.get("level") else None,
        language=doc["language"], closed_at=doc["closed_at"], created_at=doc.get("created_at"),
        resolved_at=doc.get("resolved_at"))


def group_document(group: Group) -> dict[str, Any]:
    doc = asdict(group)
    doc["profile"] = dict(group.profile)
    doc["ticket_ids"] = list(group.ticket_ids)
    doc["size"] = group.size
    return doc


def group_from(doc: Document) -> Group:
    return Group(id=doc["id"], period=doc["period"], language=doc["language"],
                 profile=dict(doc["profile"]), ticket_ids=tuple(doc["ticket_ids"]),
                 title=doc.get("title", ""), proposed=bool(doc.get("proposed")))


def article_entry(article: Article) -> Entry:
    c = article.content
    return Entry(key=f"article:{article.id}", kind="article", ref=article.id, title=c.title,
                 body=c.body, language=c.language, audience=c.audience.value,
                 status=article.status.value, updated_at=article.updated_at,
                 category=c.category, tags=c.tags)


def case_entry(case: ArchivedCase, updated_at: datetime) -> Entry:
    return Entry(key=f"case:{case.ticket_id}", kind="case", ref=case.ticket_id,
                 number=case.number, title=case.subject,
                 body=f"{case.problem}\n\n{case.resolution}", language=case.language,
                 audience=Audience.INTERNAL.value, status="solved", updated_at=updated_at,
                 category=case.category)
