"""The coordinator's figures, read from daily buckets: volume and backlog, times to first
response and to resolution, first-contact resolution, escalations, reopenings, SLA
compliance, satisfaction, per agent, group, department and category; and each figure
against the previous period."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sportello_analytics.domain.buckets import DIMENSIONS, DURATION_BOUNDS, RATINGS
from sportello_analytics.domain.facts import LEVELS, TARGETS

Bucket = Mapping[str, Any]
"""A bucket as stored: ``day``, the dimensions, and ``counts``."""


def summed(buckets: Iterable[Bucket]) -> Counter[str]:
    total: Counter[str] = Counter()
    for bucket in buckets:
        total.update(bucket.get("counts") or {})
    return total


def ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def percentile(counts: Mapping[str, float], name: str, q: float) -> float | None:
    """The ``q`` quantile of a duration histogram (``<name>_bin_<n>`` counters), by linear
    interpolation within the bin, as Prometheus' histogram_quantile does."""
    bins = [float(counts.get(f"{name}_bin_{n}", 0)) for n in range(len(DURATION_BOUNDS) + 1)]
    total = sum(bins)
    if not total:
        return None
    rank = q * total
    seen = 0.0
    for n, count in enumerate(bins):
        if count and seen + count >= rank:
            if n == len(DURATION_BOUNDS):
                return float(DURATION_BOUNDS[-1])  # above the last bound: say the bound
            low = DURATION_BOUNDS[n - 1] if n else 0
            high = DURATION_BOUNDS[n]
            return round(low + (high - low) * (rank - seen) / count, 1)
        seen += count
    return float(DURATION_BOUNDS[-1])


def durations(counts: Mapping[str, float], name: str, done: str) -> dict[str, Any]:
    """Wall-clock, and business time where SLA's clocks told it."""
    business = f"{name}_business"
    return {"count": counts.get(done, 0), "median_s": percentile(counts, name, 0.5),
            "p90_s": percentile(counts, name, 0.9),
            "mean_s": round(counts[f"{name}_s"] / counts[done], 1) if counts.get(done) else None,
            "business": {
                "count": counts.get(business, 0),
                "median_s": percentile(counts, business, 0.5),
                "p90_s": percentile(counts, business, 0.9),
                "mean_s": round(counts[f"{business}_s"] / counts[business], 1)
                if counts.get(business) else None}}


def figures(counts: Mapping[str, float]) -> dict[str, Any]:
    """Every figure one set of summed counts gives."""
    created, resolved = counts.get("created", 0), counts.get("resolved", 0)
    rated = counts.get("rated", 0)
    return {
        "created": created, "resolved": resolved, "closed": counts.get("closed", 0),
        "first_response": durations(counts, "response", "responded"),
        "resolution": durations(counts, "resolution", "resolved"),
        "first_contact_resolution": ratio(counts.get("fcr", 0), resolved),
        "escalation": {
            "rate": ratio(counts.get("escalated", 0), created),
            "manual": counts.get("escalations_manual", 0),
            "automatic": counts.get("escalations_automatic", 0),
            "per_level": {level: ratio(counts.get(f"escalated_from_{level}", 0),
                                       counts.get(f"passed_{level}", 0)) for level in LEVELS},
        },
        "reopen_rate": ratio(counts.get("reopened", 0), created),
        "sla": {target: {"met": counts.get(f"sla_{target}_met", 0),
                         "breached": counts.get(f"sla_{target}_breached", 0),
                         "compliance": ratio(counts.get(f"sla_{target}_met", 0),
                                             counts.get(f"sla_{target}_met", 0)
                                             + counts.get(f"sla_{target}_breached", 0))}
                for target in TARGETS},
        "satisfaction": {"average": round(counts["rating_sum"] / rated, 2) if rated else None,
                         "distribution": {str(r): counts.get(f"rating_{r}", 0) for r in RATINGS},
                         "response_rate": ratio(rated, resolved)},
    }


def breached(counts: Mapping[str, float]) -> float:
    return sum(counts.get(f"sla_{t}_breached", 0) for t in TARGETS)


def grouped(buckets: Iterable[Bucket], *names: str) -> dict[tuple[str, ...], Counter[str]]:
    """Summed counts per value of ``names``. A bucket left at zero (its tickets moved on to
    other dimensions, say once triaged) is no group: a rebuild would not have it at all."""
    groups: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    for bucket in buckets:
        counts = bucket.get("counts") or {}
        if any(counts.values()):
            groups[tuple(str(bucket.get(n) or "") for n in names)].update(counts)
    return {key: counts for key, counts in groups.items() if any(counts.values())}


def per_day(buckets: Iterable[Bucket]) -> list[dict[str, Any]]:
    days = grouped(buckets, "day")
    return [{"day": day, "created": c.get("created", 0), "resolved": c.get("resolved", 0)}
            for (day,), c in sorted(days.items())]


def backlog(open_before: float, days: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open tickets at the end of each day: those open before the period, plus each day's
    new ones, less each day's resolved."""
    series, open_now = [], open_before
    for day in days:
        open_now += day["created"] - day["resolved"]
        series.append({"day": day["day"], "open": open_now})
    return series


def report(buckets: Sequence[Bucket], previous: Sequence[Bucket],
           open_before: float) -> dict[str, Any]:
    """The KPIs of a period (its buckets), with the previous period's for comparison."""
    counts, before = summed(buckets), summed(previous)
    days = per_day(buckets)
    now, then = figures(counts), figures(before)

    def people(name: str) -> list[dict[str, Any]]:
        rows = []
        for (who,), c in grouped(buckets, name).items():
            if not who:
                continue
            f = figures(c)
            rows.append({name: who, "handled": c.get("created", 0), "solved": c.get("resolved", 0),
                         "resolution_median_s": f["resolution"]["median_s"],
                         "first_response_median_s": f["first_response"]["median_s"],
                         "satisfaction": f["satisfaction"]["average"]})
        return sorted(rows, key=lambda r: (-r["solved"], r[name]))

    departments: list[dict[str, Any]] = [
        {"department": d or "(none)", "tickets": c.get("created", 0), "sla_breaches": breached(c),
         "first_contact_resolutions": c.get("fcr", 0)}
        for (d,), c in grouped(buckets, "department").items()]
    return {
        **now,
        "per_day": days,
        "backlog": backlog(open_before, days),
        "sla_by_priority_and_level": [
            {"priority": p or None, "level": lv or None, **figures(c)["sla"]}
            for (p, lv), c in sorted(grouped(buckets, "priority", "level").items())],
        "levels_by_sla_breaches": sorted(
            ({"level": lv or "(none)", "sla_breaches": breached(c)}
             for (lv,), c in grouped(buckets, "level").items()),
            key=lambda r: (-r["sla_breaches"], r["level"])),
        "agents": people("agent"),
        "groups": people("group"),
        "departments_by_tickets": sorted(departments, key=lambda r: (-r["tickets"],
                                                                     r["department"])),
        "departments_by_sla_breaches": sorted(departments, key=lambda r: (-r["sla_breaches"],
                                                                          r["department"])),
        "top_categories": top_categories(buckets),
        "previous": then,
        "change": compare(now, then),
    }


def top_categories(buckets: Iterable[Bucket], n: int = 10) -> list[dict[str, Any]]:
    rows = [(c or "(none)", counts.get("created", 0.0))
            for (c,), counts in grouped(buckets, "category").items()]
    return [{"category": c, "tickets": t} for c, t in sorted(rows, key=lambda r: (-r[1], r[0]))[:n]]


COMPARED = {
    "created": ("created",), "resolved": ("resolved",),
    "first_response_median_s": ("first_response", "median_s"),
    "resolution_median_s": ("resolution", "median_s"),
    "first_response_business_median_s": ("first_response", "business", "median_s"),
    "resolution_business_median_s": ("resolution", "business", "median_s"),
    "first_contact_resolution": ("first_contact_resolution",),
    "escalation_rate": ("escalation", "rate"), "reopen_rate": ("reopen_rate",),
    "sla_first_response_compliance": ("sla", "first_response", "compliance"),
    "sla_resolution_compliance": ("sla", "resolution", "compliance"),
    "satisfaction": ("satisfaction", "average"),
}


def compare(now: Mapping[str, Any], then: Mapping[str, Any]) -> dict[str, Any]:
    """Each headline figure's change from the previous period (None when either is
    unknown)."""
    def pick(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
        for part in path:
            data = data.get(part) if isinstance(data, Mapping) else None  # type: ignore[assignment]
        return data

    changes = {}
    for name, path in COMPARED.items():
        a, b = pick(now, path), pick(then, path)
        changes[name] = {"now": a, "before": b,
                         "change": round(a - b, 4) if a is not None and b is not None else None}
    return changes


def matches(bucket: Bucket, filters: Mapping[str, str | None]) -> bool:
    return all(value is None or bucket.get(name) == value for name, value in filters.items()
               if name in DIMENSIONS)
