"""What the routes depend on: the use cases, and the requesters' rate limit."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from sportello_knowledge.service.archive import Archive
from sportello_knowledge.service.finder import Finder
from sportello_knowledge.service.indexing import IndexKeeper
from sportello_knowledge.service.library import Library
from sportello_runtime.http import ApiError, from_state, shows_service_token
from sportello_runtime.ratelimit import RateLimiter


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _from_a_service(request: Request) -> bool:
    """The requester portal calls for many requesters from one address, and limits each
    of them itself; it shows the service token."""
    expected = request.app.state.service.settings.service_token
    return expected is not None and shows_service_token(request, expected.get_secret_value())


def rate_limited(request: Request) -> None:
    """Requesters' doors: a token bucket per client address (a service excepted)."""
    if _from_a_service(request):
        return
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.take(client_of(request), time.monotonic())
    if wait is not None:
        raise ApiError(429, "rate_limited", "too many searches; try again shortly",
                       headers={"Retry-After": str(max(1, round(wait)))})


LibraryDep = Annotated[Library, Depends(from_state(Library, "library"))]
FinderDep = Annotated[Finder, Depends(from_state(Finder, "finder"))]
ArchiveDep = Annotated[Archive, Depends(from_state(Archive, "archive"))]
KeeperDep = Annotated[IndexKeeper, Depends(from_state(IndexKeeper, "keeper"))]
RateLimited = Depends(rate_limited)
