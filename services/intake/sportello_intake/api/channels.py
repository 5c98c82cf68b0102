"""The channels' doors: the web form and JSON API, raw mail, chat and phone calls, each
authenticated per channel (API key or HMAC signature)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sportello_contracts.api import (
    TicketCreateRequest,
    TicketView,
)
from sportello_contracts.enums import Channel
from sportello_contracts.events import LONG, SHORT, Requester
from sportello_intake.api.common import DeskDep, refusals, settings_of, to_view
from sportello_intake.doors import signatures
from sportello_intake.doors.mail import MailLimits, read_mail
from sportello_intake.service import Desk, Outcome, decode_uploads
from sportello_intake.settings import IntakeSettings
from sportello_runtime.http import ApiError

channels = APIRouter(tags=["channels"])


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


# --- web form and JSON API --------------------------------------------------

AGAIN: dict[int | str, dict[str, Any]] = {200: {
    "model": ChannelReceipt,
    "description": "Sent before (the same message or call): the same receipt"}}


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
    responses={**AGAIN,
               202: {"description": "a machine wrote it (auto-reply, bounce): not a ticket"},
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
               status_code=status.HTTP_201_CREATED, responses=AGAIN)
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
               status_code=status.HTTP_201_CREATED, responses=AGAIN)
async def phone_call(
    body: PhoneCallIn,
    response: Response,
    _: Annotated[Channel, Depends(channel_door(Channel.PHONE))],
    desk: DeskDep,
) -> ChannelReceipt:
    return await log_phone_call(body, response, desk)


async def log_phone_call(body: PhoneCallIn, response: Response, desk: Desk) -> ChannelReceipt:
    """The phone door's work, shared with the internal API the gateway logs calls through."""
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


