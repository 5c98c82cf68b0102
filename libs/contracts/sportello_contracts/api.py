"""Models of the services' HTTP APIs that more than one service (or the gateway) reads."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sportello_contracts.enums import Channel, Impact, SupportLevel, TicketStatus, Urgency
from sportello_contracts.events import LONG, SHORT, Requester


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


class TicketView(BaseModel):
    """A ticket as operators and other services see it."""

    id: str
    number: str
    status: TicketStatus
    channel: Channel
    requester: Requester
    subject: str
    description: str
    level: SupportLevel | None = None
    group_id: str | None = None
    group_name: str | None = None
    agent_id: str | None = None
    resolution: str | None = None
    version: int
    created_at: AwareDatetime
    updated_at: AwareDatetime
