"""HTTP conventions every service shares: error bodies, size limits, RED metrics, service token."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sportello_runtime.metrics import ServiceMetrics


class ApiError(HTTPException):
    """A 4xx/5xx with a machine-readable ``error`` code and optional details."""

    def __init__(
        self,
        status_code: int,
        error: str,
        message: str,
        *,
        field: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.error = error
        self.field = field
        self.extra = extra or {}


def _error_body(error: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, "message": message, **{k: v for k, v in extra.items() if v is not None}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            field = ".".join(loc[1:] if loc and loc[0] in {"body", "query", "path", "header"}
                             else loc)
            detail.append({"field": field or "(body)", "in": loc[0] if loc else "body",
                           "message": err.get("msg", "invalid"), "type": err.get("type")})
        return JSONResponse(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            content=_error_body("validation_failed", "the request is not valid", detail=detail),
        )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code,
            content=_error_body(exc.error, str(exc.detail), field=exc.field, **exc.extra),
            headers=exc.headers,
        )

    @app.exception_handler(ConnectionFailure)
    async def _database_away(_: Request, exc: ConnectionFailure) -> JSONResponse:
        # The database did not answer in time (a failover, a paused pool): a 503 tells the
        # caller to try again, where a 500 said the service itself was broken.
        return JSONResponse(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            content=_error_body("unavailable", "the database is not answering; try again"),
            headers={"Retry-After": "2"},
        )

    # Starlette's class, not FastAPI's subclass: the framework raises the former too (a
    # body it cannot parse), and the answer must have the same shape whichever it is.
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized",
                403: "forbidden"}.get(exc.status_code, "http_error")
        return JSONResponse(
            status_code=exc.status_code,
            content=_error_body(code, str(exc.detail)),
            headers=getattr(exc, "headers", None),
        )


ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "Every error answer: a code, why, and the field at fault when one is.",
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "A stable code, e.g. validation_failed"},
        "message": {"type": "string", "description": "Why, for a person"},
        "field": {"type": "string", "description": "The field at fault"},
        "detail": {"type": "array", "description": "Validation: one entry per field",
                   "items": {"type": "object", "properties": {
                       "field": {"type": "string"}, "in": {"type": "string"},
                       "message": {"type": "string"},
                       "type": {"type": ["string", "null"]}}}},
    },
    "additionalProperties": True,
}


def document_errors(app: FastAPI) -> None:
    """The OpenAPI document says what errors look like: FastAPI documents its own 422
    shape, which no route here answers, and none of the other error answers (401, 404,
    409, 413, 429, 503...). Every operation gets the one ``Error`` body, for its 422 and
    as its ``default`` answer, so a client (and a fuzzer checking answers against the
    document) knows the shape of whatever error comes back."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if getattr(app.state, "errors_documented", False) and app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                if "422" in responses:
                    responses["422"] = {"description": "A field is not valid (`detail` names "
                                        "each one)", "content": error}
                responses.setdefault("default", {"description": "An error", "content": error})
        for unused in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(unused, None)
        app.openapi_schema = schema
        app.state.errors_documented = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class BodySizeLimit:
    """Refuses bodies over ``max_bytes`` with 413, whether or not Content-Length is honest.

    The body is read (at most ``max_bytes`` of it) before the app runs and then
    replayed: FastAPI would turn an error raised while it reads into a 400.
    """

    def __init__(self, app: ASGIApp, max_bytes: int,
                 larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = sorted((larger or {}).items(), key=lambda item: -len(item[0]))
        """Path prefix -> limit, for the few doors that carry files (longest prefix wins)."""

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.larger:
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(send, limit)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], then=receive), send)

    async def _refuse(self, send: Send, limit: int) -> None:
        response = JSONResponse(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            content=_error_body(
                "payload_too_large", f"the request body exceeds {limit} bytes"
            ),
        )
        await response({"type": "http"}, _no_receive, send)


class LoopLag:
    """How late this process's event loop runs, from a timer that wakes every
    ``interval_s``: ``late_s`` is how long ago it should have woken while it still has not
    (the loop is behind right now), ``last_s`` how late it woke last time. Short of CPU, a
    process answers everything that late, refusals included: the lag is what the clients
    feel before any request is counted."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.last_s = 0.0
        self._due: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def late_s(self) -> float:
        if self._due is None:
            return 0.0
        return max(0.0, asyncio.get_running_loop().time() - self._due)

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._due = loop.time() + self.interval_s
            self._task = loop.create_task(self._measure())

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._due, self.last_s = None, 0.0
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while self._due is not None:
            await asyncio.sleep(max(0.0, self._due - loop.time()))
            now = loop.time()
            self.last_s = max(0.0, now - self._due)
            self._due = now + self.interval_s


class LoadShedding:
    """Refuses requests with 503 and Retry-After past ``max_in_flight`` at once (0: no
    count), or while the event loop runs more than ``max_loop_lag_s`` late (0: never).

    Past what the process can serve, every request waits longer and all of them time
    out together; refused at once, a client knows to come back and the requests taken
    are served in their usual time. The count bounds the work taken; the lag catches the
    process short of CPU (its consumers busy, a neighbour on the same cores), when even
    the requests under the count wait, and so does every refusal. Health and metrics are
    never refused: an overloaded service must still say so. A request counts until its
    response starts, so that the consoles' long-lived event streams (and a long export)
    do not hold places. The lag is measured while the application runs (its lifespan).
    """

    EXEMPT = ("/health", "/metrics")

    def __init__(self, app: ASGIApp, max_in_flight: int, max_loop_lag_s: float = 0.0,
                 retry_after_s: int = 1,
                 refused_early: Callable[[Scope], str | None] | None = None,
                 lag: LoopLag | None = None) -> None:
        """``lag``: the process's own measure (``Service.loop_lag``), shared with whatever
        else reads it; a new one by default."""
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_loop_lag_s = max_loop_lag_s
        self.refused_early = refused_early
        self.retry_after = str(retry_after_s)
        self.in_flight = 0
        self.lag = lag or LoopLag()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self.max_loop_lag_s:
            self.lag.start()
            try:
                await self.app(scope, receive, send)
            finally:
                await self.lag.stop()
            return
        if scope["type"] != "http" or scope.get("path", "").startswith(self.EXEMPT):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            response = JSONResponse(
                status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                content=_error_body("overloaded", f"{refusal}; try again shortly"),
                headers={"Retry-After": self.retry_after})
            await response(scope, receive, send)
            return
        self.in_flight += 1
        counted = True

        async def started(message: Message) -> None:
            nonlocal counted
            if counted and message["type"] == "http.response.start":
                counted = False
                self.in_flight -= 1
            await send(message)

        try:
            await self.app(scope, receive, started)
        finally:
            if counted:
                self.in_flight -= 1

    def _refusal(self, scope: Scope) -> str | None:
        if self.refused_early is not None:
            early = self.refused_early(scope)
            if early is not None:
                return early
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            return f"more than {self.max_in_flight} requests in progress"
        if self.max_loop_lag_s:
            # The last reading counts while other requests are in progress: the loop is
            # late between two readings too. With none, a late reading was one long
            # computation, over now, and refuses nothing after it.
            late = max(self.lag.late_s, self.lag.last_s if self.in_flight else 0.0)
            if late > self.max_loop_lag_s:
                return f"running {late * 1000:.0f} ms behind"
        return None


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class HttpMetrics:
    """RED metrics per route template (never per raw path: ticket numbers would explode labels)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def capture(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.http_requests.labels(method, template, str(status_code)).inc()
            self.metrics.http_duration.labels(method, template).observe(
                time.perf_counter() - started
            )


def shows_service_token(request: Request, expected: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <expected>``."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode())


def service_token_guard(expected: str | None) -> Any:
    """A dependency demanding ``Authorization: Bearer <SERVICE_TOKEN>`` when one is configured."""

    async def guard(request: Request) -> None:
        if expected is None:
            return
        if not shows_service_token(request, expected):
            raise ApiError(
                status.HTTP_401_UNAUTHORIZED,
                "unauthorized",
                "this internal API needs the service token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return guard


T = TypeVar("T")


def from_state(kind: type[T], name: str) -> Callable[[Request], T]:
    """A route dependency answering what ``wire`` put in ``ServiceWiring.state`` under
    ``name`` (the service's use cases), typed: ``Annotated[Library, Depends(from_state(
    Library, "library"))]``."""

    def dependency(request: Request) -> T:
        found = getattr(request.app.state, name)
        if not isinstance(found, kind):
            raise TypeError(f"app.state.{name} is a {type(found).__name__}, not {kind.__name__}")
        return found

    dependency.__name__ = f"{name}_of"
    return dependency
