"""The requester's page, rendered without I/O: escaped, localised, the form only when due."""

from __future__ import annotations

from datetime import UTC, datetime

from sportello_contracts.enums import Author, TicketStatus
from sportello_intake.requester.page import PageData, PageMessage, render_status_page

AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def data(**changes: object) -> PageData:
    base: dict[str, object] = {
        "number": "HD-2026-000001", "subject": "<script>alert(1)</script>",
        "status": TicketStatus.RESOLVED, "level": "L1", "time_limit": AT,
        "resolution": "Fatto <b>subito</b>", "can_rate": True, "rating": None,
        "messages": (PageMessage(Author.REQUESTER, "Anna", "ciao\n<img src=x>", AT),),
    }
    base.update(changes)
    return PageData(**base)  # type: ignore[arg-type]


def render(page: PageData, language: str = "it") -> str:
    return render_status_page(page, language=language, zone="Europe/Rome",
                              rating_action='/public/tickets/HD-2026-000001/rating?token="x"')


def test_everything_the_requester_or_an_agent_wrote_is_escaped() -> None:
    html = render(data())
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html
    assert "Fatto &lt;b&gt;subito&lt;/b&gt;" in html
    assert 'token=&quot;x&quot;' in html


def test_the_page_speaks_the_requesters_language_and_local_time() -> None:
    assert ">Risolta<" in render(data(), "it")
    assert ">Resolved<" in render(data(), "en")
    assert "23/11/2026 10:00 (Europe/Rome)" in render(data())


def test_the_rating_form_only_while_a_rating_is_due() -> None:
    assert "<form" in render(data())
    assert "<form" not in render(data(can_rate=False, status=TicketStatus.IN_PROGRESS))
    rated = render(data(can_rate=False, rating=4))
    assert "<form" not in rated
    assert "4/5" in rated
