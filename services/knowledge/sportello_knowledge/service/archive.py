"""The archive: every closed ticket kept as a case, the ones that should become articles
(candidates), and the recurring problems of each period (FAQ proposals)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from sportello_contracts import EventEnvelope, new_event, utc_now
from sportello_contracts.events import (
    KbCandidateCreated,
    KbCaseArchived,
    KbFaqProposed,
    TicketClosed,
)
from sportello_knowledge.domain import cases as case_rules
from sportello_knowledge.domain import recurring
from sportello_knowledge.domain.articles import PRODUCER
from sportello_knowledge.domain.cases import ArchivedCase
from sportello_knowledge.index import Query, SearchIndex, terms
from sportello_knowledge.service.indexing import IndexKeeper
from sportello_knowledge.service.metrics import KnowledgeMetrics
from sportello_knowledge.store import KnowledgeStore
from sportello_runtime.concurrency import retry_on_conflict

EVENT_IDS = uuid.UUID("6f1f3c0e-58a4-4b8e-9a53-6b1c0f4f2a10")


@dataclass(frozen=True)
class ArchiveRules:
    min_resolution_words: int = case_rules.MIN_RESOLUTION_WORDS
    coverage: float = case_rules.COVERAGE
    faq_threshold: int = recurring.THRESHOLD
    similarity: float = recurring.SIMILARITY
    default_language: str = "en"


@dataclass
class Archive:
    store: KnowledgeStore
    index: SearchIndex
    keeper: IndexKeeper
    metrics: KnowledgeMetrics
    rules: ArchiveRules

    async def ticket_closed(self, closed: TicketClosed, at: datetime) -> ArchivedCase | None:
        """Keep the case; propose it as an article when it teaches something new; place
        it among the period's recurring problems. An older closing arriving late: None.
        The same closing again redoes each step (each is idempotent)."""
        case = case_rules.archive(closed, closed_at=at,
                                  default_language=self.rules.default_language)
        covered = await self.covered(f"{case.subject}\n{case.problem}", case.language)
        events = [self._event(KbCaseArchived(ticket_id=case.ticket_id, number=case.number),
                              case.ticket_id, at)]
        candidate = None
        if case_rules.deserves_candidate(case, covered=covered,
                                         min_words=self.rules.min_resolution_words):
            title = case.subject[:200] or case.number
            candidate = {"status": "open", "title": title, "created_at": utc_now(),
                         "article_id": None}
            events.append(self._event(KbCandidateCreated(
                ticket_id=case.ticket_id, candidate_id=case.ticket_id, title=title),
                case.ticket_id, at))
        if not await self.store.archive_case(case, candidate, events):
            return None
        if candidate is not None:
            self.metrics.candidates.inc()
        self.keeper.note(f"case:{case.ticket_id}")
        await retry_on_conflict(lambda: self._place(case), what="recurring problems")
        return case

    async def covered(self, text: str, language: str) -> bool:
        """Whether a published article already holds most of what ``text`` is about."""
        found = await self.index.search(Query(text, languages=(language,),
                                              statuses=("published",), kinds=("article",),
                                              limit=3, typos=False))
        wanted = terms(text, language)
        articles = []
        for hit in found.hits:
            article = await self.store.article(hit.ref)
            if article is not None:
                articles.append(terms(f"{article.content.title}\n{article.content.body}",
                                      article.content.language))
        return case_rules.is_covered(wanted, articles, self.rules.coverage)

    async def _place(self, case: ArchivedCase) -> None:
        period = recurring.period_of(case.closed_at)
        groups, version = await self.store.groups(period, case.language)
        group = recurring.place(case.ticket_id, terms(f"{case.subject}\n{case.problem}",
                                                      case.language),
                                groups, subject=case.subject, period=period,
                                language=case.language, min_similarity=self.rules.similarity)
        if group in groups:
            return  # placed before (a redelivered event)
        events: list[EventEnvelope] = []
        if recurring.faq_due(group, covered=False, threshold=self.rules.faq_threshold):
            about = f"{group.title}\n{' '.join(recurring.top_terms(group))}"
            if not await self.covered(about, group.language):
                group = replace(group, proposed=True)
                events.append(self._event(KbFaqProposed(
                    proposal_id=group.id, period=period, language=group.language,
                    title=group.title or " ".join(recurring.top_terms(group)),
                    terms=recurring.top_terms(group, 10), ticket_ids=list(group.ticket_ids),
                    size=group.size), group.id, utc_now()))
        others = [g for g in groups if g.id != group.id]
        await self.store.save_groups(period, case.language, [*others, group],
                                     expected_version=version, events=events)
        if events:
            self.metrics.faq_proposals.inc()

    @staticmethod
    def _event(payload: KbCaseArchived | KbCandidateCreated | KbFaqProposed,
               correlation_id: str, at: datetime) -> EventEnvelope:
        """Ids derived from what happened: a redelivered closing announces nothing twice."""
        return new_event(payload, producer=PRODUCER, correlation_id=correlation_id,
                         occurred_at=at, event_id=uuid.uuid5(
                             EVENT_IDS, f"{payload.event_type}:{correlation_id}:{at.isoformat()}"))
