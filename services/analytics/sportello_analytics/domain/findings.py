"""What the monthly report says, not only shows: what got worse and by how much, the
recurring problems that deserve an article, the departments that would gain from
training, the levels that breach most. Pure: from the month's KPIs (and knowledge's
proposals)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

HIGHER_IS_WORSE = {"first_response_median_s", "resolution_median_s", "escalation_rate",
                   "reopen_rate", "first_response_business_median_s",
                   "resolution_business_median_s"}
LOWER_IS_WORSE = {"first_contact_resolution", "sla_first_response_compliance",
                  "sla_resolution_compliance", "satisfaction"}
NOTICEABLE = 0.05
"""A change smaller than this share of the previous value is noise, not a finding."""


def worse(change: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for name, figure in change.items():
        now, before = figure.get("now"), figure.get("before")
        if now is None or before is None or before == 0:
            continue
        relative = (now - before) / abs(before)
        if (name in HIGHER_IS_WORSE and relative > NOTICEABLE) or (
                name in LOWER_IS_WORSE and relative < -NOTICEABLE):
            found.append({"figure": name, "now": now, "before": before,
                          "change": round(now - before, 4), "relative": round(relative, 4)})
    return sorted(found, key=lambda f: -abs(f["relative"]))


def articles_deserved(proposals: Sequence[Mapping[str, Any]],
                      top_categories: Sequence[Mapping[str, Any]], n: int = 3
                      ) -> list[dict[str, Any]]:
    """Knowledge's FAQ proposals first (problems seen again and again with no article),
    then the categories with most tickets."""
    found: list[dict[str, Any]] = [
        {"source": "knowledge", "title": p.get("title"), "tickets": p.get("size")}
        for p in sorted(proposals, key=lambda p: -int(p.get("size") or 0))[:n]]
    found += [{"source": "category", "title": c["category"], "tickets": c["tickets"]}
              for c in top_categories[:n] if c["category"] != "(none)"]
    return found


def training_candidates(departments: Sequence[Mapping[str, Any]], n: int = 3
                        ) -> list[dict[str, Any]]:
    """Departments whose tickets the first line solves at once, most of them: problems
    their people could solve themselves with a little training or an article."""
    rows = [{"department": d["department"], "tickets": d["tickets"],
             "solved_at_first_contact": d["first_contact_resolutions"]}
            for d in departments if d["department"] != "(none)"
            and d.get("first_contact_resolutions")]
    return sorted(rows, key=lambda r: (-r["solved_at_first_contact"], r["department"]))[:n]


def breaching_levels(levels: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(row) for row in levels if row["sla_breaches"] and row["level"] != "(none)"]


def findings(kpis: Mapping[str, Any], proposals: Sequence[Mapping[str, Any]]
             ) -> dict[str, Any]:
    return {"worse": worse(kpis["change"]),
            "articles_deserved": articles_deserved(proposals, kpis["top_categories"]),
            "training": training_candidates(kpis["departments_by_tickets"]),
            "breaching_levels": breaching_levels(kpis["levels_by_sla_breaches"])}


def month_bounds(month: str) -> tuple[date, date]:
    """``2026-11`` -> (2026-11-01, 2026-12-01)."""
    year, number = (int(part) for part in month.split("-"))
    if not 1 <= number <= 12:
        raise ValueError(f"no month {number}")
    following = date(year + number // 12, number % 12 + 1, 1)
    return date(year, number, 1), following


def report_due(today: date, sent: set[str]) -> str | None:
    """The month whose report is due (the one just ended), unless it went out already."""
    month = month_before(today)
    return None if month in sent else month


def month_before(day: date) -> str:
    """``2027-01-15`` -> ``2026-12``."""
    return f"{day.year - (day.month == 1):04d}-{(day.month - 2) % 12 + 1:02d}"


HEADLINES = ("created", "resolved", "first_response_median_s", "resolution_median_s",
             "first_response_business_median_s", "resolution_business_median_s",
             "first_contact_resolution", "escalation_rate", "reopen_rate",
             "sla_first_response_compliance", "sla_resolution_compliance", "satisfaction")


def flatten(report: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """The report's numbers as (section, name, value) rows: what the CSV holds, and what
    the JSON holds too (a test keeps them the same)."""
    rows: list[tuple[str, str, Any]] = []
    for name in HEADLINES:
        figure = report["change"][name]
        rows += [("this month", name, figure["now"]), ("previous month", name, figure["before"])]
    for day in report["per_day"]:
        rows += [("created per day", day["day"], day["created"]),
                 ("resolved per day", day["day"], day["resolved"])]
    rows += [("tickets per category", c["category"], c["tickets"])
             for c in report["top_categories"]]
    rows += [("tickets per department", d["department"], d["tickets"])
             for d in report["departments_by_tickets"]]
    rows += [("SLA breaches per level", lv["level"], lv["sla_breaches"])
             for lv in report["levels_by_sla_breaches"]]
    rows += [("satisfaction", f"rated {score}", count)
             for score, count in report["satisfaction"]["distribution"].items()]
    return rows
