"""The operators' console: static files (HTML, one script module, one style sheet) served
by the gateway at ``/``. It talks to the same API, with the same rules and audit, through
cookies scripts cannot read; nothing is loaded from another origin."""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from sportello_runtime.http import ApiError

console = APIRouter(include_in_schema=False)

ASSETS = files("sportello_gateway") / "console"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
          "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "Cache-Control": "no-cache"}


def _asset(name: str) -> Response:
    suffix = name[name.rfind("."):]
    resource = ASSETS / name
    if suffix not in TYPES or not resource.is_file():
        raise ApiError(404, "not_found", f"no console file {name}")
    return Response(resource.read_bytes(), media_type=TYPES[suffix], headers=HEADERS)


@console.get("/")
async def index() -> Response:
    return _asset("index.html")


@console.get("/console/{name}")
async def asset(name: Annotated[str, Path(pattern=r"^[a-z0-9-]+\.(js|css|svg)$")]) -> Response:
    return _asset(name)
