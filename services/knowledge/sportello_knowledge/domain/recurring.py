"""Recurring problems: archived cases of one period grouped by what they are about.

Each case joins the most similar group of its period and language (cosine similarity
of stemmed term counts against the group's profile) or starts one. A group that grows
to ``threshold`` cases with no article covering it is proposed as an FAQ once.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

PROFILE_TERMS = 30
"""A group remembers its most weighty terms only: enough to compare, small to keep."""
SIMILARITY = 0.35
THRESHOLD = 5


@dataclass(frozen=True)
class Group:
    id: str
    period: str
    language: str
    profile: Mapping[str, float]
    """Term -> average weight over its cases (the strongest ``PROFILE_TERMS``)."""
    ticket_ids: tuple[str, ...]
    title: str = ""
    """The subject of the case that started it: a person's words, not stems."""
    proposed: bool = False

    @property
    def size(self) -> int:
        return len(self.ticket_ids)


def period_of(at: datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def weights(terms: Iterable[str]) -> dict[str, float]:
    """Term counts scaled to length one (a long description does not outweigh a short one)."""
    counts = Counter(terms)
    norm = math.sqrt(sum(c * c for c in counts.values())) or 1.0
    return {t: c / norm for t, c in counts.items()}


def similarity(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    dot = sum(w * b.get(t, 0.0) for t, w in a.items())
    na = math.sqrt(sum(w * w for w in a.values()))
    nb = math.sqrt(sum(w * w for w in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def place(ticket_id: str, terms: Sequence[str], groups: Sequence[Group], *, subject: str,
          period: str, language: str, min_similarity: float = SIMILARITY) -> Group:
    """The group the case belongs to, grown by it (or a new group of one). A case already
    placed changes nothing (a redelivered event)."""
    for group in groups:
        if ticket_id in group.ticket_ids:
            return group
    case = weights(terms)
    best: tuple[float, Group] | None = None
    for group in groups:
        if group.period != period or group.language != language:
            continue
        score = similarity(case, group.profile)
        if score >= min_similarity and (best is None or score > best[0]):
            best = (score, group)
    if best is None:
        return Group(uuid.uuid4().hex, period, language, _strongest(case), (ticket_id,),
                     title=subject[:200])
    group = best[1]
    n = group.size
    merged = {t: (group.profile.get(t, 0.0) * n + case.get(t, 0.0)) / (n + 1)
              for t in set(group.profile) | set(case)}
    return replace(group, profile=_strongest(merged), ticket_ids=(*group.ticket_ids, ticket_id))


def _strongest(profile: Mapping[str, float]) -> dict[str, float]:
    top = sorted(profile.items(), key=lambda kv: (-kv[1], kv[0]))[:PROFILE_TERMS]
    return dict(top)


def faq_due(group: Group, *, covered: bool, threshold: int = THRESHOLD) -> bool:
    return group.size >= threshold and not group.proposed and not covered


def top_terms(group: Group, n: int = 5) -> list[str]:
    return [t for t, _ in sorted(group.profile.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]
