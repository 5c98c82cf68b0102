"""Business-time arithmetic and clocks, as pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from sportello_contracts.enums import ContractTier, Priority, SlaMetric, SupportLevel
from sportello_sla import domain
from sportello_sla.defaults import DEFAULT_POLICY, OFFICE_HOURS, ROUND_THE_CLOCK
from sportello_sla.domain import (
    Calendar,
    InvalidSla,
    add_business_seconds,
    business_seconds,
)

ROME = ZoneInfo("Europe/Rome")
H = 3600


def rome(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=ROME).astimezone(UTC)


# Office hours: Mon-Fri 09:00-13:00 and 14:00-18:00 Europe/Rome, Italian holidays.


def test_time_outside_office_hours_does_not_count() -> None:
    # Tuesday 17:00 -> Wednesday 10:00: one hour on Tuesday, one on Wednesday.
    assert business_seconds(OFFICE_HOURS, rome(2026, 11, 24, 17), rome(2026, 11, 25, 10)) == 2 * H
    # The lunch break does not count either.
    assert business_seconds(OFFICE_HOURS, rome(2026, 11, 24, 12), rome(2026, 11, 24, 15)) == 2 * H


def test_adding_business_time_crosses_the_night_and_the_weekend() -> None:
    friday_5pm = rome(2026, 11, 27, 17)
    assert add_business_seconds(OFFICE_HOURS, friday_5pm, 2 * H) == rome(2026, 11, 30, 10)
    assert add_business_seconds(OFFICE_HOURS, rome(2026, 11, 28, 11), 30 * 60) == rome(
        2026, 11, 30, 9, 30)  # from Saturday


def test_italian_public_holidays_are_closed() -> None:
    # Monday 7 December 2026 -> Wednesday 9 December: the 8th (Immacolata) is a holiday.
    assert business_seconds(OFFICE_HOURS, rome(2026, 12, 7, 18), rome(2026, 12, 9, 10)) == H
    # Christmas Eve (Thursday) at 17:00 + 2h: 25 and 26 closed, 27 Sunday -> Monday 28, 10:00.
    assert add_business_seconds(OFFICE_HOURS, rome(2026, 12, 24, 17), 2 * H) == rome(
        2026, 12, 28, 10)
    # Easter Monday 2027 is 29 March.
    assert business_seconds(OFFICE_HOURS, rome(2027, 3, 29, 8), rome(2027, 3, 29, 20)) == 0


def test_daylight_saving_changes_keep_wall_clock_office_hours() -> None:
    # Clocks go forward on Sunday 29 March 2026: Friday 27 is CET (UTC+1), Monday 30 CEST.
    friday = rome(2026, 3, 27, 17)
    monday_ten = rome(2026, 3, 30, 10)
    assert friday.hour == 16
    assert monday_ten.hour == 8
    assert add_business_seconds(OFFICE_HOURS, friday, 2 * H) == monday_ten
    # ... and back on Sunday 25 October 2026: a 24x7 clock sees the 25-hour day.
    start, end = rome(2026, 10, 25, 0), rome(2026, 10, 26, 0)
    assert business_seconds(ROUND_THE_CLOCK, start, end) == 25 * H
    assert business_seconds(OFFICE_HOURS, rome(2026, 10, 23, 9), rome(2026, 10, 26, 18)) == 16 * H


def test_a_calendar_remembers_its_days_and_answers_the_same_past_what_it_keeps() -> None:
    """``Calendar.open_on`` keeps each day's open intervals (a ticket's clocks ask for the
    same days dozens of times); a calendar that has answered for more days than it keeps
    still answers as a fresh one does, holidays and daylight-saving changes included."""
    used = Calendar("office", "Europe/Rome", OFFICE_HOURS.hours, holiday_country="IT")
    start = rome(2025, 1, 1, 8)
    for day in range(domain.OPEN_DAYS_KEPT + 40):
        at = start + timedelta(days=day)
        fresh = Calendar("office", "Europe/Rome", OFFICE_HOURS.hours, holiday_country="IT")
        assert business_seconds(used, at, at + timedelta(days=3)) == business_seconds(
            fresh, at, at + timedelta(days=3))
    assert 0 < len(used._open_spans) <= domain.OPEN_DAYS_KEPT  # it was cleared once
    assert used.open_on(date(2026, 12, 25)) == ()  # Christmas
    assert used.open_on(date(2026, 3, 29)) == ()  # a Sunday (and a DST change)
    assert len(used.open_on(date(2026, 3, 30))) == 2  # the Monday after: two spans


def test_a_round_the_clock_calendar_counts_everything() -> None:
    saturday_night = rome(2026, 11, 28, 23)
    assert add_business_seconds(ROUND_THE_CLOCK, saturday_night, 4 * H) == rome(2026, 11, 29, 3)


@pytest.mark.parametrize(
    ("calendar", "field"),
    [
        (Calendar("x", "Mars/Olympus", {0: ((time(9), time(17)),)}), "timezone"),
        (Calendar("x", "Europe/Rome", {0: ((time(9), time(13)), (time(12), time(18)))}), "hours.0"),
        (Calendar("x", "Europe/Rome", {0: ((time(18), time(9)),)}), "hours.0"),
        (Calendar("x", "Europe/Rome", {}), "hours"),
        (Calendar("x", "Europe/Rome", {0: ((time(9), time(17)),)}, holiday_country="XX"),
         "holiday_country"),
    ],
)
def test_calendars_that_cannot_work_are_refused(calendar: Calendar, field: str) -> None:
    with pytest.raises(InvalidSla) as refused:
        domain.check_calendar(calendar)
    assert refused.value.field == field


def test_policies_refuse_negative_targets_and_unknown_calendars() -> None:
    from dataclasses import replace

    domain.check_policy(DEFAULT_POLICY)
    bad = dict(DEFAULT_POLICY.targets)
    bad[Priority.P3] = domain.Targets(-5, 100, "office-hours")
    with pytest.raises(InvalidSla, match="positive"):
        domain.check_policy(replace(DEFAULT_POLICY, targets=bad))
    bad[Priority.P3] = domain.Targets(60, 100, "moon-time")
    with pytest.raises(InvalidSla, match="unknown calendar"):
        domain.check_policy(replace(DEFAULT_POLICY, targets=bad))
    with pytest.raises(InvalidSla, match="time box"):
        domain.check_policy(replace(DEFAULT_POLICY, level_time_box_s={SupportLevel.L1: 0}))


# --- clocks --------------------------------------------------------------------------------


def l1_clock(started: datetime) -> domain.Clock:
    clock = domain.start_clock("t-1:level_time_box:L1:1", ticket_id="t-1",
                               metric=SlaMetric.LEVEL_TIME_BOX, priority=Priority.P3,
                               policy=DEFAULT_POLICY, started_at=started, level=SupportLevel.L1)
    assert clock is not None
    return clock


def test_a_clock_warns_at_75_and_90_percent_then_breaches_once() -> None:
    start = rome(2026, 11, 24, 10)  # Tuesday, L1 time box 20 minutes of office time
    clock = l1_clock(start)
    firings = domain.pending_firings(clock, OFFICE_HOURS)
    assert [(f.kind, f.threshold, f.fire_at) for f in firings] == [
        ("warning", 75, start + timedelta(minutes=15)),
        ("warning", 90, start + timedelta(minutes=18)),
        ("breach", None, start + timedelta(minutes=20)),
    ]
    clock, fired = domain.fire(clock, OFFICE_HOURS, start + timedelta(minutes=16))
    assert [f.threshold for f in fired] == [75]
    clock, fired = domain.fire(clock, OFFICE_HOURS, start + timedelta(hours=2))
    assert [(f.kind, f.threshold) for f in fired] == [("warning", 90), ("breach", None)]
    assert domain.fire(clock, OFFICE_HOURS, start + timedelta(days=3)) == (clock, [])
    assert domain.next_fire_at(clock, OFFICE_HOURS) is None


def test_firing_ids_are_derived_from_clock_and_threshold() -> None:
    firing = domain.Firing("warning", 75, rome(2026, 1, 1), rome(2026, 1, 1))
    assert firing.event_id("c-1") == domain.Firing("warning", 75, rome(2027, 1, 1),
                                                   rome(2027, 1, 1)).event_id("c-1")
    assert firing.event_id("c-1") != firing.event_id("c-2")


def test_a_firing_announced_twice_is_the_same_event() -> None:
    """Protection: the derived event id in ``announce``. A replica that fires, publishes
    and dies before saving leaves the firing due; the next replica announces it again,
    and consumers must see the same event (their dedupe drops it), not a second breach."""
    clock = domain.start_clock("t:resolution:0", ticket_id="t", metric=SlaMetric.RESOLUTION,
                               priority=Priority.P1, policy=DEFAULT_POLICY,
                               started_at=rome(2026, 1, 1))
    assert clock is not None
    late = rome(2026, 1, 3)
    first = domain.announce(*domain.fire(clock, ROUND_THE_CLOCK, late))
    again = domain.announce(*domain.fire(clock, ROUND_THE_CLOCK, late))
    assert [e.type for e in first.events] == ["sla.warning", "sla.warning", "sla.breached"]
    assert [e.event_id for e in first.events] == [e.event_id for e in again.events]
    assert len({e.event_id for e in first.events}) == 3


def test_pauses_stop_the_clock_and_push_the_due_time() -> None:
    start = rome(2026, 11, 24, 10)
    clock = l1_clock(start)
    paused = domain.pause(clock, OFFICE_HOURS, start + timedelta(minutes=10))
    assert paused is not None
    assert paused.elapsed_s == 600
    assert domain.due_at(paused, OFFICE_HOURS) is None
    assert domain.fire(paused, OFFICE_HOURS, start + timedelta(hours=5)) == (paused, [])
    resumed = domain.resume(paused, rome(2026, 11, 24, 17, 55))  # the customer answers late
    assert resumed is not None
    # 10 minutes left: 5 today until 18:00, 5 tomorrow from 09:00.
    assert domain.due_at(resumed, OFFICE_HOURS) == rome(2026, 11, 25, 9, 5)


def test_stopping_in_time_is_met_late_is_not() -> None:
    start = rome(2026, 11, 24, 10)
    stopped, met = domain.stop(l1_clock(start), OFFICE_HOURS, start + timedelta(minutes=12))
    assert met is not None
    assert met.kind == "met"
    assert stopped.met is True
    late, none = domain.stop(l1_clock(start), OFFICE_HOURS, start + timedelta(minutes=25))
    assert none is None
    assert late.met is False


def test_a_stopped_clock_tells_the_business_time_it_counted_met_or_not() -> None:
    start = rome(2026, 11, 24, 17, 55)  # five minutes before closing, then overnight
    late, _ = domain.stop(l1_clock(start), OFFICE_HOURS, rome(2026, 11, 25, 9, 20))
    told = domain.stopped_told(late)
    assert told.type == "sla.clock_stopped"
    assert told.payload["business_s"] == 25 * 60  # 17:55-18:00 and 09:00-09:20
    assert told.payload["met"] is False
    assert domain.stopped_told(late).event_id == told.event_id  # told twice: one event


def test_priority_change_moves_the_due_time_and_keeps_time_spent() -> None:
    start = rome(2026, 11, 27, 17)  # Friday 17:00
    clock = domain.start_clock("t-1:resolution", ticket_id="t-1", metric=SlaMetric.RESOLUTION,
                               priority=Priority.P3, policy=DEFAULT_POLICY, started_at=start)
    assert clock is not None
    p1 = DEFAULT_POLICY.targets[Priority.P1]
    raised = domain.retarget(clock, OFFICE_HOURS, start + timedelta(minutes=30),
                             target_s=p1.resolution_s, priority=Priority.P1, calendar=p1.calendar)
    assert raised is not None
    assert raised.elapsed_s == 1800
    # P1 runs round the clock: 4 hours minus the 30 minutes already spent.
    assert domain.due_at(raised, ROUND_THE_CLOCK) == start + timedelta(hours=4)


def test_business_contract_tiers_tighten_targets() -> None:
    gold = DEFAULT_POLICY.target_s(SlaMetric.RESOLUTION, Priority.P2, ContractTier.GOLD)
    none = DEFAULT_POLICY.target_s(SlaMetric.RESOLUTION, Priority.P2, None)
    assert gold is not None
    assert none is not None
    assert gold < none


def test_a_clock_started_after_a_resolution_was_handled_stops_where_it_should() -> None:
    clock = domain.start_clock("t:level_time_box:L1:1", ticket_id="t",
                               metric=SlaMetric.LEVEL_TIME_BOX, priority=Priority.P2,
                               policy=DEFAULT_POLICY, started_at=rome(2026, 1, 1),
                               level=SupportLevel.L1)
    assert clock is not None
    open_ticket = domain.SlaTicket("t")
    assert domain.resolution_passed(open_ticket, clock) is None
    resolved_later = domain.SlaTicket("t", resolved_at=rome(2026, 1, 2), resolved=True)
    assert domain.resolution_passed(resolved_later, clock) == rome(2026, 1, 2)
    reopened_since = domain.SlaTicket("t", resolved_at=rome(2026, 1, 2), resolved=False)
    assert domain.resolution_passed(reopened_since, clock) == rome(2026, 1, 2)  # facts late
    resolved_before = domain.SlaTicket("t", resolved_at=rome(2025, 12, 31), resolved=True)
    assert domain.resolution_passed(resolved_before, clock) == clock.started_at
    reopened_before = domain.SlaTicket("t", resolved_at=rome(2025, 12, 31), resolved=False)
    assert domain.resolution_passed(reopened_before, clock) is None  # a new assignment
