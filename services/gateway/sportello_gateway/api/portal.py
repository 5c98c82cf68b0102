"""The requester portal at ``/portal``: server-drawn pages and plain forms, beside the
operators' console but with its own session scope (its own cookie, path ``/portal``).

Every form carries a CSRF token (the session's, or before signing in one kept in a
cookie of its own) and a cross-site ``Origin`` is refused outright. Answers are never
cached. Only the requester's own requests are ever asked of intake."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import EmailStr, TypeAdapter, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException

from sportello_gateway.backends import Refused, Unavailable
from sportello_gateway.domain import portal as rules
from sportello_gateway.domain.portal import LinkRefused, PortalSession
from sportello_gateway.portal import pages
from sportello_gateway.portal.pages import Page
from sportello_gateway.portal.texts import CATEGORIES, text
from sportello_gateway.service.portal import (
    NewRequest,
    NotConfigured,
    NotYours,
    Portal,
    TooManyLinks,
    Upload,
)
from sportello_runtime.ratelimit import RateLimiter

log = logging.getLogger(__name__)



class Refusal(Exception):
    """A page that answers instead of the route's (signed out, forged form, too fast)."""

    def __init__(self, response: Response) -> None:
        self.response = response


class PortalRoute(APIRoute):
    """Routes whose dependencies may answer with a page of their own (``Refusal``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handle(request)
            except Refusal as refusal:
                return refusal.response

        return route


portal = APIRouter(prefix="/portal", include_in_schema=False, route_class=PortalRoute)

SESSION = "sportello_portal"
FORM_CSRF = "sportello_portal_csrf"
LANGUAGE = "sportello_portal_lang"
ASSETS = files("sportello_gateway") / "portal"
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
           "Cache-Control": "no-store"}
"""``same-origin``, not ``no-referrer``: under the latter a browser sends ``Origin: null``
with every form, and the origin check could not tell our forms from anyone's."""
MAX_FILES = 5
EMAIL = TypeAdapter(EmailStr)
NUMBER = Path(min_length=1, max_length=50, pattern=r"^[A-Z]{1,6}-\d{4}-\d{6,9}$")
ARTICLE = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
NUMBER_TEXT = re.compile(r"^[A-Z]{1,6}-\d{4}-\d{6,9}$")
DONE = {"asked": "sent", "sent": "sent", "confirmed": "confirmed", "rated": "sent"}


@dataclass
class Visit:
    """One request to the portal: who (if signed in), in which language, and the cookies
    the answer must set."""

    portal: Portal
    request: Request
    session: PortalSession | None
    secret: str | None
    language: str
    form_csrf: str
    new_form_csrf: bool
    chosen_language: str | None

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else self.form_csrf

    def page(self) -> Page:
        settings = self.portal.settings
        return Page(self.language, email=self.session.email if self.session else None,
                    csrf=self.csrf, zone=settings.display_timezone,
                    path=self.request.url.path if self.request.method == "GET" else "/portal")

    def answer(self, drawn: tuple[str, int] | Response) -> Response:
        response = (drawn if isinstance(drawn, Response)
                    else HTMLResponse(drawn[0], status_code=drawn[1]))
        response.headers.update(HEADERS)
        secure = self.portal.secure
        if self.new_form_csrf:
            response.set_cookie(FORM_CSRF, self.form_csrf, httponly=True, samesite="strict",
                                secure=secure, path="/portal")
        if self.chosen_language:
            response.set_cookie(LANGUAGE, self.chosen_language, max_age=365 * 24 * 3600,
                                httponly=True, samesite="lax", secure=secure, path="/portal")
        return response

    def to(self, location: str) -> Response:
        return self.answer(RedirectResponse(location, status_code=303))


async def visit(request: Request) -> Visit:
    app_portal: Portal = request.app.state.portal
    secret = request.cookies.get(SESSION)
    session = await app_portal.session(secret)
    chosen = request.query_params.get("lang")
    chosen = chosen if chosen in rules.LANGUAGES else None
    if chosen and session and secret:
        await app_portal.set_language(secret, chosen)
    language = rules.language_of(chosen or (session.language if session else None)
                                 or request.cookies.get(LANGUAGE),
                                 request.headers.get("accept-language"))
    csrf = request.cookies.get(FORM_CSRF, "")
    fresh = not (20 <= len(csrf) <= 100)
    current = Visit(app_portal, request, session if secret else None, secret, language,
                    rules.new_secret() if fresh else csrf, fresh, chosen)
    limiter: RateLimiter = request.app.state.portal_limiter
    who = f"requester:{session.email}" if session else f"client:{client_of(request)}"
    if limiter.take(who, time.monotonic()) is not None:
        app_portal.metrics.rate_limited.labels("portal").inc()
        raise Refusal(current.answer(pages.message(current.page(), "too_many_links",
                                                   status_code=429)))
    return current


VisitDep = Annotated[Visit, Depends(visit)]


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def signed_in(v: Visit) -> PortalSession:
    if v.session is None:
        raise Refusal(v.to("/portal"))
    return v.session


async def posted(v: Visit, *, files: bool = False) -> FormData:
    """The form, when it comes from this site: same ``Origin`` (when the browser says),
    and the CSRF token this visitor was given."""
    origin = v.request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != v.request.headers.get("host"):
        raise Refusal(v.answer(pages.message(v.page(), "forbidden", status_code=403)))
    try:
        form = await v.request.form(max_files=MAX_FILES if files else 0, max_fields=30)
    except MultiPartException as exc:
        page = v.page()
        raise Refusal(v.answer(page.render(
            page.t("invalid", problem=str(exc)), "", status_code=400))) from exc
    if not rules.same(str(form.get("csrf") or ""), v.csrf):
        raise Refusal(v.answer(pages.message(v.page(), "forbidden", status_code=403)))
    return form


def value(form: FormData, name: str, limit: int) -> str:
    raw = form.get(name)
    return raw.strip()[:limit] if isinstance(raw, str) else ""


async def uploads(form: FormData, max_bytes: int) -> tuple[Upload, ...]:
    found: list[Upload] = []
    for item in form.getlist("files"):
        if isinstance(item, UploadFile) and item.filename:
            content = await item.read(max_bytes + 1)
            found.append(Upload(item.filename[:255], (item.content_type or
                                "application/octet-stream")[:100], content))
    return tuple(found)


def refused_reason(exc: Refused) -> str:
    field = exc.body.get("field")
    message = exc.body.get("message") or exc.body.get("error") or "refused"
    return f"{field}: {message}" if field else str(message)


# --- signing in -------------------------------------------------------------------------


@portal.get("")
async def home(v: VisitDep) -> Response:
    if v.session:
        return v.to("/portal/requests")
    return v.answer(pages.sign_in(v.page()))


@portal.post("/sign-in")
async def ask_for_link(v: VisitDep) -> Response:
    form = await posted(v)
    page = v.page()
    try:
        email = str(EMAIL.validate_python(value(form, "email", 254)))
    except ValidationError:
        return v.answer(pages.sign_in(page, notice=text(v.language, "invalid").format(
            problem=text(v.language, "email")), kind="error", status_code=422))
    try:
        await v.portal.mail_link(email, client=client_of(v.request), language=v.language)
    except TooManyLinks:
        return v.answer(pages.sign_in(page, notice=text(v.language, "too_many_links"),
                                      kind="error", status_code=429))
    except NotConfigured:
        return v.answer(pages.sign_in(page, notice=text(v.language, "no_mail"), kind="error",
                                      status_code=503))
    except OSError as exc:
        log.warning("the sign-in link could not be mailed: %s", exc)
        return v.answer(pages.sign_in(page, notice=text(v.language, "unavailable"),
                                      kind="error", status_code=503))
    minutes = v.portal.settings.portal_link_ttl_s // 60
    return v.answer(pages.sign_in(page, notice=text(v.language, "link_sent").format(
        email=email, minutes=minutes)))


@portal.get("/link")
async def open_link(v: VisitDep,
                    token: Annotated[str, Query(min_length=20, max_length=100)]) -> Response:
    return v.answer(pages.link(v.page(), token))


@portal.post("/link")
async def follow_link(v: VisitDep) -> Response:
    form = await posted(v)
    outcome = await v.portal.sign_in(value(form, "token", 100))
    if isinstance(outcome, LinkRefused):
        return v.answer(pages.sign_in(v.page(), notice=text(v.language,
                                                            f"link_refused_{outcome.value}"),
                                      kind="error", status_code=401))
    return signed_in_to(v, outcome[0], "/portal/requests")


@portal.get("/from-notice")
async def open_notice_link(v: VisitDep, number: Annotated[str, Query(pattern=NUMBER_TEXT.pattern)],
                           token: Annotated[str, Query(min_length=1, max_length=2000)]
                           ) -> Response:
    """From a notice's status page: a button (not the link itself) signs in."""
    return v.answer(pages.notice_link(v.page(), number, token))


@portal.post("/from-notice")
async def follow_notice_link(v: VisitDep) -> Response:
    form = await posted(v)
    number = value(form, "number", 50)
    outcome = None
    if NUMBER_TEXT.match(number):
        outcome = await v.portal.sign_in_from_notice(number, value(form, "token", 2000))
    if outcome is None:
        return v.answer(pages.sign_in(v.page(), notice=text(v.language, "link_refused_unknown"),
                                      kind="error", status_code=401))
    return signed_in_to(v, outcome[0], f"/portal/requests/{quote(number)}")


def signed_in_to(v: Visit, secret: str, location: str) -> Response:
    response = v.to(location)
    response.set_cookie(SESSION, secret, max_age=v.portal.settings.portal_session_ttl_s,
                        httponly=True, samesite="lax", secure=v.portal.secure, path="/portal")
    response.delete_cookie(FORM_CSRF, path="/portal")
    return response


@portal.post("/sign-out")
async def sign_out(v: VisitDep) -> Response:
    signed_in(v)
    await posted(v)
    if v.secret:
        await v.portal.sign_out(v.secret)
    response = v.to("/portal")
    response.delete_cookie(SESSION, path="/portal")
    return response


# --- my requests ------------------------------------------------------------------------


@portal.get("/requests")
async def my_requests(v: VisitDep, state: Annotated[str, Query(pattern="^(open|closed)$")]
                      = "open", scope: Annotated[str, Query(pattern="^(mine|organisation)$")]
                      = "mine") -> Response:
    session = signed_in(v)
    contact = v.portal.organisation_of(session.email) is not None
    whole = scope == "organisation" and contact
    try:
        items = await v.portal.requests(session.email, state, organisation=whole)
    except Unavailable:
        return v.answer(pages.message(v.page(), "unavailable", status_code=503))
    return v.answer(pages.requests(v.page(), items, state, contact=contact,
                                   organisation=whole))


async def _request_page(v: VisitDep, number: str, *, notice: str | None = None,
                        kind: str = "info", status_code: int = 200) -> Response:
    session = signed_in(v)
    try:
        ticket, own = await v.portal.request(session.email, number)
    except NotYours:
        return v.answer(pages.message(v.page(), "not_found", status_code=404,
                                      back="/portal/requests"))
    except Unavailable:
        return v.answer(pages.message(v.page(), "unavailable", status_code=503))
    return v.answer(pages.request(v.page(), ticket, form_key=rules.new_secret(), own=own,
                                  notice=notice, kind=kind, status_code=status_code))


@portal.get("/requests/{number}")
async def my_request(v: VisitDep, number: Annotated[str, NUMBER],
                     done: Annotated[str | None, Query(max_length=20)] = None,
                     follow: Annotated[str | None, Query(max_length=50)] = None) -> Response:
    notice = None
    if done in DONE:
        notice = text(v.language, DONE[done])
    if follow and NUMBER_TEXT.match(follow):
        notice = text(v.language, "followed_up").format(number=follow)
    return await _request_page(v, number, notice=notice)


@portal.post("/requests/{number}/reply")
async def reply(v: VisitDep, number: Annotated[str, NUMBER]) -> Response:
    session = signed_in(v)
    form = await posted(v, files=True)
    body = value(form, "body", 20_000)
    if not body:
        return await _request_page(v, number, notice=text(v.language, "invalid").format(
            problem=text(v.language, "reply")), kind="error", status_code=422)
    try:
        landed = await v.portal.reply(
            session.email, number, body,
            await uploads(form, v.portal.settings.portal_max_upload_bytes),
            form_key=value(form, "form_key", 64) or rules.new_secret())
    except NotYours:
        return v.answer(pages.message(v.page(), "not_found", status_code=404))
    except Refused as exc:
        return await _request_page(v, number, notice=text(v.language, "invalid").format(
            problem=refused_reason(exc)), kind="error", status_code=422)
    except Unavailable:
        return await _request_page(v, number, notice=text(v.language, "unavailable"),
                                   kind="error", status_code=503)
    if landed != number:
        return v.to(f"/portal/requests/{quote(landed)}?follow={quote(landed)}")
    return v.to(f"/portal/requests/{quote(number)}?done=sent#conversation")


async def _act(v: Visit, number: str, act: Callable[[], Awaitable[None]],
               done: str) -> Response:
    """A requester's action on a request: where it leads, or the page saying why not."""
    try:
        await act()
    except NotYours:
        return v.answer(pages.message(v.page(), "not_found", status_code=404))
    except Refused as exc:
        return await _request_page(v, number, notice=refused_reason(exc), kind="error",
                                   status_code=409)
    except Unavailable:
        return await _request_page(v, number, notice=text(v.language, "unavailable"),
                                   kind="error", status_code=503)
    return v.to(done)


@portal.post("/requests/{number}/confirm")
async def confirm(v: VisitDep, number: Annotated[str, NUMBER]) -> Response:
    session = signed_in(v)
    await posted(v)
    return await _act(v, number, lambda: v.portal.confirm(session.email, number),
                      f"/portal/requests/{quote(number)}?done=confirmed")


@portal.post("/requests/{number}/rating")
async def rate(v: VisitDep, number: Annotated[str, NUMBER]) -> Response:
    session = signed_in(v)
    form = await posted(v)
    score = value(form, "score", 1)
    if score not in {"1", "2", "3", "4", "5"}:
        return await _request_page(v, number, notice=text(v.language, "invalid").format(
            problem=text(v.language, "score")), kind="error", status_code=422)
    comment = value(form, "comment", 2000) or None
    return await _act(v, number, lambda: v.portal.rate(session.email, number, int(score),
                                                       comment),
                      f"/portal/requests/{quote(number)}?done=rated#rated")


# --- asking for help, the knowledge base first ------------------------------------------


async def _hits(v: Visit, query: str) -> list[dict[str, Any]]:
    try:
        return await v.portal.search(query, v.language)
    except (Unavailable, Refused) as exc:
        log.info("no suggestions for the portal: %s", exc)
        return []


@portal.get("/new")
async def new_request(v: VisitDep,
                      subject: Annotated[str, Query(max_length=200)] = "") -> Response:
    signed_in(v)
    return v.answer(pages.new_request(v.page(), values={"subject": subject},
                                      hits=await _hits(v, subject), form_key=rules.new_secret()))


@portal.post("/new")
async def send_request(v: VisitDep) -> Response:
    session = signed_in(v)
    form = await posted(v, files=True)
    values = {name: value(form, name, limit) for name, limit in
              (("subject", 200), ("description", 20_000), ("name", 200), ("category", 50),
               ("reach", 20), ("hurry", 20))}
    missing = [name for name in ("subject", "description", "name") if not values[name]]
    form_key = value(form, "form_key", 64) or rules.new_secret()

    def again(notice: str, status_code: int) -> Response:
        return v.answer(pages.new_request(v.page(), values=values, hits=[], form_key=form_key,
                                          notice=notice, kind="error",
                                          status_code=status_code))

    if missing:
        return again(text(v.language, "invalid").format(
            problem=", ".join(text(v.language, "your_name" if m == "name" else m)
                              for m in missing)), 422)
    asked = NewRequest(
        name=values["name"], subject=values["subject"], description=values["description"],
        category=values["category"] if values["category"] in CATEGORIES else None,
        reach=rules.Reach(values["reach"]) if values["reach"] in set(rules.Reach) else None,
        hurry=rules.Hurry(values["hurry"]) if values["hurry"] in set(rules.Hurry) else None,
        files=await uploads(form, v.portal.settings.portal_max_upload_bytes))
    try:
        number = await v.portal.ask(session, asked, form_key=form_key)
    except Refused as exc:
        return again(text(v.language, "invalid").format(problem=refused_reason(exc)), 422)
    except (Unavailable, NotConfigured):
        return again(text(v.language, "unavailable"), 503)
    return v.to(f"/portal/requests/{quote(number)}?done=asked")


@portal.get("/search")
async def search(v: VisitDep, q: Annotated[str, Query(max_length=200)] = "") -> Response:
    """Search while typing (the page's script): published public articles only."""
    hits = await _hits(v, q)
    return v.answer(JSONResponse({"hits": [
        {"title": h["title"], "parts": h["parts"],
         "href": f"/portal/articles/{quote(h['id'])}?q={quote(q)}"} for h in hits]}))


@portal.get("/articles/{article_id}")
async def read_article(v: VisitDep, article_id: Annotated[str, ARTICLE],
                       q: Annotated[str, Query(max_length=200)] = "") -> Response:
    try:
        found = await v.portal.article(article_id)
    except NotYours:
        return v.answer(pages.message(v.page(), "not_found", status_code=404))
    except Unavailable:
        return v.answer(pages.message(v.page(), "unavailable", status_code=503))
    return v.answer(pages.article(v.page(), found, query=q, view_key=rules.new_secret()))


@portal.post("/articles/{article_id}/solved")
async def solved(v: VisitDep, article_id: Annotated[str, ARTICLE]) -> Response:
    form = await posted(v)
    try:
        await v.portal.solved(article_id, query=value(form, "q", 200) or None,
                              view_key=value(form, "view_key", 64) or rules.new_secret())
    except (Unavailable, Refused) as exc:
        log.info("a deflection was not counted: %s", exc)
    return v.answer(pages.glad(v.page()))


# --- the style sheet and the script -----------------------------------------------------

TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@portal.get("/static/{name}")
async def asset(name: Annotated[str, Path(pattern=r"^portal\.(js|css)$")]) -> Response:
    resource = ASSETS / name
    return Response(resource.read_bytes(), media_type=TYPES[name[name.rfind("."):]],
                    headers={**HEADERS, "Cache-Control": "no-cache"})
