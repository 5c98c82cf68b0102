"""Signing in and out, and who am I."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from sportello_gateway.api.deps import (
    AccountsDep,
    DeskDep,
    PrincipalDep,
    client_ip,
    from_services,
    guard,
)
from sportello_gateway.domain.access import ROLE_PERMISSIONS
from sportello_gateway.service.accounts import Locked, NotSignedIn
from sportello_runtime.http import ApiError

auth = APIRouter(tags=["auth"], dependencies=[Depends(guard)])


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Model):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1_000)


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    expires_in: int = Field(description="Seconds the access token is good for")
    token_type: str = "Bearer"  # noqa: S105 - the scheme's name, not a secret


class RefreshIn(Model):
    refresh_token: str = Field(min_length=1, max_length=200)


@auth.post("/api/auth/login", response_model=TokensOut)
async def login(body: LoginIn, request: Request, accounts: AccountsDep) -> TokensOut:
    """A short-lived access token (Authorization: Bearer) and a refresh token that rotates:
    each refresh spends it and gives a new one. Repeated failures lock the account."""
    try:
        tokens = await accounts.login(body.username, body.password, client_ip(request))
    except Locked as exc:
        seconds = max(1, int((exc.until - datetime.now(exc.until.tzinfo)).total_seconds()))
        raise ApiError(423, "locked", "too many failed sign-ins; the account is locked",
                       extra={"locked_until": exc.until.isoformat()},
                       headers={"Retry-After": str(seconds)}) from exc
    except NotSignedIn as exc:
        raise ApiError(401, "unauthorized", str(exc)) from exc
    return TokensOut(access_token=tokens.access_token, refresh_token=tokens.refresh_token,
                     expires_in=tokens.expires_in)


@auth.post("/api/auth/refresh", response_model=TokensOut)
async def refresh(body: RefreshIn, request: Request, accounts: AccountsDep) -> TokensOut:
    try:
        tokens = await accounts.refresh(body.refresh_token, client_ip(request))
    except NotSignedIn as exc:
        raise ApiError(401, "unauthorized", str(exc)) from exc
    return TokensOut(access_token=tokens.access_token, refresh_token=tokens.refresh_token,
                     expires_in=tokens.expires_in)


@auth.post("/api/auth/logout", status_code=204)
async def logout(request: Request, principal: PrincipalDep, accounts: AccountsDep) -> None:
    """Ends the session: its refresh token and its access tokens stop working."""
    await accounts.logout(principal, client_ip(request))


class Me(BaseModel):
    username: str
    name: str
    role: str
    level: str | None
    groups: list[str]
    via: str
    permissions: list[str]


@auth.get("/api/me", response_model=Me)
async def me(principal: PrincipalDep) -> Me:
    return Me(username=principal.subject, name=principal.name, role=principal.role.value,
              level=principal.level.value if principal.level else None,
              groups=sorted(principal.groups), via=principal.via,
              permissions=sorted(p.value for p in ROLE_PERMISSIONS[principal.role]))


class AvailabilityIn(Model):
    available: bool


@auth.put("/api/me/availability")
async def my_availability(body: AvailabilityIn, request: Request, principal: PrincipalDep,
                          desk: DeskDep) -> Any:
    """An agent going on or off shift (coming on shift takes waiting tickets at once)."""
    with from_services():
        answer = await desk.backends["routing"].call(
            "PUT", f"/agents/{principal.subject}/availability",
            json={"available": body.available})
    await desk.audit.record(actor=principal, action="agent.availability",
                            ip=client_ip(request), object_type="agent",
                            object_id=principal.subject, after={"available": body.available})
    return answer

