"""The self-service pages: search the public articles, read one, say whether it helped.

Server-rendered, no script: they work in any browser and keep no one's data. A "yes"
counts a deflected ticket; a "no" sends the requester on to the web form with what
they had searched for.
"""

from __future__ import annotations

import html
import secrets
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sportello_knowledge.api.deps import FinderDep, LibraryDep, RateLimited
from sportello_knowledge.api.public import public_article
from sportello_knowledge.service.finder import Deflection, Reader
from sportello_runtime.http import ApiError

pages = APIRouter(dependencies=[RateLimited], tags=["self-service pages"],
                  include_in_schema=False)

ArticleId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Lang = Annotated[str, Query(pattern=r"^(it|en)$")]
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

WORDS = {
    "en": {"title": "Help centre", "search": "Search", "placeholder": "Describe your problem",
           "results": "{n} articles", "none": "No article matches. Ask the service desk.",
           "ask": "Ask the service desk", "solved": "Did this solve your problem?",
           "yes": "Yes, it did", "no": "No, I still need help", "thanks": "Glad it helped",
           "thanks_body": "No request was opened. Come back any time.",
           "back": "Back to the search", "other": "Also in", "label": "Search the articles"},
    "it": {"title": "Centro assistenza", "search": "Cerca", "placeholder": "Descrivi il problema",
           "results": "{n} articoli", "none": "Nessun articolo trovato. Chiedi al service desk.",
           "ask": "Chiedi al service desk", "solved": "Questo articolo ha risolto il problema?",
           "yes": "Sì, risolto", "no": "No, mi serve ancora aiuto", "thanks": "Bene!",
           "thanks_body": "Nessuna richiesta è stata aperta. Torna quando vuoi.",
           "back": "Torna alla ricerca", "other": "Anche in", "label": "Cerca negli articoli"},
}
CSS = """body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;
color:#1b1b1b}a{color:#0b57a4}form.search{display:flex;gap:.5rem}input[type=search]{flex:1;
padding:.5rem;font-size:1rem}button{padding:.5rem 1rem;font-size:1rem;cursor:pointer}
.hit{margin:1rem 0}.hit p{margin:.2rem 0;color:#333}.answer{display:flex;gap:1rem;margin-top:2rem}
article{border-top:1px solid #ccc;margin-top:1rem}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}"""


def _page(lang: str, title: str, body: str) -> HTMLResponse:
    doc = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width,initial-scale=1">'
           f'<title>{html.escape(title)}</title><link rel="stylesheet" href="/help/help.css">'
           f"</head><body><main>{body}</main></body></html>")
    return HTMLResponse(doc, headers=SECURITY_HEADERS)


def _search_form(lang: str, q: str) -> str:
    w = WORDS[lang]
    return (f'<form class="search" role="search" action="/help" method="get">'
            f'<label for="q" class="visually-hidden">{w["label"]}</label>'
            f'<input id="q" type="search" name="q" value="{html.escape(q)}" '
            f'placeholder="{w["placeholder"]}" maxlength="200" aria-label="{w["label"]}">'
            f'<input type="hidden" name="lang" value="{lang}">'
            f'<button type="submit">{w["search"]}</button></form>')


@pages.get("/help/help.css")
async def stylesheet() -> Response:
    return Response(CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@pages.get("/help")
async def help_page(finder: FinderDep, lang: Lang = "en",
                    q: Annotated[str, Query(max_length=200)] = "") -> HTMLResponse:
    w = WORDS[lang]
    body = f'<h1>{w["title"]}</h1>{_search_form(lang, q)}'
    if q.strip():
        results = await finder.search(q, Reader.REQUESTER, language=lang, limit=10)
        if results.hits:
            body += f'<p role="status">{w["results"].format(n=results.total)}</p>'
            for hit in results.hits:
                link = f"/help/articles/{quote(hit.ref)}?q={quote(q)}"
                body += (f'<div class="hit"><h2><a href="{html.escape(link)}">'
                         f'{html.escape(hit.title)}</a></h2><p>{hit.snippet}</p></div>')
        else:
            body += (f'<p role="status">{w["none"]}</p><p><a href="'
                     f'{html.escape(finder.form_link(q, lang))}">{w["ask"]}</a></p>')
    return _page(lang, w["title"], body)


@pages.get("/help/articles/{article_id}")
async def article_page(article_id: ArticleId, library: LibraryDep,
                       q: Annotated[str, Query(max_length=200)] = "") -> HTMLResponse:
    article = await public_article(library, article_id)
    lang = article.language
    w = WORDS.get(lang, WORDS["en"])
    others = "".join(f' <a href="/help/articles/{quote(t.id)}" hreflang="{t.language}">'
                     f'{html.escape(t.title)} ({t.language})</a>' for t in article.translations)
    token = secrets.token_urlsafe(12)
    body = (f'<p><a href="/help?lang={lang}&amp;q={quote(q)}">{w["back"]}</a></p>'
            f'<article><h1>{html.escape(article.title)}</h1>{article.html}</article>'
            + (f'<p>{w["other"]}:{others}</p>' if others else "")
            + f'<form method="post" action="/help/articles/{quote(article.id)}/answer">'
            f'<h2>{w["solved"]}</h2>'
            f'<input type="hidden" name="q" value="{html.escape(q)}">'
            f'<input type="hidden" name="token" value="{token}">'
            f'<div class="answer"><button name="answer" value="yes">{w["yes"]}</button>'
            f'<button name="answer" value="no">{w["no"]}</button></div></form>')
    return _page(lang, article.title, body)


@pages.post("/help/articles/{article_id}/answer")
async def answer(article_id: ArticleId, request: Request, library: LibraryDep,
                 finder: FinderDep) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    said = (form.get("answer") or [""])[0]
    query = (form.get("q") or [""])[0][:200]
    token = (form.get("token") or [""])[0][:64] or None
    if said not in ("yes", "no"):
        raise ApiError(422, "invalid", "answer is yes or no", field="answer")
    article = await public_article(library, article_id)
    w = WORDS.get(article.language, WORDS["en"])
    if said == "no":
        await library.feedback(article.id, helpful=False, reason=None)
        return RedirectResponse(finder.form_link(query, article.language), status_code=303)
    if await finder.deflected(article.id, query=query, token=token) is Deflection.COUNTED:
        await library.feedback(article.id, helpful=True, reason=None)
    return _page(article.language, w["thanks"],
                 f'<h1 role="status">{w["thanks"]}</h1><p>{w["thanks_body"]}</p>'
                 f'<p><a href="/help?lang={article.language}">{w["back"]}</a></p>')
