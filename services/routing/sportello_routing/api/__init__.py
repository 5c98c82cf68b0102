"""Routing's internal HTTP API: the desk (groups, agents, triage policy, queues, moving
tickets) and the learned triage (its models). Operators reach it through the gateway, which
authenticates them and checks their role; here every route is behind the service token."""

from fastapi import APIRouter

from sportello_routing.api.desk import desk
from sportello_routing.api.learning import learning

internal = APIRouter()
internal.include_router(desk)
internal.include_router(learning)

__all__ = ["internal"]
