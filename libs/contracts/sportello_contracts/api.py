"""Models of the services' HTTP APIs that more than one service (or the gateway) reads."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sportello_contracts.enums import (
    Author,
    Channel,
    Impact,
    SupportLevel,
    TicketStatus,
    Urgency,
    Visibility,
)
from sportello_contracts.events import LONG, SHORT, Requester

FILENAME = 255


class AttachmentUpload(BaseModel):
    """A file sent with a ticket or message; the content is base64 and size-limited by intake."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=FILENAME)
    content_type: str = Field(
        default="application/octet-stream", max_length=100,
        pattern=r"^[\w.+-]+/[\w.+-]+$",
    )
    content_base64: str = Field(min_length=1)


class TicketCreateRequest(BaseModel):
    """What a channel posts to open a ticket. Unknown fields are refused, never stored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    requester: Requester
    subject: str = Field(min_length=1, max_length=SHORT)
    description: str = Field(min_length=1, max_length=LONG)
    channel: Channel
    category_hint: str | None = Field(default=None, max_length=SHORT)
    impact: Impact | None = Field(default=None, description="When the channel knows it")
    urgency: Urgency | None = Field(default=None, description="When the channel knows it")
    attachments: list[AttachmentUpload] = Field(default=[], max_length=10)


class AttachmentView(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int


class MessageView(BaseModel):
    """One entry of a ticket's conversation."""

    id: str
    author: Author
    author_name: str | None = None
    visibility: Visibility
    channel: Channel | None = None
    body: str
    at: AwareDatetime
    attachments: list[AttachmentView] = []
    call: dict[str, Any] | None = Field(default=None, description="A phone call's log")


class RatingView(BaseModel):
    score: int
    comment: str | None = None
    at: AwareDatetime


class TicketView(BaseModel):
    """A ticket as operators and other services see it."""

    id: str
    number: str
    status: TicketStatus
    channel: Channel
    requester: Requester
    subject: str
    description: str
    category_hint: str | None = None
    level: SupportLevel | None = None
    group_id: str | None = None
    group_name: str | None = None
    agent_id: str | None = None
    resolution: str | None = None
    resolved_at: AwareDatetime | None = None
    rating: RatingView | None = None
    version: int
    created_at: AwareDatetime
    updated_at: AwareDatetime
    time_limit: AwareDatetime | None = None
    """The resolution due instant SLA last announced (None: not yet, or paused)."""
    messages: list[MessageView] = []
