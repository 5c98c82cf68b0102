"""Requesters' JSON doors, without a token: public, published articles only, rate limited
per client address."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from sportello_knowledge.api.deps import FinderDep, LibraryDep, RateLimited
from sportello_knowledge.api.views import Feedback, PublicArticle, SearchView, Solved
from sportello_knowledge.domain.articles import visible_to_requesters
from sportello_knowledge.service.finder import Deflection, Reader
from sportello_knowledge.service.library import Library
from sportello_runtime.http import ApiError

public = APIRouter(dependencies=[RateLimited], tags=["self-service"])

ArticleId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


async def public_article(library: Library, article_id: str) -> PublicArticle:
    """404 for anything a requester may not read: drafts and internal articles are not
    told apart from articles that do not exist."""
    article = await library.store.article(article_id)
    if article is None or not visible_to_requesters(article):
        raise ApiError(404, "not_found", f"no public article {article_id}")
    translations = [t for t in await library.store.translations(article)
                    if visible_to_requesters(t)]
    return PublicArticle.of(article, translations)


@public.get("/public/search", response_model=SearchView)
async def public_search(finder: FinderDep,
                        q: Annotated[str, Query(min_length=1, max_length=200)],
                        lang: Annotated[str | None, Query(pattern=r"^(it|en)$")] = None,
                        category: Annotated[str | None, Query(max_length=100)] = None,
                        limit: Annotated[int, Query(ge=1, le=20)] = 10) -> SearchView:
    """Self-service (L0): published public articles, whatever else is asked for."""
    return SearchView.of(q, await finder.search(q, Reader.REQUESTER, language=lang,
                                                category=category, limit=limit))


@public.get("/public/articles/{article_id}", response_model=PublicArticle)
async def read_public_article(article_id: ArticleId, library: LibraryDep) -> PublicArticle:
    return await public_article(library, article_id)


@public.post("/public/articles/{article_id}/feedback", status_code=204)
async def give_feedback(article_id: ArticleId, body: Feedback, library: LibraryDep) -> None:
    await public_article(library, article_id)
    await library.feedback(article_id, helpful=body.helpful, reason=body.reason)


@public.post("/public/articles/{article_id}/solved")
async def solved(article_id: ArticleId, body: Solved, finder: FinderDep,
                 library: LibraryDep) -> dict[str, Any]:
    """"Yes, this solved my problem": a ticket not opened (``kb.deflected``)."""
    outcome = await finder.deflected(article_id, query=body.query, token=body.token)
    if outcome is Deflection.NOT_PUBLIC:
        raise ApiError(404, "not_found", f"no public article {article_id}")
    if outcome is Deflection.COUNTED:
        await library.feedback(article_id, helpful=True, reason=None)
    return {"deflected": True, "counted": outcome is Deflection.COUNTED}


@public.post("/public/articles/{article_id}/not-solved")
async def not_solved(article_id: ArticleId, body: Solved, finder: FinderDep,
                     library: LibraryDep) -> dict[str, Any]:
    """"No": where to ask for help, the web form pre-filled with what was searched."""
    article = await public_article(library, article_id)
    await library.feedback(article_id, helpful=False, reason=None)
    return {"form_url": finder.form_link(body.query, article.language)}
