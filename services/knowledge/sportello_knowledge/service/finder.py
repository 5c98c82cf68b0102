"""Search for agents and requesters, suggestions for every new ticket, and self-service
deflections (a requester who found the answer and opened no ticket)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from sportello_contracts import new_event, utc_now
from sportello_contracts.events import (
    ArticleSuggestion,
    CaseSuggestion,
    KbDeflected,
    KbSuggestionsReady,
    TicketCreated,
)
from sportello_knowledge.domain.articles import PRODUCER, visible_to_requesters
from sportello_knowledge.index import ANALYSERS, Hit, Query, Results, SearchIndex
from sportello_knowledge.service.metrics import KnowledgeMetrics
from sportello_knowledge.store import KnowledgeStore

RELATIVE_SCORE = 0.4
"""A suggestion scoring below this share of the best one is noise, not help."""


class Deflection(StrEnum):
    COUNTED = "counted"
    ALREADY_COUNTED = "already_counted"
    """The same page answered twice (a double click, the back button)."""
    NOT_PUBLIC = "not_public"


class Reader(StrEnum):
    AGENT = "agent"
    """Every article in every state, and archived cases (filters narrow it)."""
    REQUESTER = "requester"
    """Published public articles only, whatever the filters ask."""


@dataclass
class Finder:
    index: SearchIndex
    store: KnowledgeStore
    metrics: KnowledgeMetrics
    public_url: str
    """Where requesters read an article: ``{public_url}/help/articles/{id}``."""
    form_url: str
    """The web form a requester goes on to when no article helped."""
    default_language: str = "en"
    requester_suggestions: int = 3
    agent_suggestions: int = 5

    async def search(self, words: str, reader: Reader, *, language: str | None = None,
                     category: str | None = None, statuses: tuple[str, ...] = (),
                     kinds: tuple[str, ...] = (), limit: int = 10, offset: int = 0) -> Results:
        languages = (language,) if language else tuple(ANALYSERS)
        if reader is Reader.REQUESTER:
            query = Query(words, languages=languages, audiences=("public",),
                          statuses=("published",), kinds=("article",), category=category,
                          limit=limit, offset=offset)
        else:
            query = Query(words, languages=languages, statuses=statuses, kinds=kinds,
                          category=category, limit=limit, offset=offset)
        started = time.perf_counter()
        results = await self.index.search(query)
        self.metrics.search_seconds.observe(time.perf_counter() - started)
        self.metrics.searches.labels(reader.value).inc()
        if results.total == 0:
            self.metrics.zero_results.labels(reader.value).inc()
        return results

    def article_url(self, article_id: str) -> str:
        return f"{self.public_url.rstrip('/')}/help/articles/{article_id}"

    def form_link(self, searched: str | None, language: str) -> str:
        """The web form, pre-filled with what the requester searched for."""
        params = {"lang": language}
        if searched:
            params["subject"] = searched[:200]
        separator = "&" if "?" in self.form_url else "?"
        return f"{self.form_url}{separator}{urlencode(params)}"

    # -- suggestions ----------------------------------------------------------------------

    async def suggest(self, created: TicketCreated) -> dict[str, Any]:
        """Articles for the requester (public), and articles and solved cases for the
        agent, found with the ticket's own words in its language; one event says so."""
        language = created.requester.language
        if language not in ANALYSERS:
            language = self.default_language
        text = f"{created.subject}\n{created.description}"
        languages = (language,)
        public = await self.index.search(Query(
            text, languages=languages, audiences=("public",), statuses=("published",),
            kinds=("article",), limit=self.requester_suggestions))
        internal = await self.index.search(Query(
            text, languages=languages, audiences=("internal",), statuses=("published",),
            kinds=("article",), limit=self.agent_suggestions))
        cases = await self.index.search(Query(
            text, languages=languages, kinds=("case",), limit=self.agent_suggestions + 1))
        payload = KbSuggestionsReady(
            ticket_id=created.ticket_id,
            suggestions=[self._article(h) for h in _relevant(public.hits)],
            internal=[self._article(h) for h in _relevant(internal.hits)],
            similar_cases=[CaseSuggestion(ticket_id=h.ref, number=h.number, title=h.title[:200],
                                          score=h.score)
                           for h in _relevant(cases.hits) if h.ref != created.ticket_id
                           ][:self.agent_suggestions])
        event = new_event(payload, producer=PRODUCER, correlation_id=created.ticket_id)
        document = {**payload.model_dump(mode="json"), "language": language,
                    "at": utc_now()}
        await self.store.save_suggestions(created.ticket_id, document, [event])
        self.metrics.suggestions.inc()
        return document

    def _article(self, hit: Hit) -> ArticleSuggestion:
        return ArticleSuggestion(article_id=hit.ref, title=hit.title[:200],
                                 url=self.article_url(hit.ref), score=hit.score)

    # -- self-service ---------------------------------------------------------------------

    async def deflected(self, article_id: str, *, query: str | None,
                        token: str | None) -> Deflection:
        """A requester's "yes, this solved it": counted once per page token."""
        article = await self.store.article(article_id)
        if article is None or not visible_to_requesters(article):
            return Deflection.NOT_PUBLIC
        payload = KbDeflected(article_id=article.id, language=article.content.language,
                              query=(query or None) and query[:200])
        event = new_event(payload, producer=PRODUCER, correlation_id=article.id)
        added = await self.store.add_deflection(
            token or uuid.uuid4().hex,
            {"article_id": article.id, "language": article.content.language,
             "query": payload.query, "at": utc_now()}, [event])
        if not added:
            return Deflection.ALREADY_COUNTED
        self.metrics.deflections.inc()
        return Deflection.COUNTED


    async def deflection_rate(self) -> dict[str, Any]:
        """Deflections against the tickets that arrived (each gets its suggestions once):
        the share of problems solved by self-service, since the start."""
        deflected = await self.store.deflections()
        tickets = await self.store.tickets_suggested()
        total = deflected + tickets
        rate = round(deflected / total, 4) if total else None
        self.metrics.deflection_rate.set(rate or 0.0)
        return {"deflections": deflected, "tickets": tickets, "deflection_rate": rate}


def _relevant(hits: list[Hit]) -> list[Hit]:
    if not hits:
        return []
    best = hits[0].score
    return [h for h in hits if h.score >= best * RELATIVE_SCORE]
