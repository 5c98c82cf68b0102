"""The library: articles written, reviewed, published, retired, and their versions."""

from __future__ import annotations

from dataclasses import dataclass

from sportello_contracts import utc_now
from sportello_knowledge.domain import articles as rules
from sportello_knowledge.domain.articles import Article, ArticleStatus, Content, Version
from sportello_knowledge.domain.cases import candidate_draft
from sportello_knowledge.service.indexing import IndexKeeper
from sportello_knowledge.service.metrics import KnowledgeMetrics
from sportello_knowledge.store import KnowledgeStore
from sportello_runtime.change import Change
from sportello_runtime.concurrency import retry_on_conflict

SEARCHABLE_WITHIN_S = 2.0
"""How long a write's answer waits for the change to be searchable on this replica."""


class ArticleNotFound(LookupError):
    pass


class CandidateNotOpen(LookupError):
    pass


@dataclass
class Library:
    store: KnowledgeStore
    keeper: IndexKeeper
    metrics: KnowledgeMetrics

    async def article(self, article_id: str) -> Article:
        article = await self.store.article(article_id)
        if article is None:
            raise ArticleNotFound(article_id)
        return article

    async def create(self, content: Content, *, owner: str,
                     translation_of: str | None = None) -> Article:
        original = await self.article(translation_of) if translation_of else None
        change = rules.create(content, owner=owner, now=utc_now(), translation_of=original)
        await self.store.add_article(change.record, change.events,
                                     change.record.as_version(owner, "created"))
        return await self._searchable(change.record)

    async def edit(self, article_id: str, content: Content, *, expected_version: int,
                   author: str) -> Article:
        """Fenced on the version the editor read: no retry, a stale edit is the editor's
        to resolve (409 with the current version)."""
        article = await self.article(article_id)
        change = rules.edit(article, content, expected_version=expected_version, now=utc_now())
        return await self._save(article, change, author, "edited")

    async def move(self, article_id: str, to: ArticleStatus, *, expected_version: int | None,
                   author: str) -> Article:
        async def step() -> Article:
            article = await self.article(article_id)
            change = rules.move(article, to, expected_version=expected_version, now=utc_now())
            return await self._save(article, change, author, to.value)

        if expected_version is not None:
            return await step()
        return await retry_on_conflict(step, what=f"article {article_id}")

    async def revert(self, article_id: str, to_version: int, *, expected_version: int,
                     author: str) -> Article:
        article = await self.article(article_id)
        target = next((v for v in await self.store.versions(article) if v.number == to_version),
                      None)
        if target is None:
            raise ArticleNotFound(f"{article_id} version {to_version}")
        change = rules.revert(article, target, expected_version=expected_version, now=utc_now())
        return await self._save(article, change, author, f"reverted to {to_version}")

    async def versions(self, article_id: str) -> list[Version]:
        return await self.store.versions(await self.article(article_id))

    async def diff(self, article_id: str, from_version: int, to_version: int) -> rules.Diff:
        by_number = {v.number: v for v in await self.versions(article_id)}
        missing = [n for n in (from_version, to_version) if n not in by_number]
        if missing:
            raise ArticleNotFound(f"{article_id} version {missing[0]}")
        return rules.diff(by_number[from_version], by_number[to_version])

    async def draft_from_candidate(self, ticket_id: str, *, owner: str) -> Article:
        """An editor's one action: the candidate becomes a draft prefilled from its case."""
        found = await self.store.case(ticket_id)
        if found is None or not found[1] or found[1].get("status") != "open":
            raise CandidateNotOpen(ticket_id)
        case, _ = found
        change = rules.create(candidate_draft(case), owner=owner, now=utc_now(),
                              candidate_of=case.ticket_id)
        await self.store.add_article(change.record, change.events,
                                     change.record.as_version(owner, "drafted from a case"))
        await self.store.mark_candidate(ticket_id, status="drafted",
                                        article_id=change.record.id)
        return await self._searchable(change.record)

    async def dismiss_candidate(self, ticket_id: str) -> None:
        if not await self.store.mark_candidate(ticket_id, status="dismissed", article_id=None):
            raise CandidateNotOpen(ticket_id)

    async def feedback(self, article_id: str, *, helpful: bool, reason: str | None) -> None:
        article = await self.article(article_id)
        await self.store.add_feedback(article.id, article.content.language, helpful=helpful,
                                      reason=reason, at=utc_now())
        self.metrics.feedback.labels("yes" if helpful else "no").inc()

    async def _save(self, before: Article, change: Change[Article], author: str,
                    note: str) -> Article:
        await self.store.save_article(change.record, expected_version=before.version,
                                      events=change.events,
                                      version=change.record.as_version(author, note))
        return await self._searchable(change.record)

    async def _searchable(self, article: Article) -> Article:
        """Noted for this replica's index at once (others hear of it by event), and
        searchable here by the time the caller is answered."""
        key = f"article:{article.id}"
        self.keeper.note(key)
        await self.keeper.written(key, SEARCHABLE_WITHIN_S)
        return article
