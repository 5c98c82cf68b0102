"""Business time checked against an oracle of our own that shares no code with the service.

The oracle defines an open interval by what a wall clock shows: it opens at the first
instant the zone's clocks show the opening time on that day, and closes at the first
instant they show the closing time (found by stepping through UTC minutes and reading
the clock with zoneinfo), unless the day is a holiday (the ``holidays`` package, or the
calendar's own list). So a time in a spring-forward gap opens when the clocks jump past
it, and a fall-back hour counts its first pass. Every calendar boundary and every UTC
offset here is a whole minute, so stepping by minutes finds each boundary exactly; the
instants measured can have any microsecond.

Properties, over calendars in several zones (half-hour offsets, a 30-minute DST shift,
southern-hemisphere DST), across DST changes and holidays, with sub-second starts:
business time equals the oracle's, adding business time equals the oracle's and is its
exact inverse at the earliest such instant, and a clock's verdict at its due instant is
"met" by either path. The examples of issue 24 are pinned below.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays as holiday_data
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sportello_contracts.enums import Priority, SlaMetric, SupportLevel
from sportello_sla import domain
from sportello_sla.defaults import DEFAULT_POLICY, OFFICE_HOURS, ROUND_THE_CLOCK
from sportello_sla.domain import Calendar, InvalidSla, NaiveDatetime
from sportello_sla.store import calendar_document, calendar_from

US = timedelta(microseconds=1)
MINUTE = timedelta(minutes=1)
ZONES = ["Europe/Rome", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
         "Australia/Lord_Howe", "Australia/Adelaide", "UTC"]
HOLIDAYS = [date(2025, 12, 8), date(2026, 12, 25), date(2026, 3, 29), date(2026, 11, 1)]


def clock_changes(zone_name: str) -> list[tuple[datetime, time]]:
    """Each instant in 2026 at which the zone's clocks change, with the wall time they
    showed just before: where gaps and repeated hours are."""
    zone, found = ZoneInfo(zone_name), []
    step = datetime(2026, 1, 1, tzinfo=UTC)
    while step.year == 2026:
        if (step + MINUTE * 15).astimezone(zone).utcoffset() != step.astimezone(zone).utcoffset():
            change = step + MINUTE * 15
            found.append((change, (change - MINUTE).astimezone(zone).time()))
        step += MINUTE * 15
    return found or [(datetime(2026, 11, 30, tzinfo=UTC), time(0))]


CHANGES = {zone: clock_changes(zone) for zone in ZONES}
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


# --- the oracle ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def first_showing(zone_name: str, day: date, wall: time) -> datetime:
    """The first UTC instant at which the zone's clocks show ``wall`` or later on ``day``."""
    zone = ZoneInfo(zone_name)
    as_if_utc = datetime.combine(day, wall, tzinfo=UTC)
    # The zone's offsets around that day bound where the instant can be.
    offsets = [(as_if_utc + timedelta(hours=h)).astimezone(zone).utcoffset() for h in (-36, 36)]
    assert all(o is not None for o in offsets)
    lo = as_if_utc - max(o for o in offsets if o is not None) - timedelta(hours=2)
    hi = as_if_utc - min(o for o in offsets if o is not None) + timedelta(hours=2)
    step = lo.replace(second=0, microsecond=0)
    while step <= hi:
        shown = step.astimezone(zone)
        if shown.date() > day or (shown.date() == day and shown.time() >= wall):
            return step
        step += MINUTE
    raise AssertionError(f"{zone_name} never shows {wall} on {day}")


def oracle_holiday(calendar: Calendar, day: date) -> bool:
    if day in calendar.holidays:
        return True
    country = calendar.holiday_country
    return country is not None and day in holiday_data.country_holidays(country, years=day.year)


def oracle_intervals(calendar: Calendar, first: date,
                     last: date) -> list[tuple[datetime, datetime]]:
    spans = []
    day = first
    while day <= last:
        if not oracle_holiday(calendar, day):
            walls: list[tuple[time, time | None]] = (
                [(time(0), None)] if calendar.always_open
                else list(sorted(calendar.hours.get(day.weekday(), ()))))
            for opens, closes in walls:
                lo = first_showing(calendar.timezone, day, opens)
                hi = (first_showing(calendar.timezone, day + timedelta(days=1), time(0))
                      if closes is None else first_showing(calendar.timezone, day, closes))
                if lo < hi:
                    spans.append((lo, hi))
        day += timedelta(days=1)
    return spans


def oracle_business(calendar: Calendar, start: datetime, end: datetime) -> timedelta:
    total = timedelta(0)
    for lo, hi in oracle_intervals(calendar, (start - timedelta(days=2)).date(),
                                   (end + timedelta(days=2)).date()):
        overlap = min(hi, end) - max(lo, start)
        if overlap > timedelta(0):
            total += overlap
    return total


def oracle_add(calendar: Calendar, start: datetime, amount: timedelta) -> datetime | None:
    """The first instant by which ``amount`` of open time has passed (None beyond 40 days)."""
    if amount <= timedelta(0):
        return start
    remaining = amount
    day = (start - timedelta(days=2)).date()
    for _ in range(8):
        for lo, hi in oracle_intervals(calendar, day, day + timedelta(days=4)):
            lo = max(lo, start)
            if hi <= lo:
                continue
            if hi - lo >= remaining:
                return lo + remaining
            remaining -= hi - lo
        day += timedelta(days=5)
    return None


# --- generated calendars and instants ------------------------------------------------------

walls = st.integers(min_value=0, max_value=23 * 60 + 58).map(
    lambda m: time(m // 60, m % 60))


def near(wall: time) -> st.SearchStrategy[time]:
    """Wall times within an hour and a half of ``wall``: in, around and across the gap or
    the repeated hour of a clock change."""
    minutes = wall.hour * 60 + wall.minute
    return st.integers(min_value=max(0, minutes - 90), max_value=min(23 * 60 + 58,
                                                                     minutes + 90)).map(
        lambda m: time(m // 60, m % 60))


@st.composite
def spans(draw: st.DrawFn, around: time) -> tuple[tuple[time, time], ...]:
    pick = st.one_of(walls, near(around), near(around))
    cuts = sorted(draw(st.sets(pick, min_size=0, max_size=4)))
    if len(cuts) % 2:
        cuts = cuts[:-1]
    return tuple((cuts[i], cuts[i + 1]) for i in range(0, len(cuts), 2))


@st.composite
def calendars_and_instants(draw: st.DrawFn) -> tuple[Calendar, datetime]:
    """A calendar, and an instant within three days of one of its zone's clock changes."""
    zone = draw(st.sampled_from(ZONES))
    change, wall = draw(st.sampled_from(CHANGES[zone]))
    offset = draw(st.integers(min_value=-3 * 86_400_000_000, max_value=3 * 86_400_000_000))
    start = change + timedelta(microseconds=offset)
    country = draw(st.sampled_from([None, None, "IT", "US"]))
    own = frozenset(draw(st.sets(st.sampled_from(
        [*HOLIDAYS, change.date(), (change + timedelta(days=1)).date()]), max_size=2)))
    if draw(st.integers(0, 5)) == 0:
        return Calendar("any", zone, always_open=True, holidays=own,
                        holiday_country=country), start
    hours = {day: draw(spans(wall)) for day in range(7)}
    if not any(hours.values()):
        hours[draw(st.integers(0, 6))] = ((time(9), time(17)),)
    return Calendar("any", zone, hours, own, country), start


amounts = st.integers(min_value=1, max_value=2 * 86_400_000_000).map(
    lambda us: timedelta(microseconds=us))


# --- properties --------------------------------------------------------------------------


@SETTINGS
@given(calendars_and_instants(), st.integers(min_value=0, max_value=5 * 86_400_000_000))
def test_business_time_is_the_oracles_to_the_microsecond(
    case: tuple[Calendar, datetime], length_us: int
) -> None:
    calendar, start = case
    end = start + timedelta(microseconds=length_us)
    assert domain.business_time(calendar, start, end) == oracle_business(calendar, start, end)


@SETTINGS
@given(calendars_and_instants(), amounts)
def test_adding_business_time_is_the_oracles_and_its_exact_inverse(
    case: tuple[Calendar, datetime], amount: timedelta
) -> None:
    calendar, start = case
    expected = oracle_add(calendar, start, amount)
    if expected is None:  # a sparse calendar: the oracle only looks 40 days ahead
        return
    due = domain.add_business_time(calendar, start, amount)
    assert due == expected
    assert domain.business_time(calendar, start, due) == amount
    # The earliest such instant: a microsecond before, the amount is not reached.
    assert domain.business_time(calendar, start, due - US) < amount


@SETTINGS
@given(calendars_and_instants(),
       st.lists(st.integers(min_value=1, max_value=6 * 3600_000_000), min_size=0, max_size=4),
       st.integers(min_value=60, max_value=86_400))
def test_a_clock_is_met_at_its_due_instant_and_breached_just_after(
    case: tuple[Calendar, datetime], gaps_us: list[int], target_s: int
) -> None:
    """Pauses and resumes at sub-second instants: the due instant is the oracle's, and at it
    both paths say met; a microsecond later the breach fires."""
    calendar, start = case
    policy = DEFAULT_POLICY
    clock = domain.start_clock("c", ticket_id="t", metric=SlaMetric.RESOLUTION,
                               priority=Priority.P1, policy=policy, started_at=start)
    assert clock is not None
    clock = domain.Clock(**{**clock.__dict__, "target_s": target_s})
    spent = timedelta(0)
    since = clock.started_at
    at = since
    for n, gap in enumerate(gaps_us):  # pause, resume, pause... the last one resumed
        at = at + timedelta(microseconds=gap)
        if n % 2 == 0:
            paused = domain.pause(clock, calendar, at)
            assert paused is not None
            spent += oracle_business(calendar, since, at)
            clock = paused
            if spent >= clock.target:
                return  # already late before the last resume: not what this checks
        else:
            resumed = domain.resume(clock, at)
            assert resumed is not None
            clock, since = resumed, resumed.running_since or at
    if clock.state == domain.ClockState.PAUSED:
        resumed = domain.resume(clock, at + US)
        assert resumed is not None
        clock, since = resumed, resumed.running_since or at
    assert clock.spent == spent
    expected = oracle_add(calendar, since, clock.target - spent)
    if expected is None:
        return
    due = domain.due_at(clock, calendar)
    assert due == expected
    # The timer's next look is the earliest firing still pending, warnings to give or
    # only the breach left (``next_fire_at`` computes that one instant alone).
    for state in (clock, domain.fire(clock, calendar, due)[0]):
        pending = domain.pending_firings(state, calendar)
        assert pending
        first = pending[0]
        assert domain.next_fire_at(state, calendar) == (
            first.fire_at + US if first.kind == "breach" else first.fire_at)
    stopped, met = domain.stop(clock, calendar, due)
    assert stopped.met is True
    assert met is not None
    fired, firings = domain.fire(clock, calendar, due)
    assert "breach" not in [f.kind for f in firings]
    assert not fired.breached
    _, later = domain.fire(clock, calendar, due + US)
    assert "breach" in [f.kind for f in later]
    late, _ = domain.stop(clock, calendar, due + US)
    assert late.met is False


# --- issue 24's examples, pinned -------------------------------------------------------------

ROME = ZoneInfo("Europe/Rome")


def z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_target_that_runs_exactly_to_a_closing_time_ends_at_that_closing_time() -> None:
    assert domain.add_business_seconds(OFFICE_HOURS, z("2026-11-26T08:00:00.1Z"),
                                       28_799.9) == z("2026-11-26T17:00:00Z")


def test_the_default_p4_resolution_started_on_a_holiday_is_due_on_the_right_day() -> None:
    clock = domain.start_clock("c", ticket_id="t", metric=SlaMetric.RESOLUTION,
                               priority=Priority.P4, policy=DEFAULT_POLICY,
                               started_at=z("2025-12-08T09:00:00.1Z"))
    assert clock is not None
    assert clock.target_s == 144_000
    due = domain.due_at(clock, OFFICE_HOURS)
    assert due == z("2025-12-15T17:00:00Z")
    firings = domain.pending_firings(clock, OFFICE_HOURS)
    assert [f.fire_at for f in firings if f.kind == "breach"] == [due]
    assert domain.next_fire_at(domain.fire(clock, OFFICE_HOURS, due)[0], OFFICE_HOURS) == (
        due + US)


def test_stopped_at_the_due_instant_after_pauses_is_met_and_no_breach_fires() -> None:
    start = z("2026-11-24T08:00:00Z")  # Tuesday 09:00 in Rome
    clock = domain.start_clock("c", ticket_id="t", metric=SlaMetric.LEVEL_TIME_BOX,
                               priority=Priority.P3, policy=DEFAULT_POLICY, started_at=start,
                               level=SupportLevel.L2)
    assert clock is not None
    for minutes in (7, 13, 29):  # thirds of a second that floats would sum inexactly
        at = start + timedelta(minutes=minutes, microseconds=333_333)
        paused = domain.pause(clock, OFFICE_HOURS, at)
        assert paused is not None
        resumed = domain.resume(paused, at + timedelta(minutes=1))
        assert resumed is not None
        clock = resumed
    due = domain.due_at(clock, OFFICE_HOURS)
    assert due is not None
    assert domain.stop(clock, OFFICE_HOURS, due)[0].met is True
    assert [f.kind for f in domain.fire(clock, OFFICE_HOURS, due)[1]] == ["warning", "warning"]


def sunday_only(opens: time, closes: time, zone: str = "Europe/Rome") -> Calendar:
    return Calendar("night", zone, {6: ((opens, closes),)})


def test_a_target_reached_at_closing_time_is_late_a_moment_after_though_no_more_counts() -> None:
    """Found by the property above: the business time stops growing at the close, so
    counting alone called a stop after the due instant "met" while the breach fired."""
    calendar = sunday_only(time(0, 0), time(0, 1))  # one minute a week
    clock = domain.start_clock("c", ticket_id="t", metric=SlaMetric.RESOLUTION,
                               priority=Priority.P1, policy=DEFAULT_POLICY,
                               started_at=z("2026-03-29T01:00:00Z"))
    assert clock is not None
    clock = domain.Clock(**{**clock.__dict__, "target_s": 60})
    due = domain.due_at(clock, calendar)
    assert due == z("2026-04-04T22:01:00Z")  # Sunday 00:01 in Rome, summer time
    assert domain.stop(clock, calendar, due)[0].met is True
    late, firing = domain.stop(clock, calendar, due + US)
    assert late.spent == late.target
    assert (late.met, firing) == (False, None)
    assert [f.kind for f in domain.fire(clock, calendar, due + US)[1]][-1] == "breach"


def test_hours_in_a_spring_forward_gap_are_placed_at_the_change() -> None:
    day = (z("2026-03-28T12:00:00Z"), z("2026-03-30T00:00:00Z"))
    assert domain.business_seconds(sunday_only(time(1, 30), time(2, 30)), *day) == 1800
    assert domain.business_seconds(sunday_only(time(2, 45), time(3, 15)), *day) == 900
    new_york = sunday_only(time(2, 30), time(4), "America/New_York")
    assert domain.add_business_seconds(new_york, z("2026-03-08T05:00:00Z"), 3600) == z(
        "2026-03-08T08:00:00Z")


def test_a_fall_back_hour_counts_its_first_pass() -> None:
    calendar = sunday_only(time(2, 15), time(2, 45))
    assert domain.business_seconds(calendar, z("2026-10-24T12:00:00Z"),
                                   z("2026-10-26T00:00:00Z")) == 1800


def test_instants_in_a_named_zone_are_subtracted_as_instants() -> None:
    start = datetime(2026, 10, 24, 12, tzinfo=ROME)
    end = datetime(2026, 10, 25, 12, tzinfo=ROME)  # the same wall time, 25 hours later
    assert domain.business_seconds(ROUND_THE_CLOCK, start, end) == 90_000
    assert domain.business_seconds(OFFICE_HOURS, start.astimezone(ZoneInfo("Asia/Tokyo")),
                                   end) == domain.business_seconds(OFFICE_HOURS, start, end)


@pytest.mark.parametrize("calendar", [OFFICE_HOURS, ROUND_THE_CLOCK])
def test_naive_datetimes_are_refused_on_every_calendar(calendar: Calendar) -> None:
    naive = datetime(2026, 11, 26, 9)
    with pytest.raises(NaiveDatetime, match="no time zone"):
        domain.business_seconds(calendar, naive, naive + timedelta(hours=1))
    with pytest.raises(NaiveDatetime, match="no time zone"):
        domain.add_business_seconds(calendar, naive, 60)


def test_a_calendars_seconds_survive_being_saved() -> None:
    calendar = Calendar("precise", "Europe/Rome", {0: ((time(8, 59, 30), time(17, 0, 15)),)})
    assert calendar_from(calendar_document(calendar)) == calendar


def test_always_open_with_holidays_honours_them() -> None:
    calendar = Calendar("24x7-it", "Europe/Rome", always_open=True, holiday_country="IT")
    christmas = datetime(2026, 12, 25, tzinfo=ROME)
    # Christmas Eve's last hour counts; the 25th and the 26th (Santo Stefano) do not.
    assert domain.business_seconds(calendar, christmas - timedelta(hours=1),
                                   christmas + timedelta(days=1, hours=1)) == 3600
    assert domain.add_business_seconds(calendar, christmas, 60) == datetime(
        2026, 12, 27, 0, 1, tzinfo=ROME)


def test_a_target_beyond_the_horizon_says_what_is_true() -> None:
    with pytest.raises(InvalidSla, match="of open time within 1098 days; the target needs"):
        domain.add_business_seconds(OFFICE_HOURS, z("2026-11-26T08:00:00Z"), 10 * 365 * 86_400)
    closed = Calendar("never", "UTC", {0: ((time(9), time(10)),)},
                      holidays=frozenset(date(2026, 11, 30) + timedelta(weeks=w)
                                         for w in range(200)))
    with pytest.raises(InvalidSla, match="has no open time within 1098 days"):
        domain.add_business_seconds(closed, z("2026-11-26T08:00:00Z"), 60)
