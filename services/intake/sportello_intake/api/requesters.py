"""A requester's own tickets, for the requester portal (behind the service token: the
gateway has signed the requester in and names them by address).

Every route takes the requester's address and answers only tickets whose requester it
is: another requester's ticket number is a 404, exactly like a number that does not exist.
What comes back is the requester's view (``PublicTicket``): no internal notes, no agent
ids. A reply has the effect of a mail reply: it resumes a ticket waiting for the
requester, reopens a resolved one, and on a closed ticket opens a follow-up."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from sportello_contracts import utc_now
from sportello_contracts.api import AttachmentUpload, TicketCreateRequest
from sportello_contracts.enums import Author, Channel, SupportLevel, TicketStatus, Visibility
from sportello_contracts.events import LONG
from sportello_intake.api.common import NUMBER, DeskDep, refusals, ticket_by_number
from sportello_intake.api.public import PublicTicket, RatingIn, public_view
from sportello_intake.domain import Message, Ticket, TicketClosedForReplies
from sportello_intake.requester import tokens
from sportello_intake.service import decode_uploads
from sportello_intake.store import domain_of, requester_key
from sportello_runtime.http import ApiError

requesters = APIRouter(tags=["requester portal"])

Email = Annotated[EmailStr, Query(max_length=254, description="The signed-in requester")]
Organisation = Annotated[str | None, Query(
    max_length=253, pattern=r"^[A-Za-z0-9.-]+$",
    description="A business customer's contact may read the requests of every address in "
    "this mail domain (the portal decides who is such a contact)")]


async def own_ticket(number: Annotated[str, NUMBER], email: Email, desk: DeskDep) -> Ticket:
    """The ticket, when this requester asked for it; otherwise as if it did not exist."""
    ticket = await ticket_by_number(number, desk)
    if requester_key(ticket.requester.email) != requester_key(email):
        raise ApiError(404, "not_found", f"no ticket {number}")
    return ticket


async def readable_ticket(number: Annotated[str, NUMBER], email: Email, desk: DeskDep,
                          organisation: Organisation = None) -> Ticket:
    """Their own ticket, or, for an organisation's contact, one of the organisation's."""
    ticket = await ticket_by_number(number, desk)
    if requester_key(ticket.requester.email) == requester_key(email):
        return ticket
    if organisation and domain_of(ticket.requester.email) == organisation.casefold():
        return ticket
    raise ApiError(404, "not_found", f"no ticket {number}")


OwnTicket = Annotated[Ticket, Depends(own_ticket)]
ReadableTicket = Annotated[Ticket, Depends(readable_ticket)]


class RequestLine(BaseModel):
    number: str
    requester: str | None = Field(default=None, description="Whose (organisation lists)")
    subject: str
    status: TicketStatus
    level: SupportLevel | None
    time_limit: datetime | None
    created_at: datetime
    updated_at: datetime
    rating: int | None


class RequestList(BaseModel):
    items: list[RequestLine]


@requesters.get("/requesters/tickets", response_model=RequestList)
async def my_requests(email: Email, desk: DeskDep,
                      state: Annotated[Literal["open", "closed"], Query()] = "open",
                      limit: Annotated[int, Query(ge=1, le=200)] = 50,
                      organisation: Organisation = None) -> RequestList:
    """The requester's open (anything not closed) or closed tickets, newest first; with
    ``organisation``, the whole organisation's, each with whose it is."""
    docs = await desk.tickets.of_requester(email, closed=state == "closed", limit=limit,
                                           organisation=organisation)
    return RequestList(items=[RequestLine(
        number=d["number"], subject=d["subject"], status=d["status"], level=d.get("level"),
        requester=d.get("requester_email") if organisation else None,
        time_limit=d.get("time_limit") if d["status"] not in {"resolved", "closed"} else None,
        created_at=d["created_at"], updated_at=d["updated_at"],
        rating=(d.get("rating") or {}).get("score")) for d in docs])


@requesters.get("/requesters/tickets/{number}", response_model=PublicTicket)
async def my_request(ticket: ReadableTicket, request: Request) -> PublicTicket:
    return await public_view(ticket, request)


class RequesterReply(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    body: str = Field(min_length=1, max_length=LONG)
    attachments: list[AttachmentUpload] = Field(default=[], max_length=10)
    reply_key: str | None = Field(
        default=None, min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
        description="One per form shown: a second send of the same form adds nothing")


class ReplyReceipt(BaseModel):
    action: Literal["joined", "duplicate", "follow_up"]
    number: str
    ticket: PublicTicket


@requesters.post("/requesters/tickets/{number}/messages", response_model=ReplyReceipt)
async def reply(body: RequesterReply, ticket: OwnTicket, request: Request,
                desk: DeskDep) -> ReplyReceipt:
    """The requester writes from the portal: the same effect as a mail reply."""
    message = Message(
        id=uuid.uuid4().hex, author=Author.REQUESTER, visibility=Visibility.PUBLIC,
        channel=Channel.WEB, body=body.body, at=utc_now(), author_name=ticket.requester.name,
        external_id=f"portal:{body.reply_key}" if body.reply_key else None)
    async with refusals():
        files = decode_uploads(body.attachments, max_bytes=desk.settings.max_attachment_bytes,
                               prefix=uuid.uuid4().hex)
        try:
            updated, added = await desk.post(ticket, message, files)
        except TicketClosedForReplies:
            request_ = TicketCreateRequest(
                requester=ticket.requester,
                subject=ticket.subject, description=body.body, channel=Channel.WEB)
            follow = await desk.follow_up(ticket, request_,
                                          origin_key=f"portal:{body.reply_key or message.id}",
                                          first_message=message, files=files)
            return ReplyReceipt(action="follow_up", number=follow.number,
                                ticket=await public_view(follow, request))
    return ReplyReceipt(action="joined" if added else "duplicate", number=updated.number,
                        ticket=await public_view(updated, request))


@requesters.post("/requesters/tickets/{number}/confirm", response_model=PublicTicket)
async def confirm(ticket: OwnTicket, request: Request, desk: DeskDep) -> PublicTicket:
    """"Yes, it is solved": a resolved ticket closes (a closed one stays closed)."""
    if ticket.status is TicketStatus.CLOSED:
        return await public_view(ticket, request)
    async with refusals():
        closed = await desk.change_status(ticket, TicketStatus.CLOSED,
                                          reason="the requester confirmed the resolution",
                                          actor="requester", resolution=None)
    return await public_view(closed, request)


@requesters.post("/requesters/tickets/{number}/rating", response_model=PublicTicket)
async def rate(body: RatingIn, ticket: OwnTicket, request: Request,
               desk: DeskDep) -> PublicTicket:
    async with refusals():
        rated = await desk.rate(ticket, body.score, body.comment)
    return await public_view(rated, request)


class NoticeLink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(min_length=1, max_length=50, pattern=r"^[A-Z]{1,6}-\d{4}-\d{6,9}$")
    token: str = Field(min_length=1, max_length=2000)


class NoticeRequester(BaseModel):
    email: str
    language: str
    number: str


@requesters.post("/requesters/notice-links", response_model=NoticeRequester)
async def notice_link(body: NoticeLink, request: Request, desk: DeskDep) -> NoticeRequester:
    """Whose the signed link of a notice is: the portal signs its requester in with it, as
    the mailed link of the portal would (both prove the mailbox)."""
    try:
        tokens.verify(request.app.state.token_secret, body.token, body.number)
    except tokens.TokenRefused as exc:
        raise ApiError(401, "unauthorized", str(exc), field="token") from exc
    ticket = await ticket_by_number(body.number, desk)
    if not ticket.requester.email:
        raise ApiError(404, "not_found", f"{body.number} has no requester address",
                       field="number")
    return NoticeRequester(email=ticket.requester.email, language=ticket.requester.language,
                           number=ticket.number)
