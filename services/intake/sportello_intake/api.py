"""Intake's HTTP routes: the channels' doors, the requester's status page and rating,
and the internal ticket API (agents' messages, the lifecycle, attachments)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from sportello_contracts import utc_now
from sportello_contracts.api import (
    AttachmentView,
    MessageView,
    RatingView,
    TicketCreateRequest,
    TicketView,
)
from sportello_contracts.enums import Author, Channel, SupportLevel, TicketStatus, Visibility
from sportello_contracts.events import LONG, SHORT, Requester
from sportello_intake import signatures, tokens
from sportello_intake.domain import (
    SET_BY_ROUTING,
    IllegalTransition,
    Message,
    MissingResolution,
    RatingRefused,
    Ticket,
    TicketClosedForReplies,
)
from sportello_intake.mail import MailLimits, MailRejected, read_mail
from sportello_intake.page import PAGE_HEADERS, PageData, PageMessage, render_status_page
from sportello_intake.service import AttachmentRefused, Desk, Outcome, TicketMissing, decode_uploads
from sportello_intake.settings import IntakeSettings
from sportello_runtime.concurrency import ConcurrencyConflict
from sportello_runtime.http import ApiError

channels = APIRouter(tags=["channels"])
public = APIRouter(tags=["requester"])
internal = APIRouter(tags=["tickets"])

NUMBER = Path(min_length=1, max_length=50, pattern=r"^[A-Z]{1,6}-\d{4}-\d{6,9}$")


# Dependencies are ``async def`` even when they do not await: FastAPI runs a plain ``def``
# dependency in its thread pool, a thread hop per request for reading an attribute.


async def desk_of(request: Request) -> Desk:
    desk: Desk = request.app.state.desk
    return desk


def settings_of(request: Request) -> IntakeSettings:
    settings: IntakeSettings = request.app.state.service.settings
    return settings


async def settings_dependency(request: Request) -> IntakeSettings:
    return settings_of(request)


DeskDep = Annotated[Desk, Depends(desk_of)]
SettingsDep = Annotated[IntakeSettings, Depends(settings_dependency)]


async def ticket_by_number(number: Annotated[str, NUMBER], desk: DeskDep) -> Ticket:
    ticket = await desk.tickets.by_number(number)
    if ticket is None:
        raise ApiError(404, "not_found", f"no ticket {number}")
    return ticket


TicketDep = Annotated[Ticket, Depends(ticket_by_number)]


# --- channel authentication -------------------------------------------------


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "ApiKey"})


def channel_door(*allowed: Channel) -> Callable[..., Awaitable[Channel]]:
    """A dependency: which channel calls, by its API key or its HMAC signature of the body."""

    async def authenticate(
        request: Request,
        x_api_key: Annotated[str | None, Header(description="The channel's API key")] = None,
    ) -> Channel:
        settings = settings_of(request)
        channel: Channel | None = None
        if x_api_key:
            presented = x_api_key.encode()
            for name, key in settings.channel_keys.items():
                if hmac.compare_digest(presented, key.get_secret_value().encode()):
                    channel = Channel._value2member_map_.get(name)  # type: ignore[assignment]
                    break
            if channel is None:
                raise _unauthorized("unknown channel API key")
        elif signature := request.headers.get(signatures.HEADER):
            body = await request.body()
            for candidate in allowed:
                secret = settings.channel_secrets.get(candidate.value)
                try:
                    if secret is not None and signatures.matches(
                            secret.get_secret_value(), signature, body,
                            tolerance_s=settings.signature_tolerance_s):
                        channel = candidate
                        break
                except signatures.BadSignature as exc:
                    raise _unauthorized(str(exc)) from exc
            if channel is None:
                raise _unauthorized("the signature does not match the body")
        else:
            raise _unauthorized("a channel API key (X-Api-Key) or signature "
                                "(X-Sportello-Signature) is required")
        if channel not in allowed:
            raise ApiError(403, "forbidden", f"the {channel.value} channel may not use this door")
        return channel

    return authenticate


# --- views ------------------------------------------------------------------


def message_view(m: Message) -> MessageView:
    return MessageView(
        id=m.id, author=m.author, author_name=m.author_name, visibility=m.visibility,
        channel=m.channel, body=m.body, at=m.at, call=m.call,
        attachments=[AttachmentView(id=a.id, filename=a.filename, content_type=a.content_type,
                                    size=a.size) for a in m.attachments],
    )


def to_view(ticket: Ticket) -> TicketView:
    return TicketView(
        id=ticket.id,
        number=ticket.number,
        status=ticket.status,
        channel=ticket.channel,
        requester=ticket.requester,
        subject=ticket.subject,
        description=ticket.description,
        category_hint=ticket.category_hint,
        level=ticket.level,
        group_id=ticket.group_id,
        group_name=ticket.group_name,
        agent_id=ticket.agent_id,
        resolution=ticket.resolution,
        resolved_at=ticket.resolved_at,
        rating=RatingView(score=ticket.rating.score, comment=ticket.rating.comment,
                          at=ticket.rating.at) if ticket.rating else None,
        version=ticket.version,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        time_limit=ticket.time_limit,
        messages=[message_view(m) for m in ticket.messages],
    )


class ChannelReceipt(BaseModel):
    """What a channel gets back: which ticket its message landed in, and how."""

    action: Literal["created", "joined", "duplicate", "follow_up", "ignored"]
    number: str | None = None
    ticket_id: str | None = None
    message_id: str | None = None
    reason: str | None = None


def receipt(outcome: Outcome) -> ChannelReceipt:
    return ChannelReceipt(action=outcome.action, number=outcome.ticket.number,
                          ticket_id=outcome.ticket.id, message_id=outcome.message_id)


@asynccontextmanager
async def refusals() -> AsyncIterator[None]:
    """The desk's refusals as HTTP errors, the same for every door."""
    try:
        yield
    except AttachmentRefused as exc:
        raise ApiError(422, "validation_failed", str(exc), field=exc.field) from exc
    except MailRejected as exc:
        raise ApiError(422, "invalid_message", exc.reason, field=exc.field) from exc
    except TicketMissing as exc:
        raise ApiError(404, "not_found", f"no ticket {exc}", field="ticket_number") from exc
    except IllegalTransition as exc:
        raise ApiError(409, "illegal_transition", str(exc), field="status",
                       extra={"allowed": [s.value for s in exc.allowed]}) from exc
    except MissingResolution as exc:
        raise ApiError(422, "validation_failed", str(exc), field="resolution") from exc
    except TicketClosedForReplies as exc:
        raise ApiError(409, "ticket_closed", f"{exc} is closed; open a new ticket",
                       field="number") from exc
    except RatingRefused as exc:
        raise ApiError(409, "rating_refused", str(exc), field="score") from exc
    except ConcurrencyConflict as exc:
        raise ApiError(409, "conflict", "the ticket changed meanwhile; reload it",
                       field="expected_version") from exc


# --- web form and JSON API --------------------------------------------------


def _fingerprint(body: TicketCreateRequest) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@channels.post(
    "/tickets",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketView,
    responses={200: {"description": "a retry with the same Idempotency-Key: the same ticket"},
               401: {"description": "unknown channel"}, 403: {"description": "wrong channel"},
               413: {"description": "body too large"}, 422: {"description": "invalid field"}},
)
async def create_ticket(
    body: TicketCreateRequest,
    request: Request,
    response: Response,
    channel: Annotated[Channel, Depends(channel_door(*Channel))],
    desk: DeskDep,
    idempotency_key: Annotated[str | None, Header(
        min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
        description="A retry with the same key returns the same ticket, never a second one",
    )] = None,
) -> TicketView:
    """Open a ticket. Answers once the ticket and its ``ticket.created`` event are stored."""
    if body.channel != channel:
        raise ApiError(
            403, "forbidden", f"this API key may only post for channel {channel.value!r}",
            field="channel",
        )
    fingerprint = _fingerprint(body)
    origin = f"idem:{channel.value}:{idempotency_key}" if idempotency_key else None
    async with refusals():
        files = decode_uploads(body.attachments, max_bytes=desk.settings.max_attachment_bytes,
                               prefix=uuid.uuid4().hex)
        ticket, created = await desk.open(body, origin_key=origin, fingerprint=fingerprint,
                                          files=files)
    if not created:
        if ticket.origin_fingerprint != fingerprint:
            raise ApiError(422, "idempotency_key_reused",
                           "this Idempotency-Key was used for a different request",
                           field="Idempotency-Key", extra={"number": ticket.number})
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/tickets/{ticket.number}"
    return to_view(ticket)


# --- e-mail -----------------------------------------------------------------


def mail_limits(settings: IntakeSettings) -> MailLimits:
    return MailLimits(
        max_attachment_bytes=settings.max_attachment_bytes,
        max_attachments=settings.max_attachments,
        own_addresses=frozenset(a.lower() for a in settings.support_addresses),
    )


@channels.post(
    "/channels/email/messages",
    response_model=ChannelReceipt,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": {"content": {"message/rfc822": {"schema": {"type": "string"}}},
                                   "required": True}},
    responses={202: {"description": "a machine wrote it (auto-reply, bounce): not a ticket"},
               422: {"description": "malformed MIME, unknown charset, oversized attachment"}},
)
async def inbound_mail(
    request: Request,
    response: Response,
    _: Annotated[Channel, Depends(channel_door(Channel.EMAIL))],
    desk: DeskDep,
) -> ChannelReceipt:
    """A raw RFC 822 message, as mail gateways' inbound webhooks send it."""
    raw = await request.body()
    if len(raw) > desk.settings.mail_max_bytes:
        raise ApiError(413, "payload_too_large",
                       f"the message exceeds {desk.settings.mail_max_bytes} bytes")
    async with refusals():
        mail = read_mail(raw, limits=mail_limits(desk.settings),
                         envelope_sender=request.headers.get("x-envelope-from"))
        outcome = await desk.take_mail(mail)
    if outcome is None:
        response.status_code = status.HTTP_202_ACCEPTED
        return ChannelReceipt(action="ignored", reason=mail.automatic)
    if outcome.action in {"joined", "duplicate"}:
        response.status_code = status.HTTP_200_OK
    return receipt(outcome)


# --- chat -------------------------------------------------------------------


class ChatSender(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=SHORT)
    email: str | None = Field(default=None, max_length=254)
    language: str = Field(default="en", pattern=r"^[a-z]{2}$")
    department: str | None = Field(default=None, max_length=SHORT)


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    conversation_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    message_id: str | None = Field(default=None, min_length=1, max_length=128,
                                   description="The platform's id: a redelivery is a no-op")
    sender: ChatSender
    text: str = Field(min_length=1, max_length=LONG)


@channels.post("/channels/chat/messages", response_model=ChannelReceipt,
               status_code=status.HTTP_201_CREATED)
async def chat_message(
    body: ChatMessageIn,
    response: Response,
    _: Annotated[Channel, Depends(channel_door(Channel.CHAT))],
    desk: DeskDep,
) -> ChannelReceipt:
    """The first message of a conversation opens a ticket; the rest join it."""
    try:
        sender = Requester(name=body.sender.name, email=body.sender.email,
                           language=body.sender.language, department=body.sender.department)
    except ValueError as exc:
        raise ApiError(422, "validation_failed", "not a valid e-mail address",
                       field="sender.email") from exc
    async with refusals():
        outcome = await desk.take_chat(body.conversation_id, sender, body.text, body.message_id)
    if outcome.action != "created":
        response.status_code = status.HTTP_200_OK
    return receipt(outcome)


# --- phone ------------------------------------------------------------------


class PhoneCallIn(BaseModel):
    """An agent's log of a call: it opens a ticket, or joins ``ticket_number``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    call_id: str | None = Field(default=None, min_length=1, max_length=128,
                                description="The telephony system's id: a retry is a no-op")
    caller: Requester
    agent_id: str = Field(min_length=1, max_length=100)
    started_at: AwareDatetime | None = None
    duration_s: int = Field(ge=0, le=24 * 3600)
    notes: str = Field(min_length=1, max_length=LONG)
    outcome: Literal["resolved", "follow_up"] = Field(
        default="follow_up", description="resolved: solved on the call (first-contact "
        "resolution). Escalating is routing's decision, through its API")
    subject: str | None = Field(default=None, min_length=1, max_length=SHORT)
    category_hint: str | None = Field(default=None, max_length=SHORT)
    ticket_number: str | None = Field(default=None, max_length=50,
                                      pattern=r"^[A-Z]{1,6}-\d{4}-\d{6,9}$")
    public: bool = Field(default=True, description="False: the notes are an internal note")


@channels.post("/channels/phone/calls", response_model=ChannelReceipt,
               status_code=status.HTTP_201_CREATED)
async def phone_call(
    body: PhoneCallIn,
    response: Response,
    _: Annotated[Channel, Depends(channel_door(Channel.PHONE))],
    desk: DeskDep,
) -> ChannelReceipt:
    call: dict[str, Any] = {"duration_s": body.duration_s, "outcome": body.outcome,
                            "caller": body.caller.phone or body.caller.name,
                            "started_at": body.started_at.isoformat() if body.started_at else None}
    async with refusals():
        outcome = await desk.log_call(
            caller=body.caller, agent_id=body.agent_id, notes=body.notes, call=call,
            subject=body.subject, ticket_number=body.ticket_number,
            resolved=body.outcome == "resolved", public=body.public, call_id=body.call_id,
            category_hint=body.category_hint,
        )
    if outcome.action != "created":
        response.status_code = status.HTTP_200_OK
    return receipt(outcome)


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
    body = render_status_page(data, language=ticket.requester.language, rating_action=action,
                              zone=settings_of(request).display_timezone, error=error)
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


# --- internal ticket API ----------------------------------------------------


@internal.get("/tickets/{number}", response_model=TicketView)
async def get_ticket(ticket: TicketDep) -> TicketView:
    """The whole record: conversation (internal notes included) and lifecycle."""
    return to_view(ticket)


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TicketStatus
    expected_version: int | None = Field(
        default=None, ge=1, description="The version you saw; 409 when the ticket changed since"
    )
    reason: str | None = Field(default=None, max_length=200)
    resolution: str | None = Field(default=None, max_length=20_000)
    actor: str | None = Field(default=None, max_length=100)


def _check_version(ticket: Ticket, expected: int | None) -> None:
    if expected is not None and expected != ticket.version:
        raise ApiError(409, "conflict", f"the ticket is at version {ticket.version}",
                       field="expected_version", extra={"version": ticket.version})


@internal.post("/tickets/{number}/status", response_model=TicketView)
async def change_ticket_status(body: StatusChange, ticket: TicketDep, desk: DeskDep) -> TicketView:
    """Move the ticket along its lifecycle; an illegal move gets 409 with the allowed ones."""
    if body.status in SET_BY_ROUTING:
        raise ApiError(422, "validation_failed",
                       f"{body.status.value} follows from routing and cannot be set",
                       field="status")
    _check_version(ticket, body.expected_version)
    async with refusals():
        changed = await desk.change_status(ticket, body.status, reason=body.reason,
                                           actor=body.actor, resolution=body.resolution)
    return to_view(changed)


class MessageIn(BaseModel):
    """An agent's reply (public: mailed to the requester) or internal note."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    author: Literal[Author.AGENT, Author.SYSTEM] = Author.AGENT
    author_id: str = Field(min_length=1, max_length=100)
    author_name: str | None = Field(default=None, max_length=SHORT)
    visibility: Visibility = Visibility.PUBLIC
    body: str = Field(min_length=1, max_length=LONG)
    expected_version: int | None = Field(default=None, ge=1)


@internal.post("/tickets/{number}/messages", response_model=TicketView,
               status_code=status.HTTP_201_CREATED)
async def post_message(body: MessageIn, ticket: TicketDep, desk: DeskDep) -> TicketView:
    _check_version(ticket, body.expected_version)
    message = Message(id=uuid.uuid4().hex, author=body.author, visibility=body.visibility,
                      channel=None, body=body.body, at=utc_now(),
                      author_name=body.author_name, author_id=body.author_id)
    async with refusals():
        updated, _ = await desk.post(ticket, message)
    return to_view(updated)


@internal.get("/tickets/{number}/attachments/{attachment_id}")
async def get_attachment(
    ticket: TicketDep, desk: DeskDep,
    attachment_id: Annotated[str, Path(min_length=1, max_length=100,
                                       pattern=r"^[A-Za-z0-9-]+$")],
) -> Response:
    doc = await desk.tickets.attachment(ticket.id, attachment_id)
    if doc is None:
        raise ApiError(404, "not_found", f"no attachment {attachment_id} on {ticket.number}")
    filename = quote(str(doc["filename"]), safe="")
    return Response(
        content=bytes(doc["content"]), media_type=str(doc["content_type"]),
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{filename}",
                 "X-Content-Type-Options": "nosniff"},
    )
