"""Notice templates and requester tokens, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sportello_intake.doors import signatures
from sportello_intake.requester import tokens
from sportello_intake.requester.notices import (
    LANGUAGES,
    NoticeKind,
    format_suggestions,
    format_time_limit,
    render,
)

VALUES = {"name": "Lucia", "number": "HD-2026-000001", "subject": "VPN", "level": "L2",
          "group": "Network", "time_limit": "x", "status_url": "http://s", "rating_url": "http://r",
          "message": "m", "resolution": "r", "suggestions": "- a"}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", list(NoticeKind))
def test_every_notice_exists_in_every_language_and_fills_every_blank(
    kind: NoticeKind, language: str
) -> None:
    notice = render(kind, language, VALUES)
    assert "$" not in notice.subject + notice.body
    assert "[HD-2026-000001]" in notice.subject  # replies thread back by it
    assert notice.language == language


def test_unknown_languages_fall_back_to_english() -> None:
    assert render(NoticeKind.ACKNOWLEDGED, "de", VALUES).language == "en"


def test_time_limits_are_shown_in_the_local_zone() -> None:
    due = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    assert format_time_limit(due, "it", "Europe/Rome") == "23/11/2026 17:00 (Europe/Rome)"
    assert format_time_limit(due, "en", "Europe/Rome") == "2026-11-23 17:00 (Europe/Rome)"
    assert format_time_limit(None, "it", "Europe/Rome") == "non ancora definito"


SECRET = "s" * 32


def test_a_token_opens_its_own_ticket_only() -> None:
    now = datetime.now(UTC)
    token = tokens.issue(SECRET, "HD-2026-000001", now=now, ttl=timedelta(days=1))
    tokens.verify(SECRET, token, "HD-2026-000001")
    with pytest.raises(tokens.TokenRefused, match="another ticket"):
        tokens.verify(SECRET, token, "HD-2026-000002")
    with pytest.raises(tokens.TokenRefused, match="not valid"):
        tokens.verify("t" * 32, token, "HD-2026-000001")
    old = tokens.issue(SECRET, "HD-2026-000001", now=now - timedelta(days=2),
                       ttl=timedelta(days=1))
    with pytest.raises(tokens.TokenRefused, match="expired"):
        tokens.verify(SECRET, old, "HD-2026-000001")


def test_channel_signatures_bind_body_secret_and_time() -> None:
    body = b'{"text": "ciao"}'
    header = signatures.sign(SECRET, body, now=1_800_000_000)
    assert signatures.matches(SECRET, header, body, tolerance_s=300, now=1_800_000_100)
    assert not signatures.matches(SECRET, header, body + b" ", tolerance_s=300,
                                  now=1_800_000_100)
    assert not signatures.matches("t" * 32, header, body, tolerance_s=300, now=1_800_000_100)
    with pytest.raises(signatures.BadSignature, match="too old"):
        signatures.matches(SECRET, header, body, tolerance_s=300, now=1_800_000_301)
    with pytest.raises(signatures.BadSignature, match="must be"):
        signatures.matches(SECRET, "sha256=abc", body, tolerance_s=300)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_acknowledgement_carries_the_suggested_articles_when_there_are_some(
    language: str,
) -> None:
    articles = format_suggestions([("Reset the VPN profile", "http://kb/1"), ("No link", None)],
                                  language)
    with_articles = render(NoticeKind.ACKNOWLEDGED, language, {**VALUES,
                                                               "suggestions": articles})
    assert "- Reset the VPN profile: http://kb/1\n- No link\n" in with_articles.body
    without = render(NoticeKind.ACKNOWLEDGED, language, {**VALUES, "suggestions": ""})
    assert "Reset" not in without.body
    assert format_suggestions([], language) == ""
