"""What the requester is told, in Italian or English: pure templates, no I/O.

A notice is chosen by an event (see ``consumers.py``); its text comes from
here, in the requester's language (English when we do not know it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from string import Template
from zoneinfo import ZoneInfo


class NoticeKind(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    ASSIGNED = "assigned"
    ESCALATED = "escalated"
    WAITING_FOR_YOU = "waiting_for_you"
    RESOLVED = "resolved"
    AGENT_REPLY = "agent_reply"
    SUGGESTIONS = "suggestions"


LANGUAGES = ("en", "it")

SUBJECTS: dict[str, dict[NoticeKind, str]] = {
    "en": {
        NoticeKind.ACKNOWLEDGED: "[$number] We received your request: $subject",
        NoticeKind.ASSIGNED: "[$number] Your request is being handled",
        NoticeKind.ESCALATED: "[$number] Your request was passed to $level",
        NoticeKind.WAITING_FOR_YOU: "[$number] We need your reply",
        NoticeKind.RESOLVED: "[$number] Your request is resolved",
        NoticeKind.AGENT_REPLY: "Re: [$number] $subject",
        NoticeKind.SUGGESTIONS: "[$number] Articles that may help",
    },
    "it": {
        NoticeKind.ACKNOWLEDGED: "[$number] Abbiamo ricevuto la tua richiesta: $subject",
        NoticeKind.ASSIGNED: "[$number] La tua richiesta è stata presa in carico",
        NoticeKind.ESCALATED: "[$number] La tua richiesta è passata al livello $level",
        NoticeKind.WAITING_FOR_YOU: "[$number] Ci serve una tua risposta",
        NoticeKind.RESOLVED: "[$number] La tua richiesta è stata risolta",
        NoticeKind.AGENT_REPLY: "Re: [$number] $subject",
        NoticeKind.SUGGESTIONS: "[$number] Articoli che potrebbero aiutarti",
    },
}

BODIES: dict[str, dict[NoticeKind, str]] = {
    "en": {
        NoticeKind.ACKNOWLEDGED: (
            "Hello $name,\n\nwe received your request \"$subject\" and gave it the number "
            "$number.\nWhat happens next: the service desk classifies it and assigns it to the "
            "right team; you will hear from us at every step.\nTime limit: $time_limit.\n"
            "$suggestions\nFollow your request at $status_url\nTo add information, reply to this "
            "message keeping [$number] in the subject.\n\nSportello service desk"
        ),
        NoticeKind.ASSIGNED: (
            "Hello $name,\n\nyour request $number is now handled by $group ($level).\n"
            "Time limit: $time_limit.\nFollow it at $status_url\n\nSportello service desk"
        ),
        NoticeKind.ESCALATED: (
            "Hello $name,\n\nyour request $number needs more specialised help and was passed "
            "to $group ($level).\nTime limit: $time_limit.\nFollow it at $status_url\n\n"
            "Sportello service desk"
        ),
        NoticeKind.WAITING_FOR_YOU: (
            "Hello $name,\n\nto go on with your request $number we need some information from "
            "you: please reply to this message.\n$message\nFollow it at $status_url\n\n"
            "Sportello service desk"
        ),
        NoticeKind.RESOLVED: (
            "Hello $name,\n\nyour request $number is resolved:\n\n$resolution\n\n"
            "If the problem is still there, just reply to this message and we will reopen it.\n"
            "How did we do? Rate us (1-5) at $rating_url\n\nSportello service desk"
        ),
        NoticeKind.AGENT_REPLY: (
            "Hello $name,\n\n$message\n\nReply to this message to answer.\n"
            "Follow your request at $status_url\n\nSportello service desk"
        ),
        NoticeKind.SUGGESTIONS: (
            "Hello $name,\n\nwhile we work on your request $number, these articles may already "
            "help:\n$suggestions\n\nSportello service desk"
        ),
    },
    "it": {
        NoticeKind.ACKNOWLEDGED: (
            "Gentile $name,\n\nabbiamo ricevuto la tua richiesta \"$subject\" con il numero "
            "$number.\nCosa succede ora: il service desk la classifica e la assegna al gruppo "
            "giusto; ti terremo informato a ogni passo.\nTempo limite: $time_limit.\n"
            "$suggestions\nSegui la richiesta su $status_url\nPer aggiungere informazioni "
            "rispondi a questo messaggio lasciando [$number] nell'oggetto.\n\n"
            "Service desk Sportello"
        ),
        NoticeKind.ASSIGNED: (
            "Gentile $name,\n\nla tua richiesta $number è ora gestita da $group ($level).\n"
            "Tempo limite: $time_limit.\nSeguila su $status_url\n\nService desk Sportello"
        ),
        NoticeKind.ESCALATED: (
            "Gentile $name,\n\nla tua richiesta $number richiede un supporto più specialistico "
            "ed è passata a $group ($level).\nTempo limite: $time_limit.\nSeguila su "
            "$status_url\n\nService desk Sportello"
        ),
        NoticeKind.WAITING_FOR_YOU: (
            "Gentile $name,\n\nper proseguire con la tua richiesta $number ci servono alcune "
            "informazioni: rispondi a questo messaggio.\n$message\nSeguila su $status_url\n\n"
            "Service desk Sportello"
        ),
        NoticeKind.RESOLVED: (
            "Gentile $name,\n\nla tua richiesta $number è stata risolta:\n\n$resolution\n\n"
            "Se il problema persiste, rispondi a questo messaggio e la riapriremo.\n"
            "Come è andata? Dacci un voto (1-5) su $rating_url\n\nService desk Sportello"
        ),
        NoticeKind.AGENT_REPLY: (
            "Gentile $name,\n\n$message\n\nRispondi a questo messaggio per replicare.\n"
            "Segui la richiesta su $status_url\n\nService desk Sportello"
        ),
        NoticeKind.SUGGESTIONS: (
            "Gentile $name,\n\nmentre lavoriamo alla tua richiesta $number, questi articoli "
            "potrebbero già aiutarti:\n$suggestions\n\nService desk Sportello"
        ),
    },
}

NO_TIME_LIMIT = {"en": "not set yet", "it": "non ancora definito"}
SUGGESTIONS_HEADING = {"en": "Articles that may help:", "it": "Articoli che potrebbero aiutarti:"}


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    language: str
    subject: str
    body: str


def language_of(requested: str | None) -> str:
    return requested if requested in LANGUAGES else "en"


def format_time_limit(due: datetime | None, language: str, zone: str) -> str:
    """``23/11/2026 17:00 (Europe/Rome)``: the requester reads a local wall-clock time."""
    if due is None:
        return NO_TIME_LIMIT[language]
    local = due.astimezone(ZoneInfo(zone))
    shown = local.strftime("%d/%m/%Y %H:%M") if language == "it" else local.strftime(
        "%Y-%m-%d %H:%M")
    return f"{shown} ({zone})"


def format_suggestions(suggestions: list[tuple[str, str | None]], language: str) -> str:
    if not suggestions:
        return ""
    lines = [f"- {title}" + (f": {url}" if url else "") for title, url in suggestions]
    return "\n".join([SUGGESTIONS_HEADING[language], *lines]) + "\n"


def render(kind: NoticeKind, language: str, values: dict[str, str]) -> Notice:
    """Fill the template; a value the caller did not give shows as empty, never as ``$name``."""
    lang = language_of(language)
    subject = Template(SUBJECTS[lang][kind])
    body = Template(BODIES[lang][kind])
    names = {name for t in (subject, body) for name in t.get_identifiers()}
    filled = {name: values.get(name, "") for name in names}
    return Notice(kind, lang, subject.substitute(filled), body.substitute(filled))
