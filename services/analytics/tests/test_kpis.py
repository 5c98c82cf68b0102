"""Every KPI as pure functions on hand-made event streams: in order, out of order, with
copies; the buckets' deltas; percentiles from the histograms."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sportello_analytics.domain import kpis
from sportello_analytics.domain.buckets import (
    DIMENSIONS,
    bucket_fields,
    contribution,
    delta,
)
from sportello_analytics.domain.facts import Event, facts_of

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


class Stream:
    """A ticket's life as the services would announce it."""

    def __init__(self, ticket_id: str, *, channel: str = "email", department: str = "Finance",
                 customer_type: str = "private") -> None:
        self.ticket_id = ticket_id
        self.events: list[Event] = []
        self.add("ticket.created", T0, number=f"HD-{ticket_id}", channel=channel,
                 created_at=T0.isoformat(), requester={"name": "x", "department": department,
                                                       "customer_type": customer_type})

    def add(self, event_type: str, when: datetime, **payload: Any) -> Stream:
        self.events.append(Event(f"{self.ticket_id}-{len(self.events)}", event_type,
                                 self.ticket_id,
                                 when, {"ticket_id": self.ticket_id, **payload}))
        return self

    def triaged(self, at: datetime, category: str = "network", priority: str = "P3") -> Stream:
        return self.add("ticket.triaged", at, category=category, priority=priority)

    def assigned(self, at: datetime, level: str = "L1", agent: str | None = "anna") -> Stream:
        return self.add("ticket.assigned", at, level=level, group_id=f"g-{level}",
                        group_name=f"Group {level}", agent_id=agent, sequence=1)

    def answered(self, at: datetime) -> Stream:
        return self.add("ticket.message_added", at, author="agent", visibility="public",
                        at=at.isoformat(), body="x")

    def escalated(self, at: datetime, kind: str = "manual") -> Stream:
        return self.add("ticket.escalated", at, from_level="L1", to_level="L2", kind=kind,
                        to_group="g-L2", reason="x", sequence=2)

    def resolved(self, at: datetime) -> Stream:
        return self.add("ticket.resolved", at, resolution="done")

    def rated(self, at: datetime, score: int) -> Stream:
        return self.add("ticket.rated", at, score=score)

    def sla(self, at: datetime, metric: str, outcome: str) -> Stream:
        return self.add(f"sla.{outcome}", at, metric=metric, clock_id="c", due_at=at.isoformat())


def l1_fix() -> Stream:
    return (Stream("a").triaged(T0).assigned(T0).answered(T0 + H).resolved(T0 + 2 * H)
            .rated(T0 + 3 * H, 5).sla(T0 + 2 * H, "resolution", "met"))


def escalated_and_breached() -> Stream:
    return (Stream("b", channel="web", department="Sales").triaged(T0, priority="P1")
            .assigned(T0).answered(T0 + 3 * H).escalated(T0 + 4 * H, "automatic")
            .assigned(T0 + 4 * H, "L2", "bruno").sla(T0 + 4 * H, "level_time_box", "breached")
            .resolved(T0 + 30 * H).rated(T0 + 31 * H, 2))


def test_facts_of_a_first_line_fix() -> None:
    facts = facts_of("a", l1_fix().events)
    assert (facts.channel, facts.category, facts.priority, facts.level, facts.agent) == (
        "email", "network", "P3", "L1", "anna")
    assert facts.time_to_first_response_s == 3600
    assert facts.time_to_resolution_s == 7200
    assert facts.first_contact_resolution
    assert facts.sla == {"resolution": "met"}
    assert facts.rating == 5


def test_facts_of_an_escalated_breached_ticket() -> None:
    facts = facts_of("b", escalated_and_breached().events)
    assert facts.levels_passed == ("L1", "L2")
    assert (facts.escalations_automatic, facts.escalations_manual) == (1, 0)
    assert facts.escalated_from == ("L1",)
    assert not facts.first_contact_resolution
    assert facts.sla == {"level_time_box": "breached"}
    assert (facts.level, facts.agent, facts.department) == ("L2", "bruno", "Sales")


@pytest.mark.parametrize("seed", range(5))
def test_out_of_order_and_repeated_events_give_the_same_facts(seed: int) -> None:
    stream = escalated_and_breached().events
    shuffled = [*stream, *random.Random(seed).sample(stream, 4)]  # four copies
    random.Random(seed).shuffle(shuffled)
    assert facts_of("b", shuffled) == facts_of("b", stream)


def test_a_met_target_after_a_breach_stays_breached_and_a_reopening_undoes_the_fix() -> None:
    stream = l1_fix().sla(T0 + H, "first_response", "breached").sla(
        T0 + 2 * H, "first_response", "met")
    stream.add("ticket.reopened", T0 + 5 * H).resolved(T0 + 6 * H)
    facts = facts_of("a", stream.events)
    assert facts.sla["first_response"] == "breached"
    assert facts.reopens == 1
    assert not facts.first_contact_resolution
    assert facts.time_to_resolution_s == 6 * 3600


def totals(*streams: Stream) -> Counter[str]:
    summed: Counter[str] = Counter()
    for stream in streams:
        for counts in contribution(facts_of(stream.ticket_id, stream.events)).values():
            summed.update(counts)
    return summed


def buckets_of(*streams: Stream) -> list[dict[str, Any]]:
    merged: dict[str, Counter[str]] = {}
    for stream in streams:
        for key, counts in contribution(facts_of(stream.ticket_id, stream.events)).items():
            merged.setdefault(key, Counter()).update(counts)
    return [{**bucket_fields(key), "counts": dict(c)} for key, c in merged.items()]


def test_the_figures_of_two_tickets() -> None:
    report = kpis.report(buckets_of(l1_fix(), escalated_and_breached()), [], 0)
    assert (report["created"], report["resolved"]) == (2, 2)
    assert report["first_contact_resolution"] == 0.5
    assert report["escalation"]["rate"] == 0.5
    assert report["escalation"]["automatic"] == 1
    assert report["escalation"]["per_level"]["L1"] == 0.5
    assert report["escalation"]["per_level"]["L2"] == 0.0
    assert report["sla"]["resolution"] == {"met": 1, "breached": 0, "compliance": 1.0}
    assert report["sla"]["level_time_box"]["compliance"] == 0.0
    assert report["satisfaction"]["average"] == 3.5
    assert report["satisfaction"]["distribution"]["5"] == 1
    assert report["satisfaction"]["response_rate"] == 1.0
    assert report["first_response"]["mean_s"] == 2 * 3600
    assert report["resolution"]["count"] == 2
    assert [d["department"] for d in report["departments_by_sla_breaches"]] == ["Sales",
                                                                               "Finance"]
    assert {a["agent"]: a["solved"] for a in report["agents"]} == {"anna": 1, "bruno": 1}
    assert report["backlog"][-1]["open"] == 0
    assert [d["created"] for d in report["per_day"]] == [2, 0]


def test_filters_pick_the_buckets_of_one_dimension_value() -> None:
    buckets = buckets_of(l1_fix(), escalated_and_breached())
    web = [b for b in buckets if kpis.matches(b, {"channel": "web"})]
    assert kpis.report(web, [], 0)["created"] == 1
    assert set(DIMENSIONS) >= {"channel", "agent", "department", "customer_type"}


def test_a_change_of_facts_moves_only_the_difference() -> None:
    stream = Stream("c").triaged(T0).assigned(T0)
    before = contribution(facts_of("c", stream.events))
    stream.resolved(T0 + H)
    after = contribution(facts_of("c", stream.events))
    moved = delta(before, after)
    assert sum(c.get("resolved", 0) for c in moved.values()) == 1
    assert sum(c.get("created", 0) for c in moved.values()) == 0
    assert delta(after, after) == {}
    # A change of dimension moves the ticket from one bucket to another.
    stream.add("ticket.priority_changed", T0 + 2 * H, to_priority="P1", reason="x")
    moved = delta(after, contribution(facts_of("c", stream.events)))
    assert sorted(c["created"] for c in moved.values() if "created" in c) == [-1, 1]


def test_a_corrected_category_is_the_one_the_ticket_counts_under() -> None:
    stream = Stream("r").triaged(T0, category="general").assigned(T0)
    before = contribution(facts_of("r", stream.events))
    stream.add("ticket.recategorised", T0 + H, from_category="general",
               to_category="printer", reason="a jammed printer", actor="carla")
    facts = facts_of("r", stream.events)
    assert facts.category == "printer"
    moved = delta(before, contribution(facts))
    assert sorted(c["created"] for c in moved.values() if "created" in c) == [-1, 1]


def test_a_ticket_whose_creation_has_not_arrived_adds_nothing_yet() -> None:
    stream = Stream("d").triaged(T0).resolved(T0 + H)
    late = [e for e in stream.events if e.type != "ticket.created"]
    assert contribution(facts_of("d", late)) == {}
    assert totals(stream)["created"] == 1


def test_percentiles_from_the_histogram() -> None:
    counts = {"response_bin_0": 50, "response_bin_4": 50}  # <= 60 s, then 1800-3600 s
    assert kpis.percentile(counts, "response", 0.5) == 60
    assert kpis.percentile(counts, "response", 0.9) == 1800 + 1800 * 0.8
    assert kpis.percentile({}, "response", 0.5) is None


def test_each_figure_against_the_previous_period() -> None:
    now = buckets_of(l1_fix(), escalated_and_breached())
    before = buckets_of(l1_fix())
    change = kpis.report(now, before, 0)["change"]
    assert change["created"] == {"now": 2, "before": 1, "change": 1}
    assert change["satisfaction"]["change"] == -1.5


def test_business_times_come_from_slas_stopped_clocks_and_a_reopening_forgets_one() -> None:
    stream = l1_fix()
    stream.add("sla.clock_stopped", T0 + H, metric="first_response", clock_id="r",
               business_s=1800.0, target_s=3600, met=True, stopped_at=(T0 + H).isoformat())
    stream.add("sla.clock_stopped", T0 + 2 * H, metric="resolution", clock_id="s",
               business_s=5400.0, target_s=7200, met=True,
               stopped_at=(T0 + 2 * H).isoformat())
    facts = facts_of("a", stream.events)
    assert facts.business_s == {"first_response": 1800.0, "resolution": 5400.0}
    report = kpis.report(buckets_of(stream), [], 0)
    assert report["first_response"]["business"]["mean_s"] == 1800
    assert report["resolution"]["business"]["count"] == 1
    assert report["resolution"]["mean_s"] == 7200  # wall-clock beside it
    reopened = stream.add("ticket.reopened", T0 + 4 * H)
    assert "resolution" not in facts_of("a", reopened.events).business_s
    assert kpis.report(buckets_of(Stream("z")), [], 0)["resolution"]["business"]["count"] == 0
