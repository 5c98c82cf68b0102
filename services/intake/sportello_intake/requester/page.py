"""The requester's status page as HTML, in Italian or English: pure rendering, no I/O.

Browsers following the link in a notice get this page (with the rating form
once the ticket is resolved); API clients get the same data as JSON. Every
value is escaped; the page loads nothing from anywhere (see ``PAGE_HEADERS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from sportello_contracts.enums import Author, TicketStatus

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",  # the link's token must not leak to other sites
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

TEXT = {
    "en": {
        "title": "Request", "status": "Status", "level": "Support level",
        "time_limit": "Time limit", "none": "not set yet", "conversation": "Conversation",
        "you": "You", "desk": "Service desk", "system": "Sportello", "resolution": "Resolution",
        "rate": "How did we do?", "score": "Your rating (1 = poor, 5 = excellent)",
        "comment": "Comment (optional)", "send": "Send rating", "thanks": "Thank you: you rated",
        "reply": "To add information, reply to our last e-mail.", "error": "Please check",
        "portal": "All your requests, and answers from the browser",
    },
    "it": {
        "title": "Richiesta", "status": "Stato", "level": "Livello di supporto",
        "time_limit": "Tempo limite", "none": "non ancora definito",
        "conversation": "Conversazione", "you": "Tu", "desk": "Service desk",
        "system": "Sportello", "resolution": "Soluzione", "rate": "Come è andata?",
        "score": "Il tuo voto (1 = pessimo, 5 = ottimo)", "comment": "Commento (facoltativo)",
        "send": "Invia il voto", "thanks": "Grazie: il tuo voto è",
        "reply": "Per aggiungere informazioni rispondi alla nostra ultima e-mail.",
        "error": "Controlla",
        "portal": "Tutte le tue richieste, e le risposte dal browser",
    },
}

STATUS_LABELS = {
    "en": {TicketStatus.NEW: "Received", TicketStatus.ASSIGNED: "Assigned",
           TicketStatus.IN_PROGRESS: "In progress",
           TicketStatus.WAITING_CUSTOMER: "Waiting for your reply",
           TicketStatus.RESOLVED: "Resolved", TicketStatus.CLOSED: "Closed",
           TicketStatus.REOPENED: "Reopened"},
    "it": {TicketStatus.NEW: "Ricevuta", TicketStatus.ASSIGNED: "Assegnata",
           TicketStatus.IN_PROGRESS: "In lavorazione",
           TicketStatus.WAITING_CUSTOMER: "In attesa di una tua risposta",
           TicketStatus.RESOLVED: "Risolta", TicketStatus.CLOSED: "Chiusa",
           TicketStatus.REOPENED: "Riaperta"},
}

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;"
    "color:#1c1c1c}dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}"
    "dt{font-weight:600}article{border-left:3px solid #ccc;padding:.2rem .8rem;margin:.8rem 0}"
    "article.agent{border-color:#2a6fdb}.meta{color:#666;font-size:.85rem}"
    ".error{color:#b00020}fieldset{border:0;padding:0}"
)


@dataclass(frozen=True)
class PageMessage:
    author: Author
    author_name: str | None
    body: str
    at: datetime
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True)
class PageData:
    number: str
    subject: str
    status: TicketStatus
    level: str | None
    time_limit: datetime | None
    resolution: str | None
    can_rate: bool
    rating: int | None
    messages: tuple[PageMessage, ...]


def _when(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).strftime("%d/%m/%Y %H:%M")


def render_status_page(data: PageData, *, language: str, rating_action: str, zone: str,
                       error: str | None = None, portal_link: str | None = None) -> str:
    """The page; ``rating_action`` is where the form posts (it carries the signed token);
    ``portal_link`` signs the requester in to the portal with the same token."""
    t = TEXT.get(language, TEXT["en"])
    labels = STATUS_LABELS.get(language, STATUS_LABELS["en"])
    due = f"{_when(data.time_limit, zone)} ({escape(zone)})" if data.time_limit else t["none"]
    messages = []
    for m in data.messages:
        who = {Author.REQUESTER: t["you"], Author.AGENT: t["desk"],
               Author.SYSTEM: t["system"]}[m.author]
        files = "".join(f"<li>{escape(name)}</li>" for name in m.attachments)
        messages.append(
            f'<article class="{m.author.value}"><p class="meta">{escape(who)} · '
            f'{_when(m.at, zone)}</p><p>{escape(m.body).replace(chr(10), "<br>")}</p>'
            + (f"<ul>{files}</ul>" if files else "") + "</article>"
        )
    resolution = (f'<section id="resolution"><h2>{t["resolution"]}</h2>'
                  f'<p>{escape(data.resolution)}</p></section>'
                  if data.resolution and data.status in {TicketStatus.RESOLVED,
                                                         TicketStatus.CLOSED} else "")
    if data.rating is not None:
        rating = f'<section id="rating"><p id="rated">{t["thanks"]} {data.rating}/5.</p></section>'
    elif data.can_rate:
        choices = "".join(
            f'<label><input type="radio" name="score" value="{n}" required> {n}</label> '
            for n in range(1, 6))
        problem = (f'<p class="error" role="alert">{t["error"]}: {escape(error)}</p>'
                   if error else "")
        rating = (
            f'<section id="rating"><h2>{t["rate"]}</h2>{problem}'
            f'<form method="post" action="{escape(rating_action)}">'
            f'<fieldset><legend>{t["score"]}</legend>{choices}</fieldset>'
            f'<p><label for="comment">{t["comment"]}</label><br>'
            f'<textarea id="comment" name="comment" maxlength="2000" rows="3"></textarea></p>'
            f'<button type="submit">{t["send"]}</button></form></section>'
        )
    else:
        rating = f'<p class="meta">{t["reply"]}</p>'
    return (
        f'<!doctype html><html lang="{escape(language)}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{t['title']} {escape(data.number)} · Sportello</title>"
        f"<style>{STYLE}</style></head><body><main>"
        f"<h1>{t['title']} {escape(data.number)}</h1><p id=\"subject\">{escape(data.subject)}</p>"
        f"<dl><dt>{t['status']}</dt><dd id=\"status\">{escape(labels[data.status])}</dd>"
        f"<dt>{t['level']}</dt><dd id=\"level\">{escape(data.level or '-')}</dd>"
        f"<dt>{t['time_limit']}</dt><dd id=\"time-limit\">{due}</dd></dl>"
        f"{resolution}<section id=\"conversation\"><h2>{t['conversation']}</h2>"
        f"{''.join(messages)}</section>{rating}"
        + (f'<p><a id="portal" href="{escape(portal_link)}">{t["portal"]}</a></p>'
           if portal_link else "")
        + "</main></body></html>"
    )
