"""What every door of intake's API shares: the dependencies (desk, settings, the ticket
named in the path), the ticket's views and the desk's refusals as HTTP errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Path, Request

from sportello_contracts.api import (
    AttachmentView,
    MessageView,
    RatingView,
    TicketView,
)
from sportello_intake.domain import (
    IllegalTransition,
    Message,
    MissingResolution,
    RatingRefused,
    Ticket,
    TicketClosedForReplies,
)
from sportello_intake.doors.mail import MailRejected
from sportello_intake.service import AttachmentRefused, Desk, TicketMissing
from sportello_intake.settings import IntakeSettings
from sportello_runtime.concurrency import ConcurrencyConflict
from sportello_runtime.http import ApiError

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


