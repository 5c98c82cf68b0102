"""The requester portal's rules without I/O: links (unknown, used, expired), quotas, the
page's language, plain words for impact and urgency, snippets as text, and pages that
escape what requesters and agents wrote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sportello_contracts.enums import Impact, Urgency
from sportello_gateway.domain import portal as rules
from sportello_gateway.domain.portal import LinkQuota, LinkRefused, PortalSession, SignInLink
from sportello_gateway.portal import pages
from sportello_gateway.portal.texts import TEXTS

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def link(**changes: object) -> SignInLink:
    fields: dict[str, object] = {"email": "mario@example.it", "language": "it",
                                 "issued_at": NOW, "expires_at": NOW + timedelta(minutes=15)}
    return SignInLink(**{**fields, **changes})  # type: ignore[arg-type]


def test_a_link_signs_in_once_and_only_before_it_expires() -> None:
    assert rules.link_refusal(link(), NOW) is None
    assert rules.link_refusal(link(), NOW + timedelta(minutes=14, seconds=59)) is None
    assert rules.link_refusal(link(), NOW + timedelta(minutes=15)) is LinkRefused.EXPIRED
    assert rules.link_refusal(link(used_at=NOW), NOW) is LinkRefused.USED
    assert rules.link_refusal(None, NOW) is LinkRefused.UNKNOWN


def test_only_digests_are_stored_and_secrets_are_compared_in_constant_time() -> None:
    secret = rules.new_secret()
    assert len(secret) >= 43
    assert rules.digest(secret) != secret
    assert rules.digest(secret) == rules.digest(secret)
    assert rules.same(secret, secret)
    assert not rules.same(secret, rules.new_secret())
    assert not rules.same("", "")
    assert not rules.same(None, secret)


def test_sessions_end_when_they_expire() -> None:
    session = PortalSession("mario@example.it", "csrf", "it", NOW + timedelta(days=7))
    assert rules.session_valid(session, NOW)
    assert not rules.session_valid(session, NOW + timedelta(days=7))
    assert not rules.session_valid(None, NOW)


def test_links_are_counted_in_fixed_windows_per_address_and_per_client() -> None:
    hour = timedelta(hours=1)
    start = rules.window_start(NOW + timedelta(minutes=59), hour)
    assert start == NOW
    assert rules.window_start(NOW + hour, hour) == NOW + hour
    quota = LinkQuota(per_address=5, per_client=20, window=hour)
    assert rules.within_quota(5, 20, quota)
    assert not rules.within_quota(6, 1, quota)
    assert not rules.within_quota(1, 21, quota)
    assert rules.address_key("  Mario.Rossi@Example.IT ") == "mario.rossi@example.it"


def test_the_turn_of_a_window_does_not_double_the_quota() -> None:
    hour = timedelta(hours=1)
    quota = LinkQuota(per_address=3, per_client=20, window=hour)
    # Three links at 10:59:59, the fourth at 11:00:01: the last hour holds four.
    just_after = NOW + hour + timedelta(seconds=1)
    assert not rules.within_quota(rules.in_the_last_window(1, 3, just_after, hour), 1, quota)
    # Half an hour on, half of the previous window still counts; an hour on, none.
    half = NOW + hour + timedelta(minutes=30)
    assert rules.in_the_last_window(1, 3, half, hour) == 2.5
    assert rules.in_the_last_window(1, 0, NOW + 2 * hour, hour) == 1


@pytest.mark.parametrize(("chosen", "header", "expected"), [
    ("en", "it-IT,it;q=0.9", "en"),               # the requester's choice wins
    (None, "it-IT,it;q=0.9,en;q=0.8", "it"),
    (None, "de-DE,de;q=0.9,en;q=0.5,it;q=0.7", "it"),  # by quality, not by order
    (None, "fr-FR", "en"),                        # nothing we speak: English
    (None, None, "en"),
    ("de", "en-GB", "en"),                        # a choice we do not offer is ignored
    (None, "it;q=abc, en", "en"),                 # a malformed range is skipped
])
def test_a_page_speaks_the_chosen_then_the_browsers_language(
        chosen: str | None, header: str | None, expected: str) -> None:
    assert rules.language_of(chosen, header) == expected


def test_plain_words_map_to_impact_and_urgency() -> None:
    assert rules.IMPACT_OF[rules.Reach.EVERYONE] is Impact.HIGH
    assert rules.IMPACT_OF[rules.Reach.ME] is Impact.LOW
    assert rules.URGENCY_OF[rules.Hurry.BLOCKED] is Urgency.HIGH
    assert rules.URGENCY_OF[rules.Hurry.CAN_WAIT] is Urgency.LOW


def test_a_snippet_becomes_text_parts_with_the_matched_words_marked() -> None:
    parts = rules.snippet_parts("la <b>stampante</b> &lt;script&gt; &amp; <b>carta</b>")
    assert parts == [("la ", False), ("stampante", True), (" <script> & ", False),
                     ("carta", True)]


def test_both_languages_say_everything() -> None:
    assert set(TEXTS["it"]) == set(TEXTS["en"])


def test_pages_escape_what_people_wrote() -> None:
    page = pages.Page("en", email="mario@example.it", csrf="token", zone="Europe/Rome",
                      path="/portal/requests/HD-2026-000001")
    ticket = {"number": "HD-2026-000001", "subject": "<img src=x onerror=alert(1)>",
              "status": "resolved", "level": "L1", "time_limit": None, "resolution": "<b>x</b>",
              "can_rate": True, "rating": None,
              "messages": [{"author": "agent", "body": "<script>alert(1)</script>",
                            "at": NOW.isoformat(), "attachments": ["<evil>.txt"]}]}
    html, status = pages.request(page, ticket, form_key="key")
    assert status == 200
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;evil&gt;.txt" in html
    assert html.count('name="csrf" value="token"') == 4  # sign out, confirm, reply, rating
    assert 'lang="en"' in html


def test_titles_are_escaped_once() -> None:
    page = pages.Page("it", email=None, csrf="token", zone="Europe/Rome", path="/portal/link")
    html, _ = pages.link(page, "t" * 43)
    assert "<h1>Accedi all&#x27;help desk</h1>" in html
