"""The requester's doors: the status page behind a signed link, and the rating."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sportello_contracts.enums import Author, SupportLevel, TicketStatus, Visibility
from sportello_intake.api.common import NUMBER, DeskDep, refusals, settings_of, ticket_by_number
from sportello_intake.domain import (
    Ticket,
)
from sportello_intake.requester import tokens
from sportello_intake.requester.page import PAGE_HEADERS, PageData, PageMessage, render_status_page
from sportello_runtime.http import ApiError

public = APIRouter(tags=["requester"])


# --- the requester's status page and rating ---------------------------------


class PublicMessage(BaseModel):
    author: Author
    author_name: str | None
    body: str
    at: datetime
    attachments: list[str]


class PublicTicket(BaseModel):
    """What the requester may see: no internal notes, no agent ids, no other requester."""

    number: str
    subject: str
    status: TicketStatus
    level: SupportLevel | None
    time_limit: datetime | None
    created_at: datetime
    updated_at: datetime
    resolution: str | None
    can_rate: bool
    rating: int | None
    messages: list[PublicMessage]


async def requester_ticket(
    request: Request,
    desk: DeskDep,
    number: Annotated[str, NUMBER],
    token: Annotated[str, Query(min_length=1, max_length=2000,
                                description="The signed token from the acknowledgement")],
) -> Ticket:
    try:
        tokens.verify(request.app.state.token_secret, token, number)
    except tokens.TokenRefused as exc:
        raise ApiError(401, "unauthorized", str(exc), field="token") from exc
    return await ticket_by_number(number, desk)


RequesterTicket = Annotated[Ticket, Depends(requester_ticket)]


def wants_html(request: Request) -> bool:
    """Browsers (following the link in a notice) get the page; API clients get JSON."""
    return "text/html" in request.headers.get("accept", "")


async def public_view(ticket: Ticket, request: Request) -> PublicTicket:
    due = await request.app.state.outbound.time_limit(ticket.id)
    if due is None and ticket.status not in {TicketStatus.RESOLVED, TicketStatus.CLOSED}:
        due = ticket.time_limit  # SLA's last announcement, while SLA does not answer
    return PublicTicket(
        number=ticket.number, subject=ticket.subject, status=ticket.status, level=ticket.level,
        time_limit=due, created_at=ticket.created_at, updated_at=ticket.updated_at,
        resolution=ticket.resolution,
        can_rate=ticket.rating is None and ticket.status in {TicketStatus.RESOLVED,
                                                              TicketStatus.CLOSED},
        rating=ticket.rating.score if ticket.rating else None,
        messages=[
            PublicMessage(author=m.author,
                          author_name=m.author_name if m.author is Author.REQUESTER else None,
                          body=m.body, at=m.at, attachments=[a.filename for a in m.attachments])
            for m in ticket.messages if m.visibility is Visibility.PUBLIC
        ],
    )


def html_page(view: PublicTicket, ticket: Ticket, request: Request, *, status_code: int = 200,
              error: str | None = None) -> HTMLResponse:
    data = PageData(
        number=view.number, subject=view.subject, status=view.status,
        level=view.level.value if view.level else None, time_limit=view.time_limit,
        resolution=view.resolution, can_rate=view.can_rate, rating=view.rating,
        messages=tuple(PageMessage(m.author, m.author_name, m.body, m.at, tuple(m.attachments))
                       for m in view.messages),
    )
    token = request.query_params.get("token", "")
    action = f"/public/tickets/{quote(view.number)}/rating?token={quote(token, safe='')}"
    portal_url = settings_of(request).portal_url
    portal = (f"{portal_url.rstrip('/')}/portal/from-notice?"
              f"{urlencode({'number': view.number, 'token': token})}"
              if portal_url and ticket.requester.email else None)
    body = render_status_page(data, language=ticket.requester.language, rating_action=action,
                              zone=settings_of(request).display_timezone, error=error,
                              portal_link=portal)
    return HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)


@public.get("/public/tickets/{number}", response_model=PublicTicket,
            responses={200: {"content": {"text/html": {}},
                             "description": "JSON, or the page when the client asks for HTML"}})
async def status_page(ticket: RequesterTicket, request: Request) -> PublicTicket | HTMLResponse:
    """The requester's view: status, level, time limit and the public conversation."""
    view = await public_view(ticket, request)
    return html_page(view, ticket, request) if wants_html(request) else view


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=2000)


@public.post(
    "/public/tickets/{number}/rating", response_model=PublicTicket,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": RatingIn.model_json_schema()},
        "application/x-www-form-urlencoded": {"schema": RatingIn.model_json_schema()}}}},
)
async def rate_ticket(ticket: RequesterTicket, request: Request,
                      desk: DeskDep) -> PublicTicket | Response:
    """Satisfaction (1-5 and a comment), once, after the resolution: JSON from API clients,
    the page's form from browsers (answered with a redirect back to the page)."""
    from_form = request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded")
    raw = await request.body()
    try:
        if from_form:
            fields = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
            body = RatingIn.model_validate({"score": fields.get("score"),
                                            "comment": fields.get("comment") or None})
        else:
            body = RatingIn.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        if from_form:
            problem = ", ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                for e in exc.errors())
            return html_page(await public_view(ticket, request), ticket, request,
                             status_code=422, error=problem)
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc
    async with refusals():
        rated = await desk.rate(ticket, body.score, body.comment)
    if from_form:
        token = quote(request.query_params.get("token", ""), safe="")
        return RedirectResponse(f"/public/tickets/{quote(rated.number)}?token={token}#rating",
                                status_code=status.HTTP_303_SEE_OTHER, headers=PAGE_HEADERS)
    return await public_view(rated, request)


