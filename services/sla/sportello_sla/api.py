"""SLA's internal HTTP API: a ticket's clocks, and the versioned policy with its calendars."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from sportello_contracts import utc_now
from sportello_contracts.enums import ContractTier, Priority, SlaMetric, SupportLevel
from sportello_runtime.http import ApiError
from sportello_sla import domain
from sportello_sla.domain import Calendar, InvalidSla, SlaPolicy, Targets
from sportello_sla.service import ClockKeeper

internal = APIRouter()


async def keeper_of(request: Request) -> ClockKeeper:
    keeper: ClockKeeper = request.app.state.keeper
    return keeper


KeeperDep = Annotated[ClockKeeper, Depends(keeper_of)]


class ClockView(BaseModel):
    clock_id: str
    metric: SlaMetric
    level: SupportLevel | None
    priority: Priority
    state: str
    calendar: str
    policy_version: int
    target_s: int
    elapsed_s: float = Field(description="Business time counted so far")
    remaining_s: float
    due_at: datetime | None = Field(description="None while paused or stopped")
    started_at: datetime
    stopped_at: datetime | None
    warned: list[int]
    breached: bool
    met: bool | None


class TicketSla(BaseModel):
    ticket_id: str
    clocks: list[ClockView]


@internal.get("/tickets/{ticket_id}/sla", response_model=TicketSla, tags=["clocks"])
async def ticket_sla(ticket_id: Annotated[str, Path(min_length=1, max_length=100)],
                     keeper: KeeperDep) -> TicketSla:
    """Every clock of the ticket: target, business time spent, time left, due time, state.
    The requester's time limit and the operators' views read this."""
    rows = await keeper.report(ticket_id, utc_now())
    if not rows and await keeper.store.ticket(ticket_id) is None:
        raise ApiError(404, "not_found", f"no SLA data for ticket {ticket_id}")
    return TicketSla(ticket_id=ticket_id, clocks=[ClockView(**row) for row in rows])


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


ClockTime = Annotated[time, WithJsonSchema({
    "type": "string", "pattern": r"^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$",
    "description": "A local time of day, HH:MM[:SS]"})]
"""An opening hour: local, so without the offset JSON Schema's `time` format demands."""


class CalendarIn(Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    timezone: str = Field(default="Europe/Rome", max_length=64)
    always_open: bool = False
    holiday_country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    holidays: list[date] = Field(default=[], max_length=400)
    hours: dict[int, list[tuple[ClockTime, ClockTime]]] = Field(
        default={}, description="Weekday (0 = Monday) -> open intervals, e.g. [['09:00','13:00']]"
    )


class TargetsIn(Model):
    first_response_s: int
    resolution_s: int
    calendar: str


class PolicyIn(Model):
    based_on_version: int | None = None
    calendars: list[CalendarIn] = Field(min_length=1, max_length=50)
    targets: dict[Priority, TargetsIn]
    level_time_box_s: dict[SupportLevel, int] = {}
    tier_factor: dict[ContractTier, float] = {}
    warning_thresholds: list[int] = [75, 90]


class PolicyOut(PolicyIn):
    version: int


def policy_out(p: SlaPolicy) -> PolicyOut:
    return PolicyOut(
        version=p.version,
        calendars=[CalendarIn(name=c.name, timezone=c.timezone, always_open=c.always_open,
                              holiday_country=c.holiday_country, holidays=sorted(c.holidays),
                              hours={d: list(spans) for d, spans in c.hours.items()})
                   for c in p.calendars.values()],
        targets={pr: TargetsIn(first_response_s=t.first_response_s,
                               resolution_s=t.resolution_s, calendar=t.calendar)
                 for pr, t in p.targets.items()},
        level_time_box_s=dict(p.level_time_box_s), tier_factor=dict(p.tier_factor),
        warning_thresholds=list(p.warning_thresholds),
    )


@internal.get("/policy", response_model=PolicyOut, tags=["admin"])
async def get_policy(keeper: KeeperDep) -> PolicyOut:
    current = await keeper.store.policy()  # not the handlers' copy: an admin reads what is
    if current is None:
        raise ApiError(404, "not_found", "no SLA policy configured yet")
    return policy_out(current)


@internal.put("/policy", response_model=PolicyOut, status_code=201, tags=["admin"])
async def put_policy(body: PolicyIn, keeper: KeeperDep, request: Request) -> PolicyOut:
    """A new version of targets, time boxes and calendars. Running clocks keep the version
    their ticket started under; new tickets get this one."""
    current = await keeper.store.policy()
    if body.based_on_version is not None and current and body.based_on_version != current.version:
        raise ApiError(409, "conflict", f"version {current.version} was saved meanwhile",
                       field="based_on_version")
    policy = SlaPolicy(
        version=(current.version if current else 0) + 1,
        calendars={c.name: Calendar(c.name, c.timezone, {d: tuple(s) for d, s in c.hours.items()},
                                    frozenset(c.holidays), c.holiday_country, c.always_open)
                   for c in body.calendars},
        targets={pr: Targets(t.first_response_s, t.resolution_s, t.calendar)
                 for pr, t in body.targets.items()},
        level_time_box_s=body.level_time_box_s, tier_factor=body.tier_factor,
        warning_thresholds=tuple(body.warning_thresholds),
    )
    try:
        domain.check_policy(policy)
    except InvalidSla as exc:
        raise ApiError(422, "invalid", str(exc), field=exc.field) from exc
    if not await keeper.store.add_policy(policy, author=request.headers.get("x-actor"),
                                         now=utc_now()):
        raise ApiError(409, "conflict", "another version was saved meanwhile")
    keeper.forget_latest_policy()  # this replica's next ticket gets it at once
    return policy_out(policy)


