"""Queues, the ticket workspace, commands, attachments and the live stream.

Commands carry the version they were based on: ``If-Match`` with the workspace's
``ETag``. A stale one is a 412 whose body has the current ETag; a missing one a 428.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sportello_contracts.enums import Priority, SupportLevel, TicketStatus
from sportello_contracts.events import LONG, SHORT
from sportello_gateway.api.deps import (
    DeskDep,
    HubDep,
    PrincipalDep,
    SettingsDep,
    client_ip,
    from_services,
    guard,
)
from sportello_gateway.domain import desk as rules
from sportello_gateway.domain.desk import QueueQuery, Sort, View
from sportello_gateway.service.desk import (
    BadPrecondition,
    Command,
    Current,
    NoPrecondition,
    NotVisible,
    PartsUnavailable,
    Stale,
    line_view,
)
from sportello_runtime.http import ApiError

tickets = APIRouter(tags=["tickets"], dependencies=[Depends(guard)])

NUMBER = r"^[A-Z]{1,6}-\d{4}-\d{6,9}$"
SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
Number = Annotated[str, Path(pattern=NUMBER, description="The ticket's number, e.g. "
                                                          "HD-2026-000042")]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=40,
                                       description="The ETag of the workspace you acted on")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


@contextmanager
def desk_errors(number: str) -> Iterator[None]:
    try:
        with from_services():
            yield
    except NotVisible as exc:
        raise ApiError(404, "not_found", f"no ticket {number} that you can see") from exc
    except NoPrecondition as exc:
        raise ApiError(428, "precondition_required",
                       "send If-Match with the ETag of the workspace you acted on",
                       field="If-Match") from exc
    except Stale as exc:
        raise ApiError(412, "stale", f"{number} changed since you read it; read it again",
                       field="If-Match", extra={"etag": exc.etag},
                       headers={"ETag": exc.etag}) from exc
    except PartsUnavailable as exc:
        raise ApiError(503, "unavailable", f"needed now and unavailable: {exc}",
                       extra={"unavailable": exc.parts}, headers={"Retry-After": "5"}) from exc
    except BadPrecondition as exc:
        raise ApiError(400, "bad_request", str(exc), field="If-Match") from exc


# --- queues ----------------------------------------------------------------------------


class QueuePage(BaseModel):
    items: list[dict[str, Any]]
    next: str | None = Field(description="Pass as `next` for the following page")


@tickets.get("/api/tickets", response_model=QueuePage)
async def queue(
    principal: PrincipalDep, desk: DeskDep,
    view: View = View.OPEN,
    level: SupportLevel | None = None,
    group: Annotated[str | None, Query(pattern=SLUG)] = None,
    priority: Priority | None = None,
    category: Annotated[str | None, Query(pattern=SLUG)] = None,
    status: TicketStatus | None = None,
    requester: Annotated[str | None, Query(max_length=254,
                                           pattern=r"^[^\s@]+@[^\s@]+$")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100,
                                   description="Words in the subject, number or name")] = None,
    sort: Sort = Sort.PRIORITY,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    next: Annotated[str | None, Query(max_length=500)] = None,
) -> QueuePage:
    """Queues: `open` (default), `mine`, `groups`, `unassigned`, `breaching` (warned,
    breached or due within 30 minutes), `waiting` (for the customer), `all`; an agent or a
    vendor sees its groups' tickets only."""
    try:
        after = rules.decode_cursor(sort, next) if next else None
    except rules.BadCursor as exc:
        raise ApiError(400, "bad_cursor", str(exc), field="next") from exc
    query = QueueQuery(view=view, level=level, group_id=group, priority=priority,
                       category=category, status=status, requester=requester, text=q,
                       sort=sort, limit=limit, after=after)
    lines, cursor = await desk.queue(principal, query)
    return QueuePage(items=[_json_ready(line_view(line)) for line in lines], next=cursor)


# --- the workspace -----------------------------------------------------------------------


@tickets.get("/api/tickets/{number}", response_model=None)
async def workspace(number: Number, principal: PrincipalDep, desk: DeskDep) -> Response:
    """Everything about one ticket in one call: intake's record and conversation (`ticket`),
    routing's assignment and escalation history (`assignment`), SLA's clocks (`sla`),
    knowledge suggestions (`suggestions`). A part whose service is down or slow is
    `{"unavailable": true, "reason": ...}` and listed in `unavailable`; the answer is still
    200. The `ETag` header is what commands send back as `If-Match`."""
    with desk_errors(number):
        answer = await desk.workspace(principal, number)
    # Written out directly: the parts are the services' own JSON, and FastAPI's encoder
    # walking every message of a long conversation again cost more than the three calls.
    return Response(json.dumps(answer, separators=(",", ":"), default=_iso),
                    media_type="application/json",
                    headers={"ETag": answer["etag"]} if answer["etag"] else None)


@tickets.get("/api/tickets/{number}/attachments/{attachment_id}")
async def attachment(number: Number, principal: PrincipalDep, desk: DeskDep,
                     attachment_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,100}$")]
                     ) -> Response:
    with desk_errors(number):
        await desk.current(principal, number)
        upstream = await desk.backends["intake"].raw(
            "GET", f"/tickets/{number}/attachments/{attachment_id}")
    return Response(upstream.content, media_type=upstream.headers.get("content-type"),
                    headers={k: v for k, v in upstream.headers.items()
                             if k.lower() in ("content-disposition", "x-content-type-options")})


# --- commands ------------------------------------------------------------------------------


class CommandAnswer(BaseModel):
    etag: str
    ticket: dict[str, Any]
    assignment: dict[str, Any] | None


async def _run(request: Request, response: Response, desk: DeskDep, principal: PrincipalDep,
               number: str, if_match: str | None, name: str, detail: BaseModel | None,
               run: Command) -> CommandAnswer:
    with desk_errors(number):
        after: Current = await desk.command(
            principal, number, name=name, if_match=if_match, ip=client_ip(request),
            detail=detail.model_dump(mode="json") if detail else {}, run=run)
    response.headers["ETag"] = after.etag
    return CommandAnswer(etag=after.etag, ticket=after.ticket, assignment=after.assignment)


@tickets.post("/api/tickets/{number}/take", response_model=CommandAnswer)
async def take(number: Number, request: Request, response: Response, desk: DeskDep,
               principal: PrincipalDep, if_match: IfMatch = None) -> CommandAnswer:
    """I take it: the ticket becomes mine (I must be in the group that holds it)."""
    return await _run(request, response, desk, principal, number, if_match, "take", None,
                      desk.take(principal))


class AssignIn(Model):
    agent_id: str = Field(pattern=SLUG)
    reason: str = Field(default="reassigned", min_length=1, max_length=200)


@tickets.post("/api/tickets/{number}/assign", response_model=CommandAnswer)
async def assign(number: Number, body: AssignIn, request: Request, response: Response,
                 desk: DeskDep, principal: PrincipalDep, if_match: IfMatch = None
                 ) -> CommandAnswer:
    """A coordinator gives the ticket to an agent of the group that holds it."""
    return await _run(request, response, desk, principal, number, if_match, "assign", body,
                      desk.assign(principal, body.agent_id, body.reason))


class TextIn(Model):
    body: str = Field(min_length=1, max_length=LONG)


@tickets.post("/api/tickets/{number}/replies", response_model=CommandAnswer)
async def reply(number: Number, body: TextIn, request: Request, response: Response,
                desk: DeskDep, principal: PrincipalDep, if_match: IfMatch = None
                ) -> CommandAnswer:
    """A reply to the requester: it is mailed to them (or sent on their channel)."""
    return await _run(request, response, desk, principal, number, if_match, "reply", None,
                      desk.message(principal, body.body, public=True))


@tickets.post("/api/tickets/{number}/notes", response_model=CommandAnswer)
async def note(number: Number, body: TextIn, request: Request, response: Response,
               desk: DeskDep, principal: PrincipalDep, if_match: IfMatch = None
               ) -> CommandAnswer:
    """An internal note: staff see it, the requester never does."""
    return await _run(request, response, desk, principal, number, if_match, "note", None,
                      desk.message(principal, body.body, public=False))


class StatusIn(Model):
    status: Literal[TicketStatus.IN_PROGRESS, TicketStatus.WAITING_CUSTOMER,
                    TicketStatus.RESOLVED, TicketStatus.CLOSED, TicketStatus.REOPENED]
    reason: str | None = Field(default=None, max_length=200)
    resolution: str | None = Field(default=None, max_length=20_000,
                                   description="Needed to resolve: what fixed it")


@tickets.post("/api/tickets/{number}/status", response_model=CommandAnswer)
async def change_status(number: Number, body: StatusIn, request: Request, response: Response,
                        desk: DeskDep, principal: PrincipalDep, if_match: IfMatch = None
                        ) -> CommandAnswer:
    """In progress, waiting for the customer (SLA clocks pause), resolved (with the
    resolution), closed, reopened."""
    return await _run(request, response, desk, principal, number, if_match, "status", body,
                      desk.status(principal, body.status.value, body.reason, body.resolution))


class EscalateIn(Model):
    reason: str = Field(min_length=1, max_length=200)
    to_group: str | None = Field(default=None, pattern=SLUG,
                                 description="Default: the next group up the chain")


@tickets.post("/api/tickets/{number}/escalate", response_model=CommandAnswer)
async def escalate(number: Number, body: EscalateIn, request: Request, response: Response,
                   desk: DeskDep, principal: PrincipalDep, if_match: IfMatch = None
                   ) -> CommandAnswer:
    """This level cannot solve it: up one level, or to the chosen higher group (L3 may hand
    over to an L4 vendor)."""
    return await _run(request, response, desk, principal, number, if_match, "escalate", body,
                      desk.escalate(principal, body.reason, body.to_group))


class HandBackIn(Model):
    reason: str = Field(min_length=1, max_length=200)
    to_group: str = Field(pattern=SLUG)


@tickets.post("/api/tickets/{number}/hand-back", response_model=CommandAnswer)
async def hand_back(number: Number, body: HandBackIn, request: Request, response: Response,
                    desk: DeskDep, principal: PrincipalDep, if_match: IfMatch = None
                    ) -> CommandAnswer:
    """Give requester contact back to L1/L2; the higher level keeps owning the fix."""
    return await _run(request, response, desk, principal, number, if_match, "hand_back", body,
                      desk.hand_back(principal, body.reason, body.to_group))


class PriorityIn(Model):
    priority: Priority
    reason: str = Field(min_length=1, max_length=200)


@tickets.post("/api/tickets/{number}/priority", response_model=CommandAnswer)
async def override_priority(number: Number, body: PriorityIn, request: Request,
                            response: Response, desk: DeskDep, principal: PrincipalDep,
                            if_match: IfMatch = None) -> CommandAnswer:
    """A coordinator overrides the priority, with a reason (SLA targets follow)."""
    return await _run(request, response, desk, principal, number, if_match, "priority", body,
                      desk.priority(principal, body.priority.value, body.reason))


class CategoryIn(Model):
    category: str = Field(pattern=r"^[a-z][a-z0-9-]{0,40}$")
    reason: str = Field(min_length=1, max_length=200)


@tickets.post("/api/tickets/{number}/category", response_model=CommandAnswer)
async def correct_category(number: Number, body: CategoryIn, request: Request,
                           response: Response, desk: DeskDep, principal: PrincipalDep,
                           if_match: IfMatch = None) -> CommandAnswer:
    """A coordinator corrects the category that a rule or the learned triage chose (the
    workspace's assignment says which); the ticket stays where it is, and the learned
    triage learns the correction."""
    return await _run(request, response, desk, principal, number, if_match, "category", body,
                      desk.recategorise(principal, body.category, body.reason))


class CallIn(Model):
    duration_s: int = Field(ge=0, le=24 * 3600)
    notes: str = Field(min_length=1, max_length=LONG)
    outcome: Literal["resolved", "follow_up"] = "follow_up"
    started_at: AwareDatetime | None = None
    public: bool = Field(default=True, description="False: the notes are an internal note")


@tickets.post("/api/tickets/{number}/calls", response_model=CommandAnswer)
async def log_call(number: Number, body: CallIn, request: Request, response: Response,
                   desk: DeskDep, principal: PrincipalDep, if_match: IfMatch = None
                   ) -> CommandAnswer:
    """A phone call with the requester about this ticket, logged in its conversation."""
    call = body.model_dump(mode="json")
    return await _run(request, response, desk, principal, number, if_match, "call", body,
                      desk.call(principal, call))


class ArticleIn(Model):
    article_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")
    title: str | None = Field(default=None, max_length=SHORT)
    url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")


@tickets.post("/api/tickets/{number}/articles", response_model=CommandAnswer)
async def link_article(number: Number, body: ArticleIn, request: Request, response: Response,
                       desk: DeskDep, principal: PrincipalDep, if_match: IfMatch = None
                       ) -> CommandAnswer:
    """Link a knowledge article that helped (kept in the ticket's history as a note)."""
    return await _run(request, response, desk, principal, number, if_match, "link_article",
                      body, desk.link_article(principal, body.article_id, body.title, body.url))


# --- the live stream -------------------------------------------------------------------------


@tickets.get("/api/stream", response_class=StreamingResponse)
async def stream(request: Request, principal: PrincipalDep, hub: HubDep,
                 settings: SettingsDep) -> StreamingResponse:
    """Server-Sent Events: every change to a ticket you may see, as it happens (`event:` is
    the event type, `data:` a summary without texts). `event: reload` means updates were
    lost because the connection was slow: read the queue again."""
    listener = hub.join(principal)

    async def events() -> AsyncIterator[bytes]:
        try:
            # The first console of this replica binds its live queue: say "connected" once
            # events flow (or after a few seconds without a broker: the page still works).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.bound.wait(), 5)
            yield b": connected\n\nretry: 3000\n\n"
            while True:
                try:
                    update = await asyncio.wait_for(listener.queue.get(),
                                                    settings.live_heartbeat_s)
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                if listener.lost:
                    listener.lost = False
                    yield b"event: reload\ndata: {}\n\n"
                data = json.dumps(update, separators=(",", ":"), default=str)
                yield f"id: {update['event_id']}\nevent: {update['type']}\ndata: {data}\n\n"\
                    .encode()
        finally:
            hub.leave(listener)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json_ready(line: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in line.items()}
