"""The internal ticket API, for the gateway and other services (behind the service
token): the whole record, the lifecycle, agents' messages and attachments."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from sportello_contracts import utc_now
from sportello_contracts.api import (
    TicketView,
)
from sportello_contracts.enums import Author, TicketStatus, Visibility
from sportello_contracts.events import LONG, SHORT
from sportello_intake.api.channels import AGAIN, ChannelReceipt, PhoneCallIn, log_phone_call
from sportello_intake.api.common import DeskDep, TicketDep, refusals, to_view
from sportello_intake.domain import (
    SET_BY_ROUTING,
    Message,
    Ticket,
)
from sportello_runtime.http import ApiError

internal = APIRouter(tags=["tickets"])


# --- internal ticket API ----------------------------------------------------


@internal.get("/tickets/{number}", response_model=TicketView)
async def get_ticket(ticket: TicketDep) -> TicketView:
    """The whole record: conversation (internal notes included) and lifecycle."""
    return to_view(ticket)


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TicketStatus
    expected_version: int | None = Field(
        default=None, ge=1, le=2**31 - 1,
        description="The version you saw; 409 when the ticket changed since"
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
                                           actor=body.actor, resolution=body.resolution,
                                           pinned=body.expected_version is not None)
    return to_view(changed)


class MessageIn(BaseModel):
    """An agent's reply (public: mailed to the requester) or internal note."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    author: Literal[Author.AGENT, Author.SYSTEM] = Author.AGENT
    author_id: str = Field(min_length=1, max_length=100)
    author_name: str | None = Field(default=None, max_length=SHORT)
    visibility: Visibility = Visibility.PUBLIC
    body: str = Field(min_length=1, max_length=LONG)
    expected_version: int | None = Field(default=None, ge=1, le=2**31 - 1)


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


@internal.post("/calls", response_model=ChannelReceipt, status_code=status.HTTP_201_CREATED,
               responses=AGAIN)
async def log_call(body: PhoneCallIn, response: Response, desk: DeskDep) -> ChannelReceipt:
    """A call an agent logs through the gateway: the same as the phone door, a new ticket or
    an entry in ``ticket_number``'s conversation."""
    return await log_phone_call(body, response, desk)
