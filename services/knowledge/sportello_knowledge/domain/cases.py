"""Archived cases: what a closed ticket leaves behind, and when it should become an article.

A case is kept for every closed ticket (agents search them as "similar solved tickets").
It becomes a candidate article when its resolution says enough to teach someone and no
published article already covers its problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sportello_contracts.enums import SupportLevel
from sportello_contracts.events import TicketClosed
from sportello_knowledge.domain.articles import Audience, Content

MIN_RESOLUTION_WORDS = 12
"""Fewer words than this ("fixed", "password reset done") teach nobody anything."""
COVERAGE = 0.6
"""A published article covers a problem when it holds this share of the problem's terms."""


@dataclass(frozen=True)
class ArchivedCase:
    ticket_id: str
    number: str
    subject: str
    problem: str
    resolution: str
    category: str | None
    level: SupportLevel | None
    language: str
    closed_at: datetime
    created_at: datetime | None = None
    resolved_at: datetime | None = None

    @property
    def time_to_resolve_s(self) -> float | None:
        """Open to resolved (to closed when it was never resolved)."""
        if self.created_at is None:
            return None
        return ((self.resolved_at or self.closed_at) - self.created_at).total_seconds()


def archive(closed: TicketClosed, *, closed_at: datetime, default_language: str) -> ArchivedCase:
    language = closed.language if closed.language in ("it", "en") else default_language
    return ArchivedCase(
        ticket_id=closed.ticket_id, number=closed.number, subject=closed.subject,
        problem=closed.description, resolution=(closed.resolution or "").strip(),
        category=closed.category, level=closed.level, language=language,
        closed_at=closed_at, created_at=closed.created_at, resolved_at=closed.resolved_at)


_WORD = re.compile(r"\w+", re.UNICODE)


def is_substantial(resolution: str, min_words: int = MIN_RESOLUTION_WORDS) -> bool:
    return len(_WORD.findall(resolution)) >= min_words


def coverage(problem_terms: Iterable[str], article_terms: Iterable[str]) -> float:
    """The share of the problem's distinct terms (stems) that an article holds."""
    wanted = set(problem_terms)
    if not wanted:
        return 0.0
    return len(wanted & set(article_terms)) / len(wanted)


def is_covered(problem_terms: Iterable[str], articles_terms: Iterable[Iterable[str]],
               threshold: float = COVERAGE) -> bool:
    terms = list(problem_terms)
    return any(coverage(terms, a) >= threshold for a in articles_terms)


def deserves_candidate(case: ArchivedCase, *, covered: bool,
                       min_words: int = MIN_RESOLUTION_WORDS) -> bool:
    """A case teaches when its resolution is substantial and nothing published covers it."""
    return is_substantial(case.resolution, min_words) and not covered


HEADINGS = {"it": ("Problema", "Soluzione"), "en": ("Problem", "Solution")}


def candidate_draft(case: ArchivedCase) -> Content:
    """An editor's one action: the draft prefilled from the case, for agents until reviewed."""
    problem, solution = HEADINGS.get(case.language, HEADINGS["en"])
    body = f"## {problem}\n\n{case.problem.strip()}\n\n## {solution}\n\n{case.resolution}\n"
    return Content(title=case.subject.strip()[:200] or case.number, body=body,
                   language=case.language, audience=Audience.INTERNAL, category=case.category,
                   linked_tickets=(case.number,))
