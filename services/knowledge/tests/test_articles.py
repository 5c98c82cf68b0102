"""The article workflow and its versions, as pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sportello_knowledge.domain import articles as rules
from sportello_knowledge.domain.articles import (
    ArticleStatus,
    Audience,
    Content,
    StaleVersion,
    WorkflowError,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
S = ArticleStatus


def content(**changes: object) -> Content:
    base = Content(title="La stampante non stampa", body="Riavviare la stampante.",
                   language="it", audience=Audience.PUBLIC, category="hardware",
                   tags=("stampante",))
    return Content(**{**base.__dict__, **changes})


def test_a_new_article_is_a_draft_at_version_one_announced_as_changed_not_published() -> None:
    change = rules.create(content(), owner="ada", now=T0)
    assert change.record.status is S.DRAFT
    assert change.record.version == 1
    assert change.record.translation_group == change.record.id
    assert [e.type for e in change.events] == ["kb.article_changed"]


def test_the_workflow_goes_draft_review_published_retired_and_back_to_draft_only() -> None:
    article = rules.create(content(), owner="ada", now=T0).record
    reviewed = rules.move(article, S.IN_REVIEW, expected_version=1, now=T0).record
    published = rules.move(reviewed, S.PUBLISHED, expected_version=2, now=T0 + timedelta(1))
    assert [e.type for e in published.events] == ["kb.article_changed", "kb.article_published"]
    assert published.record.published_at == T0 + timedelta(1)
    retired = rules.move(published.record, S.RETIRED, expected_version=3, now=T0).record
    for not_allowed in (S.PUBLISHED, S.IN_REVIEW, S.RETIRED):
        with pytest.raises(WorkflowError):
            rules.move(retired, not_allowed, expected_version=4, now=T0)
    restored = rules.move(retired, S.DRAFT, expected_version=4, now=T0).record
    assert restored.status is S.DRAFT
    assert restored.version == 5


def test_an_editor_may_publish_a_draft_directly_but_not_from_a_stale_version() -> None:
    article = rules.create(content(), owner="ada", now=T0).record
    assert rules.move(article, S.PUBLISHED, expected_version=None, now=T0).record.version == 2
    with pytest.raises(StaleVersion) as stale:
        rules.move(article, S.PUBLISHED, expected_version=3, now=T0)
    assert stale.value.actual == 1


def test_every_edit_is_a_new_version_and_a_published_edit_is_announced_again() -> None:
    article = rules.create(content(), owner="ada", now=T0).record
    published = rules.move(article, S.PUBLISHED, expected_version=1, now=T0).record
    edited = rules.edit(published, content(body="Spegnere e riaccendere."),
                        expected_version=2, now=T0)
    assert edited.record.version == 3
    assert edited.record.status is S.PUBLISHED
    assert "kb.article_published" in [e.type for e in edited.events]
    with pytest.raises(StaleVersion):  # a second editor who read version 2
        rules.edit(edited.record, content(body="Altro."), expected_version=2, now=T0)
    with pytest.raises(ValueError, match="nothing changed"):
        rules.edit(edited.record, edited.record.content, expected_version=3, now=T0)


def test_a_retired_article_is_not_edited_or_reverted_until_restored() -> None:
    article = rules.create(content(), owner="ada", now=T0).record
    retired = rules.move(article, S.RETIRED, expected_version=1, now=T0).record
    with pytest.raises(WorkflowError):
        rules.edit(retired, content(body="x"), expected_version=2, now=T0)
    with pytest.raises(WorkflowError):
        rules.revert(retired, article.as_version("ada", "created"), expected_version=2, now=T0)


def test_revert_saves_an_earlier_content_as_the_newest_version_and_diff_shows_it() -> None:
    v1 = rules.create(content(), owner="ada", now=T0).record
    first = v1.as_version("ada", "created")
    v2 = rules.edit(v1, content(title="Stampante bloccata", body="Riavviare.\nControllare."),
                    expected_version=1, now=T0).record
    second = v2.as_version("bea", "edited")
    diff = rules.diff(first, second)
    assert diff.fields == {"title": ("La stampante non stampa", "Stampante bloccata")}
    assert "-Riavviare la stampante." in diff.body
    assert "+Controllare." in diff.body
    v3 = rules.revert(v2, first, expected_version=2, now=T0).record
    assert v3.version == 3
    assert v3.content == v1.content
    with pytest.raises(ValueError, match="not an earlier"):
        rules.revert(v3, v3.as_version("ada", "x"), expected_version=3, now=T0)


def test_a_translation_joins_the_original_group_in_another_language_only() -> None:
    original = rules.create(content(), owner="ada", now=T0).record
    english = rules.create(content(title="The printer does not print", language="en"),
                           owner="ada", now=T0, translation_of=original).record
    assert english.translation_group == original.id
    with pytest.raises(ValueError, match="translation"):
        rules.create(content(), owner="ada", now=T0, translation_of=original)


def test_requesters_see_only_published_public_articles() -> None:
    draft = rules.create(content(), owner="ada", now=T0).record
    public = rules.move(draft, S.PUBLISHED, expected_version=1, now=T0).record
    internal = rules.create(content(audience=Audience.INTERNAL), owner="ada", now=T0).record
    internal = rules.move(internal, S.PUBLISHED, expected_version=1, now=T0).record
    assert [rules.visible_to_requesters(a) for a in (draft, public, internal)] == [
        False, True, False]
