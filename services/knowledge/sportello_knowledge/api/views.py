"""The shapes the API answers with, and the bodies it takes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from sportello_knowledge.domain.articles import Article, ArticleStatus, Audience, Content, Version
from sportello_knowledge.domain.text import render
from sportello_knowledge.index import Hit, Results

Language = Annotated[str, StringConstraints(pattern=r"^(it|en)$")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=50)]
TicketRef = Annotated[str, StringConstraints(min_length=1, max_length=100)]
MAX_BODY = 100_000


class ContentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=3, max_length=200)
    body: str = Field(min_length=1, max_length=MAX_BODY, description="Markdown")
    language: Language
    audience: Audience = Audience.INTERNAL
    category: str | None = Field(default=None, max_length=100)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    linked_tickets: list[TicketRef] = Field(default_factory=list, max_length=100)

    def content(self) -> Content:
        return Content(title=self.title.strip(), body=self.body, language=self.language,
                       audience=self.audience, category=self.category,
                       tags=tuple(dict.fromkeys(self.tags)),
                       linked_tickets=tuple(dict.fromkeys(self.linked_tickets)))


class ArticleIn(ContentIn):
    owner: str = Field(min_length=1, max_length=100)
    translation_of: str | None = Field(default=None, max_length=64,
                                       description="The article this one translates")


class ArticleEdit(ContentIn):
    expected_version: int = Field(ge=1, le=2**31 - 1, description="The version the editor read")
    author: str = Field(min_length=1, max_length=100)


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expected_version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                         description="Omit to act on the latest version")
    author: str = Field(default="api", min_length=1, max_length=100)


class Revert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_version: int = Field(ge=1, le=2**31 - 1)
    expected_version: int = Field(ge=1, le=2**31 - 1)
    author: str = Field(min_length=1, max_length=100)


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    helpful: bool
    reason: str | None = Field(default=None, max_length=500)


class Solved(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(default=None, max_length=200,
                              description="What the requester had searched for")
    token: str | None = Field(default=None, min_length=8, max_length=64,
                              pattern=r"^[A-Za-z0-9_-]+$",
                              description="One per page view: a second click counts once")


class CandidateDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str = Field(min_length=1, max_length=100)


class Translation(BaseModel):
    id: str
    language: str
    title: str
    status: ArticleStatus


class ArticleView(BaseModel):
    id: str
    title: str
    body: str
    html: str
    language: str
    audience: Audience
    category: str | None
    tags: list[str]
    linked_tickets: list[str]
    status: ArticleStatus
    version: int
    owner: str
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    translation_group: str
    candidate_of: str | None
    translations: list[Translation] = Field(default_factory=list)

    @classmethod
    def of(cls, article: Article, translations: list[Article] | None = None) -> ArticleView:
        c = article.content
        return cls(id=article.id, title=c.title, body=c.body, html=render(c.body),
                   language=c.language, audience=c.audience, category=c.category,
                   tags=list(c.tags), linked_tickets=list(c.linked_tickets),
                   status=article.status, version=article.version, owner=article.owner,
                   created_at=article.created_at, updated_at=article.updated_at,
                   published_at=article.published_at,
                   translation_group=article.translation_group,
                   candidate_of=article.candidate_of,
                   translations=[Translation(id=t.id, language=t.content.language,
                                             title=t.content.title, status=t.status)
                                 for t in translations or []])


class PublicArticle(BaseModel):
    id: str
    title: str
    html: str
    language: str
    category: str | None
    tags: list[str]
    updated_at: datetime
    translations: list[Translation]

    @classmethod
    def of(cls, article: Article, translations: list[Article]) -> PublicArticle:
        c = article.content
        return cls(id=article.id, title=c.title, html=render(c.body), language=c.language,
                   category=c.category, tags=list(c.tags), updated_at=article.updated_at,
                   translations=[Translation(id=t.id, language=t.content.language,
                                             title=t.content.title, status=t.status)
                                 for t in translations])


class VersionView(BaseModel):
    number: int
    title: str
    status: ArticleStatus
    author: str
    at: datetime
    note: str | None

    @classmethod
    def of(cls, version: Version) -> VersionView:
        return cls(number=version.number, title=version.content.title, status=version.status,
                   author=version.author, at=version.at, note=version.note)


class DiffView(BaseModel):
    from_version: int
    to_version: int
    fields: dict[str, list[object]] = Field(
        description="Each changed field: [the value before, the value after]")
    body: list[str]


class HitView(BaseModel):
    kind: str
    id: str
    number: str | None
    title: str
    language: str
    audience: str
    status: str
    category: str | None
    score: float
    snippet: str = Field(description="HTML: matched words in <b>, everything else escaped")

    @classmethod
    def of(cls, hit: Hit) -> HitView:
        return cls(kind=hit.kind, id=hit.ref, number=hit.number or None, title=hit.title,
                   language=hit.language, audience=hit.audience, status=hit.status,
                   category=hit.category, score=hit.score, snippet=hit.snippet)


class SearchView(BaseModel):
    query: str
    words: str
    total: int
    hits: list[HitView]

    @classmethod
    def of(cls, query: str, results: Results) -> SearchView:
        return cls(query=query, words=results.words, total=results.total,
                   hits=[HitView.of(h) for h in results.hits])
