"""Articles: content, the workflow draft -> in review -> published -> retired, versions.

Every saved change (an edit, a step of the workflow, a revert) is a new version with
the whole content, so history, diff and revert need nothing but the versions. Edits
are fenced by the version the editor read (optimistic concurrency).
"""

from __future__ import annotations

import difflib
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from sportello_contracts import EventEnvelope, new_event
from sportello_contracts.events import KbArticleChanged, KbArticlePublished
from sportello_runtime.change import Change

PRODUCER = "knowledge"
LANGUAGES = ("it", "en")


class ArticleStatus(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    PUBLISHED = "published"
    RETIRED = "retired"


class Audience(StrEnum):
    PUBLIC = "public"
    """Requesters see it (self-service, suggestions by mail)."""
    INTERNAL = "internal"
    """Agents only."""


S = ArticleStatus
NEXT: dict[ArticleStatus, frozenset[ArticleStatus]] = {
    S.DRAFT: frozenset({S.IN_REVIEW, S.PUBLISHED, S.RETIRED}),
    S.IN_REVIEW: frozenset({S.DRAFT, S.PUBLISHED, S.RETIRED}),
    S.PUBLISHED: frozenset({S.DRAFT, S.RETIRED}),
    S.RETIRED: frozenset({S.DRAFT}),
}
"""Which step may follow which. An editor may publish a draft without a review (the
scripts' path); a retired article comes back only as a draft."""


class WorkflowError(ValueError):
    """A step the workflow does not allow from the article's status."""


class StaleVersion(ValueError):
    """The editor saved over a version that is no longer the latest."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"the article is at version {actual}, the edit was made on {expected}")
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class Content:
    """What an editor writes: every version keeps all of it."""

    title: str
    body: str
    """Markdown; rendered to safe HTML for reading (``domain.text.render``)."""
    language: str
    audience: Audience
    category: str | None = None
    tags: tuple[str, ...] = ()
    linked_tickets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Version:
    number: int
    content: Content
    status: ArticleStatus
    author: str
    at: datetime
    note: str | None = None
    """What the step was: "created", "edited", "published", "reverted to 3"."""


@dataclass(frozen=True)
class Article:
    id: str
    content: Content
    status: ArticleStatus
    version: int
    owner: str
    created_at: datetime
    updated_at: datetime
    translation_group: str
    """Articles that translate one another share it (the first one's id)."""
    published_at: datetime | None = None
    candidate_of: str | None = None
    """The archived case (ticket id) it was drafted from, if any."""

    def as_version(self, author: str, note: str) -> Version:
        return Version(self.version, self.content, self.status, author, self.updated_at, note)


def _events(article: Article, *, published: bool) -> tuple[EventEnvelope, ...]:
    def event(payload: KbArticleChanged | KbArticlePublished) -> EventEnvelope:
        return new_event(payload, producer=PRODUCER, correlation_id=article.id,
                         occurred_at=article.updated_at)

    events = [event(KbArticleChanged(article_id=article.id, version=article.version,
                                     status=article.status.value))]
    if published:
        events.append(event(KbArticlePublished(
            article_id=article.id, title=article.content.title[:200], version=article.version,
            language=article.content.language, audience=article.content.audience.value,
            category=article.content.category)))
    return tuple(events)


def create(content: Content, *, owner: str, now: datetime, translation_of: Article | None = None,
           candidate_of: str | None = None, article_id: str | None = None) -> Change[Article]:
    """A new draft; a translation joins its original's group and must differ in language."""
    if translation_of is not None and translation_of.content.language == content.language:
        raise ValueError(f"a translation must not be in {content.language}, the original's "
                         "language")
    new_id = article_id or uuid.uuid4().hex
    article = Article(
        id=new_id, content=content, status=S.DRAFT, version=1, owner=owner, created_at=now,
        updated_at=now,
        translation_group=translation_of.translation_group if translation_of else new_id,
        candidate_of=candidate_of)
    return Change(article, _events(article, published=False))


def check_version(article: Article, expected_version: int) -> None:
    if article.version != expected_version:
        raise StaleVersion(expected_version, article.version)


def edit(article: Article, content: Content, *, expected_version: int,
         now: datetime) -> Change[Article]:
    """A new version with new content; its status stays (a published article's edit is
    live at once, as in a wiki). A retired article is restored to draft before editing."""
    check_version(article, expected_version)
    if article.status is S.RETIRED:
        raise WorkflowError("a retired article is restored to draft before it is edited")
    if content == article.content:
        raise ValueError("nothing changed")
    updated = replace(article, content=content, version=article.version + 1, updated_at=now)
    return Change(updated, _events(updated, published=updated.status is S.PUBLISHED))


def move(article: Article, to: ArticleStatus, *, expected_version: int | None,
         now: datetime) -> Change[Article]:
    """One step of the workflow; ``expected_version`` None takes the latest (scripts)."""
    if expected_version is not None:
        check_version(article, expected_version)
    if to not in NEXT[article.status]:
        raise WorkflowError(f"an article {article.status.value} cannot become {to.value}")
    published = to is S.PUBLISHED
    updated = replace(article, status=to, version=article.version + 1, updated_at=now,
                      published_at=now if published else article.published_at)
    return Change(updated, _events(updated, published=published))


def revert(article: Article, to: Version, *, expected_version: int,
           now: datetime) -> Change[Article]:
    """The content of an earlier version, saved as the newest one (history is kept)."""
    check_version(article, expected_version)
    if to.number >= article.version:
        raise ValueError(f"version {to.number} is not an earlier version")
    if article.status is S.RETIRED:
        raise WorkflowError("a retired article is restored to draft before it is reverted")
    updated = replace(article, content=to.content, version=article.version + 1, updated_at=now)
    return Change(updated, _events(updated, published=updated.status is S.PUBLISHED))


@dataclass(frozen=True)
class Diff:
    from_version: int
    to_version: int
    fields: dict[str, tuple[object, object]]
    """Changed fields other than the body: name -> (before, after)."""
    body: list[str]
    """The body's unified diff, line by line."""


def diff(before: Version, after: Version) -> Diff:
    fields: dict[str, tuple[object, object]] = {}
    for name in ("title", "language", "audience", "category", "tags", "linked_tickets"):
        a, b = getattr(before.content, name), getattr(after.content, name)
        if a != b:
            fields[name] = (a, b)
    if before.status != after.status:
        fields["status"] = (before.status.value, after.status.value)
    body = list(difflib.unified_diff(
        before.content.body.splitlines(), after.content.body.splitlines(),
        fromfile=f"version {before.number}", tofile=f"version {after.number}", lineterm=""))
    return Diff(before.number, after.number, fields, body)


def visible_to_requesters(article: Article) -> bool:
    return article.status is S.PUBLISHED and article.content.audience is Audience.PUBLIC
