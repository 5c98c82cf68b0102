"""Archived cases, candidates and recurring problems, as pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sportello_contracts.enums import SupportLevel
from sportello_contracts.events import TicketClosed
from sportello_knowledge.domain import cases, recurring
from sportello_knowledge.domain.articles import Audience

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LONG_FIX = ("Il profilo VPN era scaduto: rigenerato dal portale, reinstallato il client "
            "e verificata la connessione dalla rete di casa dell'utente.")


def closed(**changes: object) -> TicketClosed:
    base = dict(ticket_id="t1", number="HD-2026-000001", subject="VPN errore 809",
                description="Il client VPN dà errore 809", resolution=LONG_FIX,
                category="network", language="it", level=SupportLevel.L2,
                created_at=T0, resolved_at=T0 + timedelta(hours=3))
    return TicketClosed(**{**base, **changes})


def test_a_case_keeps_problem_resolution_level_language_and_time_to_resolve() -> None:
    case = cases.archive(closed(), closed_at=T0 + timedelta(days=1), default_language="en")
    assert (case.problem, case.level, case.language) == (
        "Il client VPN dà errore 809", SupportLevel.L2, "it")
    assert case.time_to_resolve_s == 3 * 3600
    unknown = cases.archive(closed(language=None, created_at=None), closed_at=T0,
                            default_language="en")
    assert unknown.language == "en"
    assert unknown.time_to_resolve_s is None


def test_a_candidate_needs_a_substantial_resolution_that_nothing_published_covers() -> None:
    case = cases.archive(closed(), closed_at=T0, default_language="en")
    assert cases.deserves_candidate(case, covered=False)
    assert not cases.deserves_candidate(case, covered=True)
    short = cases.archive(closed(resolution="Risolto."), closed_at=T0, default_language="en")
    assert not cases.deserves_candidate(short, covered=False)


def test_coverage_is_the_share_of_the_problems_terms_an_article_holds() -> None:
    problem = ["vpn", "error", "809", "client"]
    assert cases.coverage(problem, ["vpn", "error", "809", "profil"]) == 0.75
    assert cases.is_covered(problem, [["printer"], ["vpn", "error", "809"]], threshold=0.6)
    assert not cases.is_covered(problem, [["vpn"]], threshold=0.6)
    assert cases.coverage([], ["vpn"]) == 0.0


def test_the_candidate_draft_is_prefilled_from_the_case_for_agents() -> None:
    case = cases.archive(closed(), closed_at=T0, default_language="en")
    draft = cases.candidate_draft(case)
    assert draft.title == "VPN errore 809"
    assert draft.audience is Audience.INTERNAL
    assert "## Problema" in draft.body
    assert "## Soluzione" in draft.body
    assert LONG_FIX in draft.body
    assert draft.linked_tickets == ("HD-2026-000001",)
    assert draft.category == "network"


VPN = ["vpn", "error", "809", "client"]
PRINTER = ["stampant", "bloccat", "carta"]


def test_similar_cases_join_one_group_and_different_ones_start_another() -> None:
    groups: list[recurring.Group] = []
    for n, terms in enumerate([VPN, [*VPN, "casa"], PRINTER, ["vpn", "809", "client"]]):
        group = recurring.place(f"t{n}", terms, groups, subject=f"s{n}", period="2026-11",
                                language="it")
        groups = [g for g in groups if g.id != group.id] + [group]
    sizes = sorted(g.size for g in groups)
    assert sizes == [1, 3]
    vpn = next(g for g in groups if g.size == 3)
    assert vpn.ticket_ids == ("t0", "t1", "t3")
    assert vpn.title == "s0"
    assert recurring.top_terms(vpn, 2)[0] in {"vpn", "809", "client"}


def test_a_case_placed_again_changes_nothing_and_periods_and_languages_stay_apart() -> None:
    first = recurring.place("t0", VPN, [], subject="s", period="2026-11", language="it")
    assert recurring.place("t0", VPN, [first], subject="s", period="2026-11",
                           language="it") == first
    other_month = recurring.place("t1", VPN, [first], subject="s", period="2026-12",
                                  language="it")
    other_language = recurring.place("t2", VPN, [first], subject="s", period="2026-11",
                                     language="en")
    assert first.id not in (other_month.id, other_language.id)


def test_a_group_is_proposed_once_when_it_reaches_the_threshold_uncovered() -> None:
    group = recurring.Group("g", "2026-11", "it", {"vpn": 1.0}, ("a", "b", "c", "d"))
    assert not recurring.faq_due(group, covered=False, threshold=5)
    grown = recurring.place("e", ["vpn"], [group], subject="s", period="2026-11",
                            language="it")
    assert recurring.faq_due(grown, covered=False, threshold=5)
    assert not recurring.faq_due(grown, covered=True, threshold=5)
    from dataclasses import replace
    assert not recurring.faq_due(replace(grown, proposed=True), covered=False, threshold=5)


def test_period_of_is_the_calendar_month() -> None:
    assert recurring.period_of(T0) == "2026-11"
