"""Editors', agents' and the gateway's routes, behind the service token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from sportello_knowledge.api.deps import ArchiveDep, FinderDep, KeeperDep, LibraryDep
from sportello_knowledge.api.views import (
    ArticleEdit,
    ArticleIn,
    ArticleView,
    CandidateDraft,
    DiffView,
    Revert,
    SearchView,
    Step,
    VersionView,
)
from sportello_knowledge.domain.articles import ArticleStatus, StaleVersion, WorkflowError
from sportello_knowledge.service.finder import Reader
from sportello_knowledge.service.library import ArticleNotFound, CandidateNotOpen, Library
from sportello_runtime.http import ApiError

internal = APIRouter()

ArticleId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
TicketId = Annotated[str, Path(min_length=1, max_length=100)]
Words = Annotated[str, Query(min_length=1, max_length=500, description="What to look for")]
Lang = Annotated[str | None, Query(pattern=r"^(it|en)$")]


async def _article_view(library: Library, article_id: str) -> ArticleView:
    article = await library.article(article_id)
    return ArticleView.of(article, await library.store.translations(article))


async def _guarded(call: Any) -> Any:
    """The domain's refusals as the API's 4xx, each naming what is wrong."""
    try:
        return await call
    except ArticleNotFound as exc:
        raise ApiError(404, "not_found", f"no article {exc}") from exc
    except StaleVersion as exc:
        raise ApiError(409, "stale_version", str(exc), field="expected_version",
                       extra={"current_version": exc.actual}) from exc
    except WorkflowError as exc:
        raise ApiError(409, "workflow", str(exc), field="status") from exc
    except CandidateNotOpen as exc:
        raise ApiError(404, "not_found", f"no open candidate for ticket {exc}") from exc
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc)) from exc


# -- articles ---------------------------------------------------------------------------


@internal.post("/articles", response_model=ArticleView, status_code=status.HTTP_201_CREATED,
               tags=["articles"])
async def create_article(body: ArticleIn, library: LibraryDep) -> ArticleView:
    """A new draft (a translation when ``translation_of`` names the original)."""
    article = await _guarded(library.create(body.content(), owner=body.owner,
                                            translation_of=body.translation_of))
    return await _article_view(library, article.id)


@internal.get("/articles", response_model=list[ArticleView], tags=["articles"])
async def list_articles(library: LibraryDep, status: ArticleStatus | None = None,
                        lang: Lang = None, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
                        ) -> list[ArticleView]:
    found = await library.store.articles(status=status, language=lang, limit=limit,
                                         skip=offset)
    return [ArticleView.of(a) for a in found]


@internal.get("/articles/{article_id}", response_model=ArticleView, tags=["articles"])
async def get_article(article_id: ArticleId, library: LibraryDep) -> ArticleView:
    view: ArticleView = await _guarded(_article_view(library, article_id))
    return view


@internal.put("/articles/{article_id}", response_model=ArticleView, tags=["articles"])
async def edit_article(article_id: ArticleId, body: ArticleEdit,
                       library: LibraryDep) -> ArticleView:
    """A new version. 409 ``stale_version`` when someone saved since ``expected_version``."""
    await _guarded(library.edit(article_id, body.content(),
                                expected_version=body.expected_version, author=body.author))
    return await _article_view(library, article_id)


async def _move(article_id: str, to: ArticleStatus, step: Step | None,
                library: Library) -> ArticleView:
    step = step or Step()
    await _guarded(library.move(article_id, to, expected_version=step.expected_version,
                                author=step.author))
    return await _article_view(library, article_id)


@internal.post("/articles/{article_id}/submit", response_model=ArticleView, tags=["workflow"])
async def submit_article(article_id: ArticleId, library: LibraryDep,
                         body: Step | None = None) -> ArticleView:
    """Draft -> in review."""
    return await _move(article_id, ArticleStatus.IN_REVIEW, body, library)


@internal.post("/articles/{article_id}/publish", response_model=ArticleView, tags=["workflow"])
async def publish_article(article_id: ArticleId, library: LibraryDep,
                          body: Step | None = None) -> ArticleView:
    """Publishes it (``kb.article_published``): searchable on this replica on return."""
    return await _move(article_id, ArticleStatus.PUBLISHED, body, library)


@internal.post("/articles/{article_id}/retire", response_model=ArticleView, tags=["workflow"])
async def retire_article(article_id: ArticleId, library: LibraryDep,
                         body: Step | None = None) -> ArticleView:
    return await _move(article_id, ArticleStatus.RETIRED, body, library)


@internal.post("/articles/{article_id}/draft", response_model=ArticleView, tags=["workflow"])
async def back_to_draft(article_id: ArticleId, library: LibraryDep,
                        body: Step | None = None) -> ArticleView:
    """Changes requested in review, an article taken offline, or a retired one restored."""
    return await _move(article_id, ArticleStatus.DRAFT, body, library)


@internal.get("/articles/{article_id}/versions", response_model=list[VersionView],
              tags=["versions"])
async def article_versions(article_id: ArticleId, library: LibraryDep) -> list[VersionView]:
    return [VersionView.of(v) for v in await _guarded(library.versions(article_id))]


@internal.get("/articles/{article_id}/diff", response_model=DiffView, tags=["versions"])
async def article_diff(article_id: ArticleId, library: LibraryDep,
                       from_: Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)],
                       to: Annotated[int, Query(ge=1, le=2**31 - 1)]) -> DiffView:
    diff = await _guarded(library.diff(article_id, from_, to))
    return DiffView(from_version=diff.from_version, to_version=diff.to_version,
                    fields=diff.fields, body=diff.body)


@internal.post("/articles/{article_id}/revert", response_model=ArticleView, tags=["versions"])
async def revert_article(article_id: ArticleId, body: Revert,
                         library: LibraryDep) -> ArticleView:
    """An earlier version's content, saved as the newest version."""
    await _guarded(library.revert(article_id, body.to_version,
                                  expected_version=body.expected_version, author=body.author))
    return await _article_view(library, article_id)


@internal.get("/articles/{article_id}/feedback", tags=["feedback"])
async def article_feedback(article_id: ArticleId, library: LibraryDep) -> dict[str, Any]:
    article = await _guarded(library.article(article_id))
    return {"article_id": article.id, "language": article.content.language,
            **await library.store.feedback(article.id)}


# -- search -------------------------------------------------------------------------------


@internal.get("/search", response_model=SearchView, tags=["search"])
async def search(finder: FinderDep, q: Words, lang: Lang = None,
                 category: Annotated[str | None, Query(max_length=100)] = None,
                 status: Annotated[list[ArticleStatus] | None, Query()] = None,
                 kind: Annotated[list[str] | None, Query(max_length=2)] = None,
                 limit: Annotated[int, Query(ge=1, le=50)] = 10,
                 offset: Annotated[int, Query(ge=0, le=1_000)] = 0) -> SearchView:
    """Everything an agent may see: articles of either audience and archived cases.
    Without ``status``, published articles and cases ("solved")."""
    kinds = tuple(kind or ())
    for k in kinds:
        if k not in ("article", "case"):
            raise ApiError(422, "invalid", "kind is article or case", field="kind")
    statuses = tuple(s.value for s in status) if status else ("published", "solved")
    results = await finder.search(q, Reader.AGENT, language=lang, category=category,
                                  statuses=statuses, kinds=kinds, limit=limit, offset=offset)
    return SearchView.of(q, results)


@internal.get("/tickets/{ticket_id}/suggestions", tags=["suggestions"])
async def ticket_suggestions(ticket_id: TicketId, finder: FinderDep) -> dict[str, Any]:
    """What was suggested when the ticket arrived (the agent's workspace shows it)."""
    found = await finder.store.suggestions(ticket_id)
    if found is None:
        raise ApiError(404, "not_found", f"no suggestions for ticket {ticket_id}")
    found.pop("_id", None)
    return found


# -- archive ------------------------------------------------------------------------------


@internal.get("/cases/{ticket_id}", tags=["archive"])
async def archived_case(ticket_id: TicketId, archive: ArchiveDep) -> dict[str, Any]:
    found = await archive.store.case(ticket_id)
    if found is None:
        raise ApiError(404, "not_found", f"no archived case for ticket {ticket_id}")
    case, candidate = found
    return {"ticket_id": case.ticket_id, "number": case.number, "subject": case.subject,
            "problem": case.problem, "resolution": case.resolution, "category": case.category,
            "level": case.level, "language": case.language, "closed_at": case.closed_at,
            "time_to_resolve_s": case.time_to_resolve_s, "candidate": candidate}


@internal.get("/candidates", tags=["archive"])
async def candidates(archive: ArchiveDep,
                     status: Annotated[str, Query(pattern=r"^(open|drafted|dismissed)$")] = "open",
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[dict[str, Any]]:
    """Closed tickets whose resolution no published article covers."""
    return [{"ticket_id": d["_id"], "number": d["number"], "subject": d["subject"],
             "resolution": d["resolution"], "language": d["language"],
             "closed_at": d["closed_at"], **d["candidate"]}
            for d in await archive.store.candidates(status=status, limit=limit)]


@internal.post("/candidates/{ticket_id}/draft", response_model=ArticleView,
               status_code=status.HTTP_201_CREATED, tags=["archive"])
async def draft_candidate(ticket_id: TicketId, body: CandidateDraft,
                          library: LibraryDep) -> ArticleView:
    """One action: a draft prefilled from the case (problem, solution, category, ticket)."""
    article = await _guarded(library.draft_from_candidate(ticket_id, owner=body.owner))
    return await _article_view(library, article.id)


@internal.post("/candidates/{ticket_id}/dismiss", status_code=status.HTTP_204_NO_CONTENT,
               tags=["archive"])
async def dismiss_candidate(ticket_id: TicketId, library: LibraryDep) -> None:
    await _guarded(library.dismiss_candidate(ticket_id))


@internal.get("/faq-proposals", tags=["archive"])
async def faq_proposals(archive: ArchiveDep,
                        period: Annotated[str | None, Query(pattern=r"^[0-9]{4}-[0-9]{2}$")]
                        = None) -> list[dict[str, Any]]:
    """Recurring problems with no article: what analytics and the coordinator read."""
    return [{"proposal_id": g["id"], "period": g["period"], "language": g["language"],
             "title": g["title"], "size": g["size"], "ticket_ids": g["ticket_ids"],
             "terms": list(g["profile"])[:10]}
            for g in await archive.store.proposals(period)]


@internal.get("/stats", tags=["archive"])
async def stats(finder: FinderDep) -> dict[str, Any]:
    """Deflections against the tickets that arrived: the share of problems solved by
    self-service."""
    return await finder.deflection_rate()


# -- the index ----------------------------------------------------------------------------


@internal.get("/index", tags=["index"])
async def index_status(keeper: KeeperDep) -> dict[str, object]:
    """This replica's index: documents, when built, last change, a rebuild's progress."""
    return keeper.status()


@internal.post("/index/rebuild", status_code=status.HTTP_202_ACCEPTED, tags=["index"])
async def rebuild_index(keeper: KeeperDep) -> dict[str, object]:
    """Rebuild this replica's index from MongoDB; the old one answers until the swap.
    Follow it on ``GET /index``."""
    if not keeper.begin_rebuild():
        raise ApiError(409, "rebuilding", "a rebuild is already running on this replica")
    return keeper.status()
