"""Intake's HTTP routes: the channels' door and the internal ticket API."""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from sportello_contracts import utc_now
from sportello_contracts.api import TicketCreateRequest, TicketView
from sportello_contracts.enums import Channel, TicketStatus
from sportello_intake.domain import (
    SET_BY_ROUTING,
    IllegalTransition,
    MissingResolution,
    Ticket,
    change_status,
    format_number,
    open_ticket,
)
from sportello_intake.settings import IntakeSettings
from sportello_intake.store import ConcurrencyConflict, TicketStore
from sportello_runtime.http import ApiError

channels = APIRouter(tags=["channels"])
internal = APIRouter(tags=["tickets"])


def tickets_of(request: Request) -> TicketStore:
    store: TicketStore = request.app.state.tickets
    return store


def settings_of(request: Request) -> IntakeSettings:
    settings: IntakeSettings = request.app.state.service.settings
    return settings


async def authenticated_channel(
    request: Request,
    x_api_key: Annotated[str | None, Header(description="The channel's API key")] = None,
) -> Channel:
    """Which channel is calling, from its API key (constant-time comparison)."""
    if not x_api_key:
        raise ApiError(401, "unauthorized", "a channel API key is required (X-Api-Key)",
                       headers={"WWW-Authenticate": "ApiKey"})
    presented = x_api_key.encode()
    for name, key in settings_of(request).channel_keys.items():
        if hmac.compare_digest(presented, key.get_secret_value().encode()):
            try:
                return Channel(name)
            except ValueError:
                break
    raise ApiError(401, "unauthorized", "unknown channel API key",
                   headers={"WWW-Authenticate": "ApiKey"})


def to_view(ticket: Ticket) -> TicketView:
    return TicketView(
        id=ticket.id,
        number=ticket.number,
        status=ticket.status,
        channel=ticket.channel,
        requester=ticket.requester,
        subject=ticket.subject,
        description=ticket.description,
        level=ticket.level,
        group_id=ticket.group_id,
        group_name=ticket.group_name,
        agent_id=ticket.agent_id,
        resolution=ticket.resolution,
        version=ticket.version,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
    )


@channels.post(
    "/tickets",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketView,
    responses={401: {"description": "unknown channel"}, 403: {"description": "wrong channel"},
               413: {"description": "body too large"}, 422: {"description": "invalid field"}},
)
async def create_ticket(
    body: TicketCreateRequest,
    request: Request,
    response: Response,
    channel: Annotated[Channel, Depends(authenticated_channel)],
    tickets: Annotated[TicketStore, Depends(tickets_of)],
) -> TicketView:
    """Open a ticket. Answers once the ticket and its ``ticket.created`` event are stored."""
    if body.channel != channel:
        raise ApiError(
            403, "forbidden", f"this API key may only post for channel {channel.value!r}",
            field="channel",
        )
    settings = settings_of(request)
    now = utc_now()
    sequence = await tickets.next_sequence(settings.ticket_prefix, now.year)
    change = open_ticket(
        body,
        ticket_id=str(uuid.uuid4()),
        number=format_number(settings.ticket_prefix, now.year, sequence),
        now=now,
    )
    await tickets.add(change.ticket, change.events)
    request.app.state.tickets_created.labels(change.ticket.channel.value).inc()
    response.headers["Location"] = f"/tickets/{change.ticket.number}"
    return to_view(change.ticket)


@internal.get("/tickets/{number}", response_model=TicketView)
async def get_ticket(
    number: str, tickets: Annotated[TicketStore, Depends(tickets_of)]
) -> TicketView:
    if len(number) > 50:
        raise ApiError(422, "validation_failed", "ticket number too long", field="number")
    ticket = await tickets.by_number(number)
    if ticket is None:
        raise ApiError(404, "not_found", f"no ticket {number}")
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


@internal.post("/tickets/{number}/status", response_model=TicketView)
async def change_ticket_status(
    number: str, body: StatusChange, tickets: Annotated[TicketStore, Depends(tickets_of)]
) -> TicketView:
    """Move the ticket along its lifecycle; an illegal move gets 409 with the allowed ones."""
    if body.status in SET_BY_ROUTING:
        raise ApiError(422, "validation_failed",
                       f"{body.status.value} follows from routing and cannot be set",
                       field="status")
    ticket = await tickets.by_number(number)
    if ticket is None:
        raise ApiError(404, "not_found", f"no ticket {number}")
    if body.expected_version is not None and body.expected_version != ticket.version:
        raise ApiError(409, "conflict", f"the ticket is at version {ticket.version}",
                       field="expected_version", extra={"version": ticket.version})
    try:
        change = change_status(ticket, body.status, reason=body.reason, actor=body.actor,
                               resolution=body.resolution, now=utc_now())
    except IllegalTransition as exc:
        raise ApiError(409, "illegal_transition", str(exc), field="status",
                       extra={"allowed": [s.value for s in exc.allowed]}) from exc
    except MissingResolution as exc:
        raise ApiError(422, "validation_failed", str(exc), field="resolution") from exc
    try:
        await tickets.save(change.ticket, expected_version=ticket.version, events=change.events)
    except ConcurrencyConflict as exc:
        raise ApiError(409, "conflict", "the ticket changed meanwhile; reload it",
                       field="expected_version") from exc
    return to_view(change.ticket)
