"""What the monthly report says, as pure rules."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from sportello_analytics.domain import findings


def test_what_got_worse_knows_which_way_is_worse_and_ignores_noise() -> None:
    change: dict[str, dict[str, Any]] = {
        "resolution_median_s": {"now": 7200, "before": 3600},        # slower: worse
        "satisfaction": {"now": 3.0, "before": 4.0},                 # lower: worse
        "first_contact_resolution": {"now": 0.8, "before": 0.6},     # higher: better
        "reopen_rate": {"now": 0.101, "before": 0.100},              # 1 %: noise
        "created": {"now": 500, "before": 100},                      # volume: no judgement
        "escalation_rate": {"now": None, "before": 0.2},             # unknown
    }
    worse = findings.worse(change)
    assert [w["figure"] for w in worse] == ["resolution_median_s", "satisfaction"]
    assert worse[0]["relative"] == 1.0
    assert worse[1]["relative"] == -0.25


def test_articles_deserved_put_knowledge_proposals_first() -> None:
    deserved = findings.articles_deserved(
        [{"title": "Outlook asks for the password", "size": 7}],
        [{"category": "network", "tickets": 40}, {"category": "(none)", "tickets": 3}])
    assert [(a["source"], a["title"]) for a in deserved] == [
        ("knowledge", "Outlook asks for the password"), ("category", "network")]


def test_training_goes_to_departments_with_most_first_contact_fixes() -> None:
    rows = [{"department": "Sales", "tickets": 10, "first_contact_resolutions": 8},
            {"department": "Finance", "tickets": 30, "first_contact_resolutions": 2},
            {"department": "(none)", "tickets": 5, "first_contact_resolutions": 5},
            {"department": "HR", "tickets": 4, "first_contact_resolutions": 0}]
    assert [r["department"] for r in findings.training_candidates(rows)] == ["Sales",
                                                                             "Finance"]


@pytest.mark.parametrize(("today", "sent", "due"), [
    (date(2026, 12, 1), set(), "2026-11"),
    (date(2026, 12, 15), {"2026-11"}, None),
    (date(2027, 1, 1), {"2026-11"}, "2026-12"),
])
def test_the_report_of_the_month_just_ended_is_due_once(today: date, sent: set[str],
                                                       due: str | None) -> None:
    assert findings.report_due(today, sent) == due


def test_month_bounds() -> None:
    assert findings.month_bounds("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))
    with pytest.raises(ValueError, match="no month"):
        findings.month_bounds("2026-13")


def test_the_month_before() -> None:
    assert findings.month_before(date(2027, 1, 15)) == "2026-12"
    assert findings.month_before(date(2026, 12, 1)) == "2026-11"
