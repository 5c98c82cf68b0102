"""Payload models of every integration event and the routing key of each.

The routing key of an event is its ``type`` (``ticket.created``). Fields may
grow additively; consumers ignore fields they do not know. A breaking change
is a new ``schema_version`` published side by side until consumers move.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field

from sportello_contracts.enums import (
    Author,
    Channel,
    ContractTier,
    CustomerType,
    EscalationKind,
    Impact,
    Priority,
    SlaMetric,
    SupportLevel,
    TicketStatus,
    Urgency,
    Visibility,
)
from sportello_contracts.envelope import EventEnvelope

SHORT = 200
LONG = 20_000


class EventPayload(BaseModel):
    """Base of every payload; ``event_type`` is the routing key."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    event_type: ClassVar[str]
    ticket_id: str = Field(min_length=1, max_length=SHORT)


class Requester(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=SHORT)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=50)
    language: str = Field(default="en", pattern=r"^[a-z]{2}$")
    department: str | None = Field(default=None, max_length=SHORT)
    customer_type: CustomerType = CustomerType.PRIVATE
    contract_tier: ContractTier | None = None


# --- intake -----------------------------------------------------------------


class TicketCreated(EventPayload):
    event_type: ClassVar[str] = "ticket.created"

    number: str = Field(max_length=50)
    channel: Channel
    requester: Requester
    subject: str = Field(max_length=SHORT)
    description: str = Field(max_length=LONG)
    category_hint: str | None = Field(default=None, max_length=SHORT)
    impact: Impact | None = None
    urgency: Urgency | None = None
    created_at: AwareDatetime


class TicketMessageAdded(EventPayload):
    event_type: ClassVar[str] = "ticket.message_added"

    number: str
    message_id: str
    author: Author
    visibility: Visibility
    channel: Channel | None = None
    body: str = Field(max_length=LONG)
    at: AwareDatetime


class TicketStatusChanged(EventPayload):
    event_type: ClassVar[str] = "ticket.status_changed"

    number: str
    from_status: TicketStatus
    to_status: TicketStatus
    reason: str | None = Field(default=None, max_length=SHORT)
    version: int = Field(ge=1, description="The ticket's version after the change")


class TicketResolved(EventPayload):
    event_type: ClassVar[str] = "ticket.resolved"

    number: str
    resolution: str = Field(max_length=LONG)
    resolved_by: str | None = None


class TicketClosed(EventPayload):
    event_type: ClassVar[str] = "ticket.closed"

    number: str
    reason: str = Field(default="closed", max_length=SHORT)
    subject: str = Field(default="", max_length=SHORT)
    description: str = Field(default="", max_length=LONG)
    resolution: str | None = Field(default=None, max_length=LONG)
    category: str | None = None
    language: str | None = Field(default=None, pattern=r"^[a-z]{2}$",
                                 description="The requester's language")
    level: SupportLevel | None = Field(default=None, description="The level that held it last")
    created_at: AwareDatetime | None = None
    resolved_at: AwareDatetime | None = None


class TicketReopened(EventPayload):
    event_type: ClassVar[str] = "ticket.reopened"

    number: str
    reason: str | None = Field(default=None, max_length=SHORT)


class TicketRated(EventPayload):
    event_type: ClassVar[str] = "ticket.rated"

    number: str
    score: int = Field(ge=1, le=5)
    comment: str | None = Field(default=None, max_length=LONG)


# --- routing ----------------------------------------------------------------


class TicketTriaged(EventPayload):
    event_type: ClassVar[str] = "ticket.triaged"

    category: str
    priority: Priority
    impact: Impact
    urgency: Urgency
    customer_type: CustomerType
    contract_tier: ContractTier | None = None
    department: str | None = None
    rules_version: int | None = None
    decided_by: str | None = Field(
        default=None, pattern=r"^(hint|rule|model|default)$",
        description="What chose the category: the channel's hint, a rule, the learned model, "
                    "or nothing (the general category)")
    rule: int | None = Field(default=None, ge=0,
                             description="The policy rule that chose it (decided_by rule)")
    model_version: int | None = Field(
        default=None, ge=1, description="The learned model consulted when no rule decided "
                                        "(also when its guess fell below the threshold)")
    confidence: float | None = Field(default=None, ge=0, le=1,
                                     description="The model's confidence in its guess")


class TicketAssigned(EventPayload):
    event_type: ClassVar[str] = "ticket.assigned"

    level: SupportLevel
    group_id: str
    group_name: str
    agent_id: str | None = None
    sequence: int = Field(ge=1, description="Routing's per-ticket sequence; newer wins")
    reason: str | None = Field(default=None, max_length=SHORT)
    owner_group_id: str | None = Field(
        default=None, description="After a hand-back: the higher group that keeps owning "
        "the fix while group_id talks to the requester")


class TicketEscalated(EventPayload):
    event_type: ClassVar[str] = "ticket.escalated"

    from_level: SupportLevel
    to_level: SupportLevel
    from_group: str | None = None
    to_group: str
    kind: EscalationKind
    reason: str = Field(max_length=SHORT)
    actor: str | None = None
    sequence: int = Field(ge=1)


class TicketRecategorised(EventPayload):
    """A coordinator corrected the category: the ticket stays where it is, and the closed
    ticket teaches the learned triage the corrected one."""

    event_type: ClassVar[str] = "ticket.recategorised"

    from_category: str
    to_category: str
    reason: str = Field(max_length=SHORT)
    actor: str | None = None


class TriageModelActivated(BaseModel):
    """Routing's learned triage switched model (a better one trained, or a rollback): every
    routing replica loads it. Not about one ticket, so not an ``EventPayload``."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    event_type: ClassVar[str] = "triage.model_activated"

    version: int | None = Field(ge=1, description="None: no model any more (rolled back "
                                                  "past the first)")
    previous_version: int | None = None
    reason: str = Field(max_length=SHORT)
    at: AwareDatetime


class TicketPriorityChanged(EventPayload):
    event_type: ClassVar[str] = "ticket.priority_changed"

    from_priority: Priority | None = None
    to_priority: Priority
    reason: str = Field(max_length=SHORT)
    actor: str | None = None


# --- sla --------------------------------------------------------------------


class _SlaClockEvent(EventPayload):
    clock_id: str
    metric: SlaMetric
    priority: Priority | None = None
    level: SupportLevel | None = None
    due_at: AwareDatetime


class SlaWarning(_SlaClockEvent):
    event_type: ClassVar[str] = "sla.warning"

    threshold_percent: int = Field(ge=1, le=99)


class SlaBreached(_SlaClockEvent):
    event_type: ClassVar[str] = "sla.breached"


class SlaMet(_SlaClockEvent):
    event_type: ClassVar[str] = "sla.met"

    stopped_at: AwareDatetime


class SlaClockStopped(EventPayload):
    """A clock stopped for good (the answer came, the ticket was resolved or closed), with
    the business time it counted, met or not: what analytics reports business times by."""

    event_type: ClassVar[str] = "sla.clock_stopped"

    clock_id: str
    metric: SlaMetric
    priority: Priority | None = None
    level: SupportLevel | None = None
    business_s: float = Field(ge=0, description="Business time counted, pauses left out")
    target_s: int = Field(ge=0)
    met: bool
    stopped_at: AwareDatetime


class SlaTimeLimitSet(EventPayload):
    """The requester's time limit: the running resolution clock's due instant, announced
    whenever it starts or moves (priority change, pause, resume, reopening). ``due_at`` is
    None while the clock is paused (waiting for the requester). ``as_of`` orders them: a
    consumer keeps the newest."""

    event_type: ClassVar[str] = "sla.time_limit_set"

    clock_id: str
    priority: Priority
    due_at: AwareDatetime | None
    as_of: AwareDatetime


# --- knowledge --------------------------------------------------------------


class KbArticlePublished(BaseModel):
    """Not about one ticket, so not an ``EventPayload``."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    event_type: ClassVar[str] = "kb.article_published"

    article_id: str
    title: str = Field(max_length=SHORT)
    version: int = Field(ge=1)
    language: str = "en"
    audience: str = Field(default="public", description="public (requesters) or internal")
    category: str | None = Field(default=None, max_length=SHORT)


class KbArticleChanged(BaseModel):
    """Any saved change to an article (an edit, a step of its workflow, a revert): what
    every knowledge replica hears to bring its own search index up to date."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    event_type: ClassVar[str] = "kb.article_changed"

    article_id: str
    version: int = Field(ge=1)
    status: str


class KbCaseArchived(EventPayload):
    """A closed ticket kept as a searchable case (internal): for the replicas' indexes."""

    event_type: ClassVar[str] = "kb.case_archived"

    number: str


class KbCandidateCreated(EventPayload):
    event_type: ClassVar[str] = "kb.candidate_created"

    candidate_id: str
    title: str = Field(max_length=SHORT)


class ArticleSuggestion(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    article_id: str
    title: str = Field(max_length=SHORT)
    url: str | None = None
    score: float


class CaseSuggestion(BaseModel):
    """A similar solved ticket, for the agent only."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ticket_id: str
    number: str
    title: str = Field(max_length=SHORT)
    score: float


class KbSuggestionsReady(EventPayload):
    event_type: ClassVar[str] = "kb.suggestions_ready"

    suggestions: list[ArticleSuggestion] = Field(
        description="Public articles: what the requester is told")
    internal: list[ArticleSuggestion] = Field(
        default_factory=list, description="Internal articles, for the agent's workspace")
    similar_cases: list[CaseSuggestion] = Field(
        default_factory=list, description="Solved tickets like this one, for the agent")


class KbFaqProposed(BaseModel):
    """A recurring problem with no article: the tickets of one period that look alike."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    event_type: ClassVar[str] = "kb.faq_proposed"

    proposal_id: str
    period: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}$")
    language: str
    title: str = Field(max_length=SHORT)
    terms: list[str]
    ticket_ids: list[str]
    size: int = Field(ge=1)


class KbDeflected(BaseModel):
    """A requester said an article solved the problem: a ticket not opened."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    event_type: ClassVar[str] = "kb.deflected"

    article_id: str
    language: str
    query: str | None = Field(default=None, max_length=SHORT)


AnyPayload = (
    TicketCreated
    | TicketMessageAdded
    | TicketStatusChanged
    | TicketResolved
    | TicketClosed
    | TicketReopened
    | TicketRated
    | TicketTriaged
    | TicketAssigned
    | TicketEscalated
    | TicketPriorityChanged
    | TicketRecategorised
    | TriageModelActivated
    | SlaWarning
    | SlaBreached
    | SlaMet
    | SlaTimeLimitSet
    | SlaClockStopped
    | KbArticlePublished
    | KbArticleChanged
    | KbCaseArchived
    | KbCandidateCreated
    | KbSuggestionsReady
    | KbFaqProposed
    | KbDeflected
)

EVENT_PAYLOADS: dict[str, type[BaseModel]] = {
    model.event_type: model
    for model in AnyPayload.__args__
}
"""Routing key -> payload model, for every event in DESIGN.md (and ``sla.time_limit_set``)."""

P = TypeVar("P", bound=BaseModel)


class UnknownEventType(ValueError):
    pass


def new_event(
    payload: BaseModel,
    *,
    producer: str,
    correlation_id: str,
    causation_id: str | None = None,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> EventEnvelope:
    """Wrap a payload in an envelope whose type is the payload's routing key."""
    event_type: str = payload.event_type  # type: ignore[attr-defined]
    extra: dict[str, Any] = {}
    if occurred_at is not None:
        extra["occurred_at"] = occurred_at
    if event_id is not None:
        extra["event_id"] = event_id
    return EventEnvelope(
        type=event_type,
        producer=producer,
        correlation_id=correlation_id,
        causation_id=causation_id,
        ticket_id=getattr(payload, "ticket_id", None),
        payload=payload.model_dump(mode="json"),
        **extra,
    )


def parse_payload(envelope: EventEnvelope, model: type[P] | None = None) -> P:
    """Validate an envelope's payload against its type's model (raises on mismatch)."""
    registered = EVENT_PAYLOADS.get(envelope.type)
    if registered is None:
        raise UnknownEventType(f"unknown event type {envelope.type!r}")
    target = model or registered
    if model is not None and model is not registered:
        raise UnknownEventType(f"{envelope.type!r} does not carry {model.__name__}")
    return target.model_validate(envelope.payload)  # type: ignore[return-value]
