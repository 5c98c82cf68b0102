"""Signing in and out, and who am I."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from sportello_gateway.api.deps import (
    CSRF_COOKIE,
    REFRESH_COOKIE,
    SESSION_COOKIE,
    AccountsDep,
    DeskDep,
    PrincipalDep,
    SettingsDep,
    check_csrf,
    client_ip,
    from_services,
    guard,
)
from sportello_gateway.domain.access import ROLE_PERMISSIONS, Principal
from sportello_gateway.service.accounts import Accounts, Locked, NotSignedIn, Tokens
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
async def logout(request: Request, response: Response, principal: PrincipalDep,
                 accounts: AccountsDep) -> None:
    """Ends the session: its refresh token and its access tokens stop working (and the
    console's cookies are cleared)."""
    await accounts.logout(principal, client_ip(request))
    _clear_session(response)


class Me(BaseModel):
    username: str
    name: str
    role: str
    level: str | None
    groups: list[str]
    via: str
    permissions: list[str]
    language: str


async def _me(principal: Principal, accounts: Accounts) -> Me:
    user = None if principal.via == "api_key" else await accounts.store.user(principal.subject)
    return Me(username=principal.subject, name=principal.name, role=principal.role.value,
              level=principal.level.value if principal.level else None,
              groups=sorted(principal.groups), via=principal.via,
              permissions=sorted(p.value for p in ROLE_PERMISSIONS[principal.role]),
              language=user.language if user else "en")


@auth.get("/api/me", response_model=Me)
async def me(principal: PrincipalDep, accounts: AccountsDep) -> Me:
    return await _me(principal, accounts)


class LanguageIn(Model):
    language: Literal["en", "it"]


@auth.put("/api/me/language", response_model=Me)
async def my_language(body: LanguageIn, principal: PrincipalDep, accounts: AccountsDep) -> Me:
    """The console's language for this user (English or Italian)."""
    if principal.via == "api_key":
        raise ApiError(409, "refused", "an API key has no language", field="language")
    await accounts.update_user(principal.subject, {"language": body.language})
    return await _me(principal, accounts)


# --- the console's session: cookies scripts cannot read ---------------------------------
# The console never holds a token: the access and refresh tokens live in HttpOnly,
# SameSite=Strict cookies, and every change it sends carries the CSRF cookie's value in
# X-CSRF-Token (a page of another origin can neither read the cookie nor set the header).


def _set_session(response: Response, request: Request, tokens: Tokens,
                 refresh_ttl_s: int) -> None:
    secure = request.url.scheme == "https"
    response.set_cookie(SESSION_COOKIE, tokens.access_token, max_age=refresh_ttl_s,
                        httponly=True, samesite="strict", secure=secure, path="/")
    response.set_cookie(REFRESH_COOKIE, tokens.refresh_token, max_age=refresh_ttl_s,
                        httponly=True, samesite="strict", secure=secure, path="/api/auth")
    response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), max_age=refresh_ttl_s,
                        httponly=False, samesite="strict", secure=secure, path="/")


def _clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(REFRESH_COOKIE, path="/api/auth")
    response.delete_cookie(CSRF_COOKIE, path="/")


@auth.post("/api/auth/console/login", response_model=Me)
async def console_login(body: LoginIn, request: Request, response: Response,
                        accounts: AccountsDep, settings: SettingsDep) -> Me:
    """The console's sign-in: the same checks as /api/auth/login, the tokens in cookies."""
    tokens = await login(body, request, accounts)
    _set_session(response, request, Tokens(tokens.access_token, tokens.refresh_token,
                                           tokens.expires_in), settings.refresh_token_ttl_s)
    principal = accounts.tokens.read(tokens.access_token)
    return await _me(principal, accounts)


@auth.post("/api/auth/console/refresh", status_code=204)
async def console_refresh(request: Request, response: Response, accounts: AccountsDep,
                          settings: SettingsDep) -> None:
    """A new access token from the refresh cookie (which rotates), when the old one expired:
    the console retries what it was sending, nothing typed is lost."""
    refresh_token = request.cookies.get(REFRESH_COOKIE)
    if not refresh_token:
        raise ApiError(401, "unauthorized", "no console session; sign in")
    check_csrf(request)
    try:
        tokens = await accounts.refresh(refresh_token, client_ip(request))
    except NotSignedIn as exc:
        _clear_session(response)
        raise ApiError(401, "unauthorized", str(exc)) from exc
    _set_session(response, request, tokens, settings.refresh_token_ttl_s)


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

