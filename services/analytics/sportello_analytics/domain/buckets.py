"""What a ticket adds to each day's aggregates, and the deltas when its facts change.

A bucket is one day and one combination of the dimensions the coordinator filters by
(channel, category, priority, level, group, agent, department, customer type). Each
ticket adds its counts to the buckets of the days things happened to it (opened,
first answered, resolved, closed, rated), under its current dimensions. Durations go
into fixed histograms, as Prometheus keeps them, so percentiles over a year are read
from a few hundred buckets rather than from every ticket.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from datetime import datetime

from sportello_analytics.domain.facts import TicketFacts

DIMENSIONS = ("channel", "category", "priority", "level", "group", "agent", "department",
              "customer_type")
DURATION_BOUNDS = (60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400,
                   2 * 86400, 3 * 86400, 5 * 86400, 7 * 86400, 14 * 86400, 30 * 86400)
"""Upper bounds (seconds) of the duration histograms; the last bin is everything above."""
RATINGS = (1, 2, 3, 4, 5)

Contribution = dict[str, dict[str, float]]
"""Bucket key -> counter -> amount."""


def dimensions_of(facts: TicketFacts) -> dict[str, str]:
    return {name: str(getattr(facts, name) or "") for name in DIMENSIONS}


def bucket_key(day: str, dims: Mapping[str, str]) -> str:
    """The day and the dimensions, readable and parseable back (``bucket_fields``)."""
    return json.dumps([day, *(dims[name] for name in DIMENSIONS)], ensure_ascii=False)


def day_of(at: datetime) -> str:
    return at.strftime("%Y-%m-%d")


def bin_of(seconds: float) -> int:
    for n, bound in enumerate(DURATION_BOUNDS):
        if seconds <= bound:
            return n
    return len(DURATION_BOUNDS)


def contribution(facts: TicketFacts) -> Contribution:
    """Everything this ticket adds, by bucket. A ticket not yet created (its creation has
    not arrived) adds nothing: its facts would have no day and no channel."""
    if facts.created_at is None:
        return {}
    dims = dimensions_of(facts)
    out: dict[str, Counter[str]] = {}

    def add(at: datetime, **counts: float) -> None:
        key = bucket_key(day_of(at), dims)
        out.setdefault(key, Counter()).update(counts)

    opened: dict[str, float] = {"created": 1, "escalated": 1 if facts.escalations else 0,
                                "escalations_manual": facts.escalations_manual,
                                "escalations_automatic": facts.escalations_automatic,
                                "reopened": 1 if facts.reopens else 0}
    for level in facts.levels_passed:
        opened[f"passed_{level}"] = 1
    for level in facts.escalated_from:
        opened[f"escalated_from_{level}"] = opened.get(f"escalated_from_{level}", 0) + 1
    for target, outcome in facts.sla.items():
        opened[f"sla_{target}_{outcome}"] = 1
    add(facts.created_at, **opened)
    if (response := facts.time_to_first_response_s) is not None:
        assert facts.first_response_at is not None
        add(facts.first_response_at, responded=1, response_s=response,
            **{f"response_bin_{bin_of(response)}": 1},
            **business(facts, "first_response", "response"))
    if (resolution := facts.time_to_resolution_s) is not None:
        assert facts.resolved_at is not None
        add(facts.resolved_at, resolved=1, resolution_s=resolution,
            fcr=1 if facts.first_contact_resolution else 0,
            **{f"resolution_bin_{bin_of(resolution)}": 1},
            **business(facts, "resolution", "resolution"))
    if facts.closed_at is not None:
        add(facts.closed_at, closed=1)
    if facts.rating is not None and facts.rated_at is not None:
        add(facts.rated_at, rated=1, rating_sum=facts.rating, **{f"rating_{facts.rating}": 1})
    return {key: {k: float(v) for k, v in counts.items() if v} for key, counts in out.items()}


def business(facts: TicketFacts, target: str, name: str) -> dict[str, float]:
    """The business time SLA's clock counted for ``target``, when it told (a ticket with no
    SLA, or imported from a log that has none, has wall-clock times only)."""
    seconds = facts.business_s.get(target)
    if seconds is None:
        return {}
    return {f"{name}_business": 1, f"{name}_business_s": seconds,
            f"{name}_business_bin_{bin_of(seconds)}": 1}


def delta(before: Contribution, after: Contribution) -> Contribution:
    """What to add to each bucket to go from ``before`` to ``after`` (zeros left out)."""
    changes: Contribution = {}
    for key in set(before) | set(after):
        old, new = before.get(key, {}), after.get(key, {})
        moved = {name: new.get(name, 0.0) - old.get(name, 0.0) for name in set(old) | set(new)}
        moved = {k: v for k, v in moved.items() if v}
        if moved:
            changes[key] = moved
    return changes


def bucket_fields(key: str) -> dict[str, str]:
    """The fields a bucket document is created with: its day and dimensions."""
    day, *values = json.loads(key)
    return {"day": day, **dict(zip(DIMENSIONS, values, strict=True))}
