"""What every operator route depends on: who is calling, whether the route's rule lets
them, their rate limit, and where the request came from (for the audit log)."""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from sportello_gateway.backends import Refused, Unavailable
from sportello_gateway.domain.access import PUBLIC, Permission, Principal, may, rule_of
from sportello_gateway.service.accounts import Accounts, NotSignedIn
from sportello_gateway.service.desk import Desk
from sportello_gateway.service.live import LiveHub
from sportello_gateway.service.metrics import GatewayMetrics
from sportello_gateway.service.webhooks import Webhooks
from sportello_gateway.settings import GatewaySettings
from sportello_runtime.http import ApiError
from sportello_runtime.ratelimit import RateLimiter

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "sportello_session"
REFRESH_COOKIE = "sportello_refresh"
CSRF_COOKIE = "sportello_csrf"
CSRF_HEADER = "x-csrf-token"


def check_csrf(request: Request) -> None:
    """A change sent with the console's cookies must carry the CSRF cookie's value in a
    header: only a page of our own origin can read that cookie."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not hmac.compare_digest(cookie, header):
        raise ApiError(403, "csrf", "missing or wrong X-CSRF-Token for a cookie session",
                       field=CSRF_HEADER)


def accounts_of(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.accounts
    return accounts


def desk_of(request: Request) -> Desk:
    desk: Desk = request.app.state.desk
    return desk


def webhooks_of(request: Request) -> Webhooks:
    webhooks: Webhooks = request.app.state.webhooks
    return webhooks


def hub_of(request: Request) -> LiveHub:
    hub: LiveHub = request.app.state.hub
    return hub


def settings_of(request: Request) -> GatewaySettings:
    settings = request.app.state.service.settings
    assert isinstance(settings, GatewaySettings)
    return settings


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _rule(request: Request) -> Permission | str | None:
    route = request.scope.get("route")
    path = route.path if isinstance(route, APIRoute) else request.url.path
    return rule_of(request.method, path)


async def guard(request: Request) -> None:
    """On every operator route: the route's rule from ``domain.access.ROUTES`` (none:
    refused to all), the caller signed in, allowed, and within its rate."""
    rule = _rule(request)
    if rule == PUBLIC:
        return
    if rule is None:
        raise ApiError(403, "forbidden", "this route has no access rule, so nobody may call it")
    assert isinstance(rule, Permission)
    accounts = accounts_of(request)
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
    api_key = request.headers.get("x-api-key")
    if bearer is None and api_key is None and SESSION_COOKIE in request.cookies:
        bearer = request.cookies[SESSION_COOKIE]  # the console
        if request.method not in SAFE_METHODS:
            check_csrf(request)
    try:
        principal = await accounts.authenticate(bearer, api_key)
    except NotSignedIn as exc:
        raise ApiError(401, "unauthorized", str(exc),
                       headers={"WWW-Authenticate": 'Bearer realm="sportello"'}) from exc
    request.state.principal = principal
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.take(principal.subject, time.monotonic())
    if wait is not None:
        metrics: GatewayMetrics = request.app.state.metrics
        metrics.rate_limited.labels(principal.via).inc()
        raise ApiError(429, "rate_limited", "too many requests; slow down",
                       headers={"Retry-After": str(max(1, math.ceil(wait)))})
    if not may(principal, rule, writes=request.method not in SAFE_METHODS):
        raise ApiError(403, "forbidden",
                       f"a {principal.role.value} may not do this ({rule.value})"
                       + ("" if principal.via != "api_key" or request.method in SAFE_METHODS
                          else " or the key is read-only"))


def principal_of(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


AccountsDep = Annotated[Accounts, Depends(accounts_of)]
DeskDep = Annotated[Desk, Depends(desk_of)]
WebhooksDep = Annotated[Webhooks, Depends(webhooks_of)]
HubDep = Annotated[LiveHub, Depends(hub_of)]
SettingsDep = Annotated[GatewaySettings, Depends(settings_of)]
PrincipalDep = Annotated[Principal, Depends(principal_of)]


@contextmanager
def from_services() -> Iterator[None]:
    """A service's refusal keeps its status and reasons; a service down is a 503."""
    try:
        yield
    except Refused as exc:
        body = exc.body
        raise ApiError(exc.status, str(body.get("error", "refused")),
                       str(body.get("message", body.get("detail", "refused"))),
                       field=body.get("field"),
                       extra={k: v for k, v in body.items()
                              if k not in ("error", "message", "field")}) from exc
    except Unavailable as exc:
        raise ApiError(503, "unavailable", str(exc), extra={"service": exc.service},
                       headers={"Retry-After": "5"}) from exc
