"""The portal's HTML, written by hand: every value escaped, every form with its CSRF token,
labels on every field, landmarks and a skip link, nothing from another origin. Pages
work without the script; the script only adds search while typing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from sportello_gateway.domain.portal import LANGUAGES, Hurry, Reach
from sportello_gateway.portal.texts import CATEGORIES, text


class Page:
    """What every page shares: its language, who is signed in, and the CSRF token its
    forms carry."""

    def __init__(self, language: str, *, email: str | None, csrf: str, zone: str,
                 path: str) -> None:
        self.language = language
        self.email = email
        self.csrf = csrf
        self.zone = ZoneInfo(zone)
        self.path = path

    def t(self, key: str, **values: Any) -> str:
        words = text(self.language, key)
        return escape(words.format(**values) if values else words)

    def when(self, value: str | datetime | None) -> str:
        if not value:
            return self.t("no_time_limit")
        at = datetime.fromisoformat(value) if isinstance(value, str) else value
        return escape(at.astimezone(self.zone).strftime("%d/%m/%Y %H:%M"))

    def form(self, action: str, body: str, *, form_id: str, multipart: bool = False) -> str:
        enctype = ' enctype="multipart/form-data"' if multipart else ""
        return (f'<form id="{form_id}" method="post" action="{escape(action)}"{enctype}>'
                f'<input type="hidden" name="csrf" value="{escape(self.csrf)}">{body}</form>')

    def render(self, title: str, main: str, *, notice: str | None = None,
               notice_kind: str = "info", status_code: int = 200) -> tuple[str, int]:
        """``title`` and ``main`` are HTML already (escaped where they hold text)."""
        current = ' aria-current="true"'
        switch = " ".join(
            f'<a href="{escape(self.path)}?{urlencode({"lang": code})}" lang="{code}" '
            f'hreflang="{code}"'
            f'{current if code == self.language else ""}>{code.upper()}</a>'
            for code in LANGUAGES)
        nav = ""
        if self.email:
            nav = (f'<nav aria-label="{self.t("portal")}"><a href="/portal/requests">'
                   f'{self.t("my_requests")}</a> <a href="/portal/new">{self.t("ask")}</a></nav>'
                   f'<p class="who">{self.t("signed_in_as", email=self.email)}</p>'
                   + self.form("/portal/sign-out",
                               f'<button type="submit">{self.t("sign_out")}</button>',
                               form_id="sign-out"))
        box = ""
        if notice:
            role = "alert" if notice_kind == "error" else "status"
            box = f'<p id="notice" class="{notice_kind}" role="{role}">{escape(notice)}</p>'
        page = (
            f'<!doctype html><html lang="{self.language}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{title} · {self.t("portal")}</title>'
            '<link rel="stylesheet" href="/portal/static/portal.css">'
            '<script type="module" src="/portal/static/portal.js"></script></head><body>'
            f'<a class="skip" href="#main">{self.t("skip")}</a>'
            f'<header><p class="brand">{self.t("portal")}</p>{nav}'
            f'<p class="languages"><span>{self.t("language")}:</span> {switch}</p></header>'
            f'<main id="main" tabindex="-1"><h1>{title}</h1>{box}{main}</main>'
            '</body></html>')
        return page, status_code


def field(name: str, label: str, control: str, *, hint: str = "") -> str:
    hint_html = f'<span class="hint" id="{name}-hint">{hint}</span>' if hint else ""
    return f'<p class="field"><label for="{name}">{label}</label>{hint_html}{control}</p>'


def options(values: Iterable[tuple[str, str]], selected: str | None) -> str:
    return "".join(
        f'<option value="{escape(v)}"{" selected" if v == selected else ""}>{label}</option>'
        for v, label in values)


# --- signing in -------------------------------------------------------------------------


def sign_in(page: Page, *, notice: str | None = None, kind: str = "info",
            status_code: int = 200) -> tuple[str, int]:
    body = (f'<p>{page.t("sign_in_intro")}</p>' + page.form("/portal/sign-in", field(
        "email", page.t("email"),
        '<input id="email" name="email" type="email" required maxlength="254" '
        'autocomplete="email">') + f'<button type="submit">{page.t("send_link")}</button>',
        form_id="sign-in-form"))
    return page.render(page.t("sign_in"), body, notice=notice, notice_kind=kind,
                       status_code=status_code)


def link(page: Page, token: str) -> tuple[str, int]:
    """The mailed link opens this page; the button spends the link. A mail scanner that
    fetches every link in a message does not sign anyone in."""
    body = page.form("/portal/link", f'<input type="hidden" name="token" value="{escape(token)}">'
                     f'<button type="submit">{page.t("sign_in")}</button>', form_id="link-form")
    return page.render(page.t("link_title"), body)


def notice_link(page: Page, number: str, token: str) -> tuple[str, int]:
    """From a notice's status page: the same button, for the notice's signed token."""
    body = page.form("/portal/from-notice",
                     f'<input type="hidden" name="number" value="{escape(number)}">'
                     f'<input type="hidden" name="token" value="{escape(token)}">'
                     f'<button type="submit">{page.t("sign_in")}</button>', form_id="link-form")
    return page.render(page.t("link_title"), body)


# --- my requests ------------------------------------------------------------------------


def status_label(page: Page, status: str) -> str:
    return page.t(f"status_{status}")


def requests(page: Page, items: list[dict[str, Any]], state: str, *,
             contact: bool = False, organisation: bool = False,
             notice: str | None = None) -> tuple[str, int]:
    current = ' aria-current="page"'
    scope = "organisation" if organisation else "mine"
    tabs = "".join(
        f'<a href="/portal/requests?{urlencode({"state": s, "scope": scope})}"'
        f'{current if s == state else ""}>{page.t(s)}</a>' for s in ("open", "closed"))
    if contact:  # a business customer's contact: their own, or the organisation's
        tabs += "".join(
            f'<a id="scope-{k}" href="/portal/requests?{urlencode({"state": state, "scope": k})}"'
            f'{current if k == scope else ""}>{page.t("scope_" + k)}</a>'
            for k in ("mine", "organisation"))
    columns = ["number", "subject", *(["requester"] if organisation else []), "status",
               "level", "time_limit", "updated"]
    if items:
        rows = "".join(
            f'<tr data-number="{escape(i["number"])}"><th scope="row">'
            f'<a href="/portal/requests/{quote(i["number"])}">{escape(i["number"])}</a></th>'
            f'<td>{escape(i["subject"])}</td>'
            + (f'<td>{escape(i.get("requester") or "")}</td>' if organisation else "")
            + f'<td>{status_label(page, i["status"])}</td>'
            f'<td>{escape(i.get("level") or "—")}</td><td>{page.when(i.get("time_limit"))}</td>'
            f'<td>{page.when(i["updated_at"])}</td></tr>' for i in items)
        heads = "".join(f'<th scope="col">{page.t(k)}</th>' for k in columns)
        table = (f'<div class="table"><table id="requests"><thead><tr>{heads}</tr></thead>'
                 f'<tbody>{rows}</tbody></table></div>')
    else:
        table = f'<p id="requests-empty">{page.t("none_" + state)}</p>'
    body = (f'<p><a class="button" href="/portal/new">{page.t("ask")}</a></p>'
            f'<nav class="tabs" aria-label="{page.t("my_requests")}">{tabs}</nav>{table}')
    return page.render(page.t("my_requests"), body, notice=notice)


def request(page: Page, ticket: Mapping[str, Any], *, form_key: str, own: bool = True,
            notice: str | None = None, kind: str = "info",
            status_code: int = 200) -> tuple[str, int]:
    """One request; a colleague's (read by their organisation's contact) without forms."""
    number = str(ticket["number"])
    base = f"/portal/requests/{quote(number)}"
    facts = (f'<dl class="facts"><dt>{page.t("status")}</dt><dd id="request-status">'
             f'{status_label(page, ticket["status"])}</dd>'
             f'<dt>{page.t("level")}</dt>'
             f'<dd id="request-level">{escape(ticket.get("level") or "—")}</dd>'
             f'<dt>{page.t("time_limit")}</dt><dd id="request-time-limit">'
             f'{page.when(ticket.get("time_limit"))}</dd></dl>')
    messages = "".join(
        f'<article class="message {escape(m["author"])}"><h3>'
        f'{whose(page, m, own)}'
        f' · <time>{page.when(m["at"])}</time></h3><p class="body">{escape(m["body"])}</p>'
        + "".join(f'<p class="file">{page.t("attachment")}: {escape(f)}</p>'
                  for f in m.get("attachments", []))
        + "</article>" for m in ticket["messages"])
    parts = [facts]
    if ticket.get("resolution"):
        parts.append(f'<h2>{page.t("resolution")}</h2><p id="resolution">'
                     f'{escape(ticket["resolution"])}</p>')
    parts.append(f'<h2>{page.t("conversation")}</h2><div id="conversation">{messages}</div>')
    if not own:
        return page.render(escape(f"{number} · {ticket['subject']}"), "".join(parts),
                           notice=notice, notice_kind=kind, status_code=status_code)
    key = f'<input type="hidden" name="form_key" value="{escape(form_key)}">'
    if ticket["status"] == "resolved":
        parts.append(f'<section aria-labelledby="confirm-title"><h2 id="confirm-title">'
                     f'{page.t("confirm_title")}</h2>'
                     + page.form(f"{base}/confirm", f'<button type="submit">{page.t("confirm")}'
                                 '</button>', form_id="confirm-form") + '</section>')
    reply_label = (page.t("not_solved_reply") if ticket["status"] == "resolved"
                   else page.t("reply"))
    parts.append(page.form(f"{base}/reply", key + field(
        "reply-body", reply_label,
        '<textarea id="reply-body" name="body" required maxlength="20000" rows="5">'
        '</textarea>') + attachments_field(page) +
        f'<button type="submit">{page.t("send_reply")}</button>',
        form_id="reply-form", multipart=True))
    if ticket.get("can_rate"):
        scores = "".join(
            f'<label class="choice"><input type="radio" name="score" value="{n}" required>'
            f' {page.t(f"score_{n}")}</label>' for n in range(5, 0, -1))
        parts.append(
            '<section aria-labelledby="rate-title">'
            f'<h2 id="rate-title">{page.t("rate_title")}</h2>' + page.form(
                f"{base}/rating",
                f'<fieldset><legend>{page.t("score")}</legend>{scores}</fieldset>'
                + field("rating-comment", page.t("comment"),
                        '<textarea id="rating-comment" name="comment" maxlength="2000" '
                        'rows="3"></textarea>')
                + f'<button type="submit">{page.t("rate")}</button>', form_id="rating-form")
            + '</section>')
    elif ticket.get("rating"):
        parts.append(f'<p id="rated">{page.t("rated", score=ticket["rating"])}</p>')
    title = escape(f"{number} · {ticket['subject']}")
    return page.render(title, "".join(parts), notice=notice, notice_kind=kind,
                       status_code=status_code)


def whose(page: Page, message: Mapping[str, Any], own: bool) -> str:
    if message["author"] != "requester":
        return page.t("service_desk")
    return page.t("you") if own else escape(message.get("author_name") or page.t("requester"))


def attachments_field(page: Page, *, count: int = 5, size_mb: int = 8) -> str:
    return field("files", page.t("attachments", count=count, size=size_mb),
                 '<input id="files" name="files" type="file" multiple>')


# --- asking for help --------------------------------------------------------------------


def suggestions(page: Page, hits: list[dict[str, Any]], query: str) -> str:
    if not hits:
        return f'<p class="muted">{page.t("suggestions_none")}</p>' if query else ""
    items = []
    for hit in hits:
        snippet = "".join(f"<b>{escape(text_)}</b>" if bold else escape(text_)
                          for text_, bold in hit["parts"])
        href = f'/portal/articles/{quote(hit["id"])}?{urlencode({"q": query})}'
        items.append(f'<li><a href="{escape(href)}">{escape(hit["title"])}</a>'
                     f'<p class="snippet">{snippet}</p></li>')
    return f'<ul class="hits">{"".join(items)}</ul>'


def new_request(page: Page, *, values: Mapping[str, str], hits: list[dict[str, Any]],
                form_key: str, notice: str | None = None, kind: str = "info",
                status_code: int = 200) -> tuple[str, int]:
    def value(name: str) -> str:
        return escape(values.get(name, ""))

    categories = options([("", page.t("category_unknown"))]
                         + [(c, page.t(f"cat_{c}")) for c in CATEGORIES], values.get("category"))
    reach = options([("", page.t("not_sure"))] + [(r.value, page.t(f"reach_{r.value}"))
                                                  for r in Reach], values.get("reach"))
    hurry = options([("", page.t("not_sure"))] + [(h.value, page.t(f"hurry_{h.value}"))
                                                  for h in Hurry], values.get("hurry"))
    query = values.get("subject", "")
    found = (f'<section id="suggestions" aria-live="polite" aria-labelledby="suggestions-title">'
             f'<h2 id="suggestions-title">{page.t("suggestions")}</h2>'
             f'<div id="suggestion-list" data-none="{page.t("suggestions_none")}">'
             f'{suggestions(page, hits, query)}</div></section>')
    form = page.form("/portal/new", (
        f'<input type="hidden" name="form_key" value="{escape(form_key)}">'
        + field("subject", page.t("subject"),
                f'<input id="subject" name="subject" required maxlength="200" '
                f'value="{value("subject")}" autocomplete="off" '
                'data-search="/portal/search" aria-controls="suggestion-list">')
        + field("description", page.t("description"),
                f'<textarea id="description" name="description" required maxlength="20000" '
                f'rows="6">{value("description")}</textarea>')
        + field("name", page.t("your_name"),
                f'<input id="name" name="name" required maxlength="200" value="{value("name")}" '
                'autocomplete="name">')
        + field("category", page.t("category"),
                f'<select id="category" name="category">{categories}</select>')
        + field("reach", page.t("reach"), f'<select id="reach" name="reach">{reach}</select>')
        + field("hurry", page.t("hurry"), f'<select id="hurry" name="hurry">{hurry}</select>')
        + attachments_field(page)
        + f'<button type="submit">{page.t("send_request")}</button>'),
        form_id="ask-form", multipart=True)
    return page.render(page.t("ask"), found + form, notice=notice, notice_kind=kind,
                       status_code=status_code)


def article(page: Page, found: Mapping[str, Any], *, query: str,
            view_key: str) -> tuple[str, int]:
    solved = page.form(
        f'/portal/articles/{quote(str(found["id"]))}/solved',
        f'<input type="hidden" name="q" value="{escape(query)}">'
        f'<input type="hidden" name="view_key" value="{escape(view_key)}">'
        f'<button type="submit" id="solved">{page.t("solved_it")}</button>', form_id="solved-form")
    ask = f'/portal/new?{urlencode({"subject": query})}' if query else "/portal/new"
    # knowledge's HTML is sanitised there (nh3: a short list of tags, same-origin links)
    body = (f'<article id="article" lang="{escape(str(found.get("language", "")))}">'
            f'{found["html"]}</article><div class="actions">{solved}'
            f'<a class="button secondary" id="not-solved" href="{escape(ask)}">'
            f'{page.t("not_solved")}</a></div>')
    return page.render(escape(str(found["title"])), body)


def glad(page: Page) -> tuple[str, int]:
    return page.render(page.t("glad"), f'<p><a href="/portal/requests">'
                                       f'{page.t("back_to_requests")}</a></p>')


def message(page: Page, title_key: str, *, status_code: int,
            back: str = "/portal") -> tuple[str, int]:
    return page.render(page.t(title_key), f'<p><a href="{escape(back)}">'
                       f'{page.t("back_to_requests") if page.email else page.t("sign_in")}'
                       '</a></p>', status_code=status_code)
