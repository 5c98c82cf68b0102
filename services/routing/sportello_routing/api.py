"""Routing's internal HTTP routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from sportello_contracts.enums import SupportLevel
from sportello_routing.store import AssignmentStore
from sportello_runtime.http import ApiError

internal = APIRouter(tags=["assignments"])


class AssignmentView(BaseModel):
    ticket_id: str
    number: str
    level: SupportLevel
    group_id: str
    group_name: str
    agent_id: str | None
    sequence: int
    created_at: datetime
    history: list[dict[str, Any]]
    pending_events: int


def assignments_of(request: Request) -> AssignmentStore:
    store: AssignmentStore = request.app.state.assignments
    return store


@internal.get("/assignments/{ticket_id}", response_model=AssignmentView)
async def get_assignment(
    ticket_id: Annotated[str, Path(max_length=100)],
    assignments: Annotated[AssignmentStore, Depends(assignments_of)],
) -> AssignmentView:
    """Who holds the ticket, its history, and events not yet confirmed by the broker."""
    assignment = await assignments.get(ticket_id)
    if assignment is None:
        raise ApiError(404, "not_found", f"no assignment for ticket {ticket_id}")
    return AssignmentView(
        ticket_id=assignment.ticket_id,
        number=assignment.number,
        level=assignment.level,
        group_id=assignment.group_id,
        group_name=assignment.group_name,
        agent_id=assignment.agent_id,
        sequence=assignment.sequence,
        created_at=assignment.created_at,
        history=list(assignment.history),
        pending_events=await assignments.pending_events(ticket_id),
    )
