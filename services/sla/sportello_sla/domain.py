"""SLA rules: business calendars, business-time arithmetic, policies and clocks. No I/O.

A clock measures one target of one ticket (first response, resolution, or the
time box of the support level holding it) in business time: only the open
hours of its calendar count, and nothing counts while it is paused. It warns
at thresholds of its target, breaches once, and is met when stopped in time.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holiday_data

from sportello_contracts import EventEnvelope, new_event
from sportello_contracts.enums import ContractTier, Priority, SlaMetric, SupportLevel
from sportello_contracts.events import (
    SlaBreached,
    SlaClockStopped,
    SlaMet,
    SlaTimeLimitSet,
    SlaWarning,
)
from sportello_runtime.change import Change

MAX_SPAN_DAYS = 3 * 366
"""Business-time walks stop here: a target that cannot be reached in three years is a bug."""


PRODUCER = "sla"


class InvalidSla(ValueError):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# --- calendars --------------------------------------------------------------------------


OPEN_DAYS_KEPT = 1024
"""Days of open intervals a calendar remembers (about three years of them)."""


@dataclass(frozen=True)
class Calendar:
    """Open hours per weekday (0 = Monday) in a time zone, minus holidays; or always open."""

    name: str
    timezone: str = "Europe/Rome"
    hours: Mapping[int, tuple[tuple[time, time], ...]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()
    holiday_country: str | None = None
    always_open: bool = False
    _open_spans: dict[date, tuple[tuple[datetime, datetime], ...]] = field(
        default_factory=dict, init=False, compare=False, repr=False)
    """``open_on``'s answers: a ticket's clocks ask for the same few days dozens of times
    (each target, each threshold, each next firing), and the zone's arithmetic is most
    of SLA's own work on a clock."""

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def open_on(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The day's open intervals in UTC; none on a holiday."""
        spans = self._open_spans.get(day)
        if spans is None:
            if len(self._open_spans) >= OPEN_DAYS_KEPT:
                self._open_spans.clear()
            spans = () if self.is_holiday(day) else tuple(_open_on(self, day, self.zone))
            self._open_spans[day] = spans
        return spans

    def is_holiday(self, day: date) -> bool:
        if day in self.holidays:
            return True
        return self.holiday_country is not None and day in _country_holidays(
            self.holiday_country, day.year
        )


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=256)
def _country_holidays(country: str, year: int) -> frozenset[date]:
    return frozenset(holiday_data.country_holidays(country, years=year))


def check_calendar(calendar: Calendar) -> None:
    try:
        _zone(calendar.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSla(f"unknown time zone {calendar.timezone!r}", field="timezone") from exc
    if calendar.holiday_country is not None:
        try:
            holiday_data.country_holidays(calendar.holiday_country, years=2026)
        except NotImplementedError as exc:
            raise InvalidSla(f"no holiday data for {calendar.holiday_country!r}",
                             field="holiday_country") from exc
    if calendar.always_open:
        return
    if not any(calendar.hours.values()):
        raise InvalidSla("a calendar needs open hours, or always_open", field="hours")
    for weekday, intervals in calendar.hours.items():
        if not 0 <= weekday <= 6:
            raise InvalidSla(f"weekday {weekday} is not 0 (Monday) to 6 (Sunday)", field="hours")
        ordered = sorted(intervals)
        for start, end in ordered:
            if start >= end:
                raise InvalidSla(f"weekday {weekday}: {start:%H:%M} is not before {end:%H:%M}",
                                 field=f"hours.{weekday}")
        for (_, first_end), (second_start, _) in itertools.pairwise(ordered):
            if second_start < first_end:
                raise InvalidSla(f"weekday {weekday}: open hours overlap", field=f"hours.{weekday}")


MICROSECOND = timedelta(microseconds=1)


class NaiveDatetime(InvalidSla):
    """Business time needs instants: a datetime without a zone names none."""


def utc(moment: datetime, what: str = "instant") -> datetime:
    """``moment`` in UTC, whatever aware zone it came in (subtracting in a named zone would
    count wall-clock time across a DST change); a naive datetime is refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveDatetime(f"{what} {moment.isoformat()} has no time zone: pass an aware "
                            "datetime (UTC or a named zone)", field=what)
    return moment.astimezone(UTC)


def wall_clock_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The UTC instant at which the zone's clocks show ``wall`` on ``day``.

    A wall time in a spring-forward gap never happens: it is placed at the instant the
    clocks change (an office opening at 02:30 on that night opens when the clocks jump to
    03:00). A wall time in a fall-back hour happens twice: the first occurrence counts.
    """
    local = datetime.combine(day, wall, tzinfo=zone)  # fold=0: the first occurrence
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    # In a gap: the two readings of the wall time lie on either side of the change.
    before, after = sorted((instant, local.replace(fold=1).astimezone(UTC)))
    new_offset = after.astimezone(zone).utcoffset()
    while after - before > MICROSECOND:
        middle = before + (after - before) // 2
        if middle.astimezone(zone).utcoffset() == new_offset:
            after = middle
        else:
            before = middle
    return after


def open_intervals(calendar: Calendar, start: datetime, end: datetime
                   ) -> Iterator[tuple[datetime, datetime]]:
    """The calendar's open intervals (UTC) that overlap [start, end), in order."""
    start, end = utc(start, "start"), utc(end, "end")
    if start >= end:
        return
    has_holidays = bool(calendar.holidays or calendar.holiday_country)
    if calendar.always_open and not has_holidays:
        yield start, end
        return
    zone = calendar.zone
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    while day <= last:
        for lo, hi in calendar.open_on(day):
            lo, hi = max(lo, start), min(hi, end)
            if lo < hi:
                yield lo, hi
        day += timedelta(days=1)


def _open_on(calendar: Calendar, day: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """A working day's open intervals in UTC: wall-clock hours in the zone, so DST shifts
    are the zone's business; always open means from midnight to midnight."""
    if calendar.always_open:
        return [(wall_clock_instant(day, time(0), zone),
                 wall_clock_instant(day + timedelta(days=1), time(0), zone))]
    spans = []
    for opens, closes in sorted(calendar.hours.get(day.weekday(), ())):
        lo, hi = wall_clock_instant(day, opens, zone), wall_clock_instant(day, closes, zone)
        if lo < hi:  # both in one spring-forward gap: nothing is open
            spans.append((lo, hi))
    return spans


def business_time(calendar: Calendar, start: datetime, end: datetime) -> timedelta:
    """Open time between two instants, exact to the microsecond."""
    total = timedelta(0)
    for lo, hi in open_intervals(calendar, start, end):
        total += hi - lo
    return total


def business_seconds(calendar: Calendar, start: datetime, end: datetime) -> float:
    return business_time(calendar, start, end).total_seconds()


def add_business_time(calendar: Calendar, start: datetime, amount: timedelta) -> datetime:
    """The earliest instant by which ``amount`` of open time has passed since ``start``:
    a target that runs exactly to a closing time ends at that closing time."""
    start = utc(start, "start")
    if amount <= timedelta(0):
        return start
    if calendar.always_open and not (calendar.holidays or calendar.holiday_country):
        return start + amount
    remaining = amount
    window = start
    for _ in range(MAX_SPAN_DAYS // 7 + 1):
        week_end = window + timedelta(days=7)
        for lo, hi in open_intervals(calendar, window, week_end):
            if hi - lo >= remaining:
                return lo + remaining
            remaining -= hi - lo
        window = week_end
    if remaining == amount:
        raise InvalidSla(f"calendar {calendar.name} has no open time within {MAX_SPAN_DAYS} "
                         "days", field="calendar")
    raise InvalidSla(f"calendar {calendar.name} has {amount - remaining} of open time within "
                     f"{MAX_SPAN_DAYS} days; the target needs {amount}", field="calendar")


def add_business_seconds(calendar: Calendar, start: datetime, seconds: float) -> datetime:
    """``add_business_time`` with seconds, rounded to the microsecond once, on entry."""
    return add_business_time(calendar, start, timedelta(seconds=seconds))


# --- policies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    first_response_s: int
    resolution_s: int
    calendar: str


@dataclass(frozen=True)
class SlaPolicy:
    version: int
    targets: Mapping[Priority, Targets]
    level_time_box_s: Mapping[SupportLevel, int]
    calendars: Mapping[str, Calendar]
    tier_factor: Mapping[ContractTier, float] = field(default_factory=dict)
    warning_thresholds: tuple[int, ...] = (75, 90)

    def calendar_for(self, priority: Priority) -> Calendar:
        return self.calendars[self.targets[priority].calendar]

    def target_s(self, metric: SlaMetric, priority: Priority, tier: ContractTier | None,
                 level: SupportLevel | None = None) -> int | None:
        if metric is SlaMetric.LEVEL_TIME_BOX:
            return self.level_time_box_s.get(level) if level else None
        targets = self.targets[priority]
        base = (targets.first_response_s if metric is SlaMetric.FIRST_RESPONSE
                else targets.resolution_s)
        factor = self.tier_factor.get(tier, 1.0) if tier else 1.0
        return max(1, round(base * factor))


def check_policy(policy: SlaPolicy) -> None:
    for name, calendar in policy.calendars.items():
        if name != calendar.name:
            raise InvalidSla(f"calendar {name} is named {calendar.name}", field="calendars")
        check_calendar(calendar)
    for priority in Priority:
        targets = policy.targets.get(priority)
        if targets is None:
            raise InvalidSla(f"no targets for {priority.value}", field=f"targets.{priority.value}")
        if targets.first_response_s <= 0 or targets.resolution_s <= 0:
            raise InvalidSla(f"{priority.value}: targets must be positive",
                             field=f"targets.{priority.value}")
        if targets.first_response_s > targets.resolution_s:
            raise InvalidSla(f"{priority.value}: first response cannot come after resolution",
                             field=f"targets.{priority.value}")
        if targets.calendar not in policy.calendars:
            raise InvalidSla(f"{priority.value}: unknown calendar {targets.calendar!r}",
                             field=f"targets.{priority.value}.calendar")
    for level, seconds in policy.level_time_box_s.items():
        if seconds <= 0:
            raise InvalidSla(f"the {level.value} time box must be positive",
                             field=f"level_time_box_s.{level.value}")
    for tier, factor in policy.tier_factor.items():
        if not 0 < factor <= 10:
            raise InvalidSla(f"tier {tier.value}: factor must be in (0, 10]",
                             field=f"tier_factor.{tier.value}")
    if any(not 0 < t < 100 for t in policy.warning_thresholds) or list(
        policy.warning_thresholds
    ) != sorted(set(policy.warning_thresholds)):
        raise InvalidSla("warning thresholds are increasing percentages between 1 and 99",
                         field="warning_thresholds")


# --- clocks --------------------------------------------------------------------------------


class ClockState:
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Clock:
    id: str
    ticket_id: str
    metric: SlaMetric
    priority: Priority
    policy_version: int
    calendar: str
    target_s: int
    started_at: datetime
    level: SupportLevel | None = None
    contract_tier: ContractTier | None = None
    state: str = ClockState.RUNNING
    spent: timedelta = timedelta(0)
    """Business time counted up to ``running_since`` (or until paused or stopped): exact,
    in whole microseconds, so sums over pauses never drift."""
    running_since: datetime | None = None
    thresholds: tuple[int, ...] = (75, 90)
    warned: tuple[int, ...] = ()
    breached: bool = False
    met: bool | None = None
    stopped_at: datetime | None = None
    version: int = 1

    @property
    def target(self) -> timedelta:
        return timedelta(seconds=self.target_s)

    @property
    def elapsed_s(self) -> float:
        return self.spent.total_seconds()


@dataclass(frozen=True)
class Firing:
    """Something a clock announces: a warning at a threshold, or its breach."""

    kind: str  # "warning" | "breach" | "met"
    threshold: int | None
    due_at: datetime
    fire_at: datetime

    def event_id(self, clock_id: str) -> uuid.UUID:
        """The same firing always gets the same id: a duplicate is harmless downstream."""
        return uuid.uuid5(_FIRING_NAMESPACE, f"{clock_id}:{self.kind}:{self.threshold}")


_FIRING_NAMESPACE = uuid.UUID("6f1d3c2e-5d1b-4a53-9a55-1b7b0c4a9e21")


def start_clock(
    clock_id: str, *, ticket_id: str, metric: SlaMetric, priority: Priority, policy: SlaPolicy,
    started_at: datetime, level: SupportLevel | None = None,
    contract_tier: ContractTier | None = None,
) -> Clock | None:
    """A running clock, or ``None`` when the policy sets no target for it."""
    target = policy.target_s(metric, priority, contract_tier, level)
    if target is None:
        return None
    started_at = stored(started_at)
    return Clock(
        id=clock_id, ticket_id=ticket_id, metric=metric, priority=priority,
        policy_version=policy.version, calendar=policy.targets[priority].calendar,
        target_s=target, started_at=started_at, level=level, contract_tier=contract_tier,
        running_since=started_at, thresholds=policy.warning_thresholds,
    )


def stored(moment: datetime) -> datetime:
    """``moment`` as MongoDB keeps it (UTC, whole milliseconds): a clock's instants are set
    this way, so a clock read back computes exactly what it computed before it was saved."""
    moment = utc(moment)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def spent_at(clock: Clock, calendar: Calendar, now: datetime) -> timedelta:
    """Business time the clock has counted by ``now``."""
    if clock.state == ClockState.RUNNING and clock.running_since is not None:
        return clock.spent + business_time(calendar, clock.running_since, now)
    return clock.spent


def elapsed(clock: Clock, calendar: Calendar, now: datetime) -> float:
    return spent_at(clock, calendar, now).total_seconds()


def instant_at(clock: Clock, calendar: Calendar, spent: timedelta) -> datetime | None:
    """When the running clock will have counted ``spent`` (None when not running)."""
    if clock.state != ClockState.RUNNING or clock.running_since is None:
        return None
    return add_business_time(calendar, clock.running_since, spent - clock.spent)


def due_at(clock: Clock, calendar: Calendar) -> datetime | None:
    return instant_at(clock, calendar, clock.target)


def pending_firings(clock: Clock, calendar: Calendar) -> list[Firing]:
    """What this clock will still announce, earliest first. A warning fires at its instant;
    the breach only after the due instant: at the due instant itself the target is met."""
    due = due_at(clock, calendar)
    if due is None or clock.breached:
        return []
    firings = []
    for threshold in clock.thresholds:
        if threshold not in clock.warned:
            at = instant_at(clock, calendar, clock.target * threshold // 100)
            assert at is not None
            firings.append(Firing("warning", threshold, due, at))
    firings.append(Firing("breach", None, due, due))
    return sorted(firings, key=lambda f: f.fire_at)


def _fires_by(firing: Firing, now: datetime) -> bool:
    return firing.fire_at < now if firing.kind == "breach" else firing.fire_at <= now


def next_fire_at(clock: Clock, calendar: Calendar) -> datetime | None:
    """When the timer engine should look at the clock next: a breach one microsecond
    after the due instant, the first instant at which it is late. Warnings come before the
    breach (thresholds are below 100 %), so only the lowest one still to give is computed:
    every instant costs a walk through the calendar, and every clock written asks."""
    if clock.breached or clock.state != ClockState.RUNNING or clock.running_since is None:
        return None
    still_to_warn = [t for t in clock.thresholds if t not in clock.warned]
    if still_to_warn and min(still_to_warn) < 100:
        return instant_at(clock, calendar, clock.target * min(still_to_warn) // 100)
    pending = pending_firings(clock, calendar)
    if not pending:
        return None
    first = pending[0]
    return first.fire_at + MICROSECOND if first.kind == "breach" else first.fire_at


def fire(clock: Clock, calendar: Calendar, now: datetime) -> tuple[Clock, list[Firing]]:
    """Everything due by ``now``, once: warnings that are late are still sent before the
    breach, so the requester's and the coordinators' views tell the whole story."""
    due = [f for f in pending_firings(clock, calendar) if _fires_by(f, now)]
    if not due:
        return clock, []
    warned = tuple(sorted({*clock.warned, *(f.threshold for f in due if f.threshold)}))
    breached = clock.breached or any(f.kind == "breach" for f in due)
    return replace(clock, warned=warned, breached=breached, version=clock.version + 1), due


def pause(clock: Clock, calendar: Calendar, now: datetime) -> Clock | None:
    if clock.state != ClockState.RUNNING:
        return None
    return replace(clock, state=ClockState.PAUSED, spent=spent_at(clock, calendar, now),
                   running_since=None, version=clock.version + 1)


def resume(clock: Clock, now: datetime) -> Clock | None:
    if clock.state != ClockState.PAUSED:
        return None
    return replace(clock, state=ClockState.RUNNING, running_since=stored(now),
                   version=clock.version + 1)


def stop(clock: Clock, calendar: Calendar, now: datetime) -> tuple[Clock, Firing | None]:
    """Stop for good; ``sla.met`` when the target was reached in time: at or before the
    due instant (the same rule as the breach's, which comes only after it)."""
    if clock.state == ClockState.STOPPED:
        return clock, None
    spent = spent_at(clock, calendar, now)
    in_time = _in_time(clock, calendar, spent, now)
    stopped = replace(clock, state=ClockState.STOPPED, spent=spent, running_since=None,
                      stopped_at=now, met=in_time, version=clock.version + 1)
    if not in_time:
        return stopped, None
    due = add_business_time(calendar, now, clock.target - spent)
    return stopped, Firing("met", None, due, now)


def _in_time(clock: Clock, calendar: Calendar, spent: timedelta, now: datetime) -> bool:
    """The target reached at or before the due instant. Counting alone does not say it: a
    target reached as business hours close counts no further after, yet a stop a moment
    later is late (the breach has fired)."""
    if clock.breached or spent > clock.target:
        return False
    if spent < clock.target:
        return True
    due = due_at(clock, calendar)
    return due is None or now <= due


def announce(clock: Clock, firings: Iterable[Firing]) -> Change[Clock]:
    """The clock and the events its firings cause (warning, breach, met), with ids derived
    from clock and threshold: a firing announced twice is one event downstream."""
    events = []
    for firing in firings:
        common: dict[str, Any] = {"ticket_id": clock.ticket_id, "clock_id": clock.id,
                                  "metric": clock.metric, "priority": clock.priority,
                                  "level": clock.level, "due_at": firing.due_at}
        payload: SlaWarning | SlaBreached | SlaMet
        if firing.kind == "warning":
            payload = SlaWarning(**common, threshold_percent=firing.threshold)
        elif firing.kind == "breach":
            payload = SlaBreached(**common)
        else:
            payload = SlaMet(**common, stopped_at=clock.stopped_at or firing.fire_at)
        events.append(new_event(payload, producer=PRODUCER, correlation_id=clock.ticket_id,
                                event_id=firing.event_id(clock.id), occurred_at=firing.fire_at))
    return Change(clock, tuple(events))


def stopped_told(clock: Clock) -> EventEnvelope:
    """The business time a stopped clock counted, met or not (analytics' business times).
    Its id derives from the clock and the stop: told twice, it is one event downstream."""
    stopped_at = clock.stopped_at or clock.started_at
    return new_event(
        SlaClockStopped(ticket_id=clock.ticket_id, clock_id=clock.id, metric=clock.metric,
                        priority=clock.priority, level=clock.level,
                        business_s=clock.spent.total_seconds(), target_s=clock.target_s,
                        met=bool(clock.met), stopped_at=stopped_at),
        producer=PRODUCER, correlation_id=clock.ticket_id, occurred_at=stopped_at,
        event_id=uuid.uuid5(_FIRING_NAMESPACE, f"{clock.id}:stopped:{stopped_at.isoformat()}"))


def time_limit_told(clock: Clock, calendar: Calendar, at: datetime) -> EventEnvelope:
    """The requester's time limit moved (see ``time_limit_moved``): intake tells them, and
    acknowledges a new ticket on it. ``at``: when the change happened, which orders them."""
    return new_event(
        SlaTimeLimitSet(ticket_id=clock.ticket_id, clock_id=clock.id, priority=clock.priority,
                        due_at=due_at(clock, calendar), as_of=at),
        producer=PRODUCER, correlation_id=clock.ticket_id)


def retarget(clock: Clock, old_calendar: Calendar, now: datetime, *, target_s: int,
             priority: Priority, calendar: str) -> Clock | None:
    """The priority changed: same clock, the new priority's target and calendar from now on
    (time already spent is kept); due times follow."""
    if clock.state == ClockState.STOPPED or (
        target_s == clock.target_s and priority is clock.priority and calendar == clock.calendar
    ):
        return None
    running = clock.state == ClockState.RUNNING
    return replace(clock, target_s=target_s, priority=priority, calendar=calendar,
                   spent=spent_at(clock, old_calendar, now),
                   running_since=stored(now) if running else None,
                   version=clock.version + 1)


# --- what SLA knows of a ticket -------------------------------------------------------------


@dataclass(frozen=True)
class SlaTicket:
    """What SLA knows of a ticket, written fact by fact as the events arrive.

    ``ticket.created``, ``ticket.triaged`` and ``ticket.assigned`` are published within
    milliseconds of each other and handled concurrently, so they arrive in any order. Each
    handler only records its fact; the clocks start as soon as what they need is known
    (``opening_clocks_due``, ``level_box_due``), whichever event completed it.
    """

    id: str
    created_at: datetime | None = None
    policy_version: int | None = None
    requester_tier: ContractTier | None = None
    """From ``ticket.created``: the level boxes' and reopenings' tier."""
    triage_tier: ContractTier | None = None
    """From ``ticket.triaged``: the first response's and first resolution's tier."""
    priority: Priority | None = None
    opening_clocks: bool = False
    """First response and resolution started (they start once)."""
    reopens: int = 0
    assigned_level: SupportLevel | None = None
    assigned_sequence: int = 0
    assigned_at: datetime | None = None
    """The newest assignment heard of (routing's sequence orders them)."""
    sequence: int = 0
    """The assignment whose level box is running (``level_clock``)."""
    level: SupportLevel | None = None
    level_clock: str | None = None
    resolved_at: datetime | None = None
    """The latest ``ticket.resolved``: a clock whose facts arrive after it (a late
    assignment) and that started before it stops where the resolution came."""
    resolved: bool = False
    """Resolved and not reopened since: nothing starts to run."""


def opening_clocks_due(ticket: SlaTicket) -> bool:
    """First response and resolution start at creation, once the priority is known."""
    return (not ticket.opening_clocks and ticket.created_at is not None
            and ticket.policy_version is not None and ticket.priority is not None)


def resolution_passed(ticket: SlaTicket, clock: Clock) -> datetime | None:
    """When a clock that started running after the resolution was handled must stop: at
    the resolution if it began before it (its facts came late), at its own start if the
    ticket is resolved still (nothing runs on a resolved ticket), else not at all."""
    if ticket.resolved_at is None or clock.state == ClockState.STOPPED:
        return None
    if clock.started_at < ticket.resolved_at:
        return ticket.resolved_at
    return clock.started_at if ticket.resolved else None


def level_box_due(ticket: SlaTicket) -> bool:
    """A newer assignment than the one whose box runs, and a priority to size it by."""
    return (ticket.assigned_sequence > ticket.sequence and ticket.assigned_level is not None
            and ticket.priority is not None and ticket.policy_version is not None)


def time_limit_moved(before: Clock | None, after: Clock, calendar: Calendar,
                     before_calendar: Calendar | None = None) -> bool:
    """Whether the requester's time limit changed: only a resolution clock's due instant
    is told to them (its start, a pause, a resume, a new priority)."""
    if after.metric is not SlaMetric.RESOLUTION or after.state == ClockState.STOPPED:
        return False
    if before is None:
        return True
    return due_at(before, before_calendar or calendar) != due_at(after, calendar)
