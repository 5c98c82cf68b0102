"""Intake's event handlers: routing's decisions land on the ticket record, and the requester
is told what happened (acknowledgement, assignment, escalation, waiting-for-you, resolution,
an agent's reply, knowledge-base suggestions) on their own channel.

A notice is recorded per (event, kind) before and after sending: a redelivered
event finds it sent and does not mail twice; a failed send is retried by the
bus and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prometheus_client import Counter

from sportello_contracts import EventEnvelope, parse_payload, utc_now
from sportello_contracts.enums import Author, Channel, TicketStatus, Visibility
from sportello_contracts.events import (
    KbSuggestionsReady,
    TicketAssigned,
    TicketCreated,
    TicketEscalated,
    TicketMessageAdded,
    TicketResolved,
    TicketStatusChanged,
)
from sportello_intake import tokens
from sportello_intake.domain import Ticket, apply_assignment
from sportello_intake.notices import (
    Notice,
    NoticeKind,
    format_suggestions,
    format_time_limit,
    language_of,
    render,
)
from sportello_intake.outbound import DeliveryFailed, Outbound
from sportello_intake.settings import IntakeSettings
from sportello_intake.store import TicketStore
from sportello_runtime.bus import Outcome, Subscription
from sportello_runtime.concurrency import retry_on_conflict

log = logging.getLogger(__name__)

NOTICE_NAMESPACE = uuid.UUID("0b7f6a52-8f0e-4c1e-9a59-2f6f1b1c0a11")


class TicketNotFound(Exception):
    """The event is about a ticket we do not (yet) have: retried, then parked."""


@dataclass(frozen=True)
class NoticeMetrics:
    sent: Counter
    failed: Counter
    skipped: Counter


def waits_for_the_requester(envelope: EventEnvelope) -> bool:
    changed = parse_payload(envelope, TicketStatusChanged)
    return changed.to_status is TicketStatus.WAITING_CUSTOMER


def is_an_agent_reply(envelope: EventEnvelope) -> bool:
    """A public agent message, except on the phone: the requester was on the call."""
    added = parse_payload(envelope, TicketMessageAdded)
    return (added.author is Author.AGENT and added.visibility is Visibility.PUBLIC
            and added.channel is not Channel.PHONE)


class IntakeConsumers:
    def __init__(self, tickets: TicketStore, outbound: Outbound, settings: IntakeSettings,
                 metrics: NoticeMetrics, token_secret: str) -> None:
        self._tickets = tickets
        self._outbound = outbound
        self._settings = settings
        self._metrics = metrics
        self._token_secret = token_secret
        self._notifying = bool(settings.smtp_relay_url or settings.chat_callback_url)

    def handlers(self) -> dict[str, Any]:
        """Without a relay or a chat callback nobody can be told anything: the notice
        handlers are not even subscribed (said once in the log), saving their reads."""
        # Assignments carry routing's sequence, kept on the ticket: a copy is seen as stale.
        routing = {TicketAssigned.event_type: Subscription(self.on_ticket_assigned,
                                                           idempotent=True)}
        if not self._notifying:
            log.warning("neither SMTP_RELAY_URL nor CHAT_CALLBACK_URL is set: requesters "
                        "will not be notified")
            return routing
        return {**routing, **self._notices()}

    def unsubscribed(self) -> list[str]:
        """With notices off, their types are unbound: the queue no longer collects them."""
        return [] if self._notifying else sorted(self._notices())

    def _notices(self) -> dict[str, Any]:
        return {
            TicketCreated.event_type: self.on_ticket_created,
            TicketEscalated.event_type: self.on_ticket_escalated,
            # Most status changes and messages tell the requester nothing new: acked
            # without the dedupe records' two round trips.
            TicketStatusChanged.event_type: Subscription(self.on_status_changed,
                                                         wants=waits_for_the_requester),
            TicketResolved.event_type: self.on_ticket_resolved,
            TicketMessageAdded.event_type: Subscription(self.on_message_added,
                                                        wants=is_an_agent_reply),
            KbSuggestionsReady.event_type: self.on_suggestions_ready,
        }

    # --- routing's decisions ------------------------------------------------

    async def on_ticket_assigned(self, envelope: EventEnvelope) -> Outcome:
        assigned = parse_payload(envelope, TicketAssigned)

        async def step() -> Outcome:
            ticket = await self._ticket(assigned.ticket_id, to_change=True)
            change = apply_assignment(ticket, assigned, cause=envelope, now=utc_now())
            if change is None:
                log.info("assignment %s already applied or stale", assigned.sequence)
                return Outcome.DUPLICATE
            await self._tickets.save(change.ticket, previous=ticket, events=change.events)
            log.info("ticket %s assigned to %s (%s)", ticket.number, assigned.group_id,
                     assigned.level.value)
            return Outcome.OK

        outcome = await retry_on_conflict(step, what=f"ticket {assigned.ticket_id}")
        if self._notifying and assigned.sequence == 1:  # escalations have their own notice
            ticket = await self._ticket(assigned.ticket_id)
            await self._after_acknowledgement(ticket)
            await self._notify(ticket, NoticeKind.ASSIGNED, envelope)
        return outcome

    async def _after_acknowledgement(self, ticket: Ticket) -> None:
        """Routing is usually faster than the acknowledgement (which waits for SLA's clock):
        give the acknowledgement a head start so that the requester reads them in order."""
        deadline = time.monotonic() + self._settings.sla_wait_s + 2
        while time.monotonic() < deadline:
            if await self._tickets.notifications.find_one(
                {"ticket_id": ticket.id, "kind": NoticeKind.ACKNOWLEDGED.value,
                 "status": {"$in": ["sent", "skipped", "failed"]}}, {"_id": 1}):
                return
            await asyncio.sleep(0.1)

    # --- keeping the requester informed ------------------------------------

    async def on_ticket_created(self, envelope: EventEnvelope) -> None:
        created = parse_payload(envelope, TicketCreated)
        ticket = await self._ticket(created.ticket_id)
        await self._notify(ticket, NoticeKind.ACKNOWLEDGED, envelope,
                           wait_for_sla=self._settings.sla_wait_s)

    async def on_ticket_escalated(self, envelope: EventEnvelope) -> None:
        escalated = parse_payload(envelope, TicketEscalated)
        ticket = await self._ticket(escalated.ticket_id)
        await self._notify(ticket, NoticeKind.ESCALATED, envelope,
                           level=escalated.to_level.value, group=escalated.to_group)

    async def on_status_changed(self, envelope: EventEnvelope) -> None:
        changed = parse_payload(envelope, TicketStatusChanged)
        ticket = await self._ticket(changed.ticket_id)
        await self._notify(ticket, NoticeKind.WAITING_FOR_YOU, envelope,
                           message=changed.reason or "")

    async def on_ticket_resolved(self, envelope: EventEnvelope) -> None:
        resolved = parse_payload(envelope, TicketResolved)
        ticket = await self._ticket(resolved.ticket_id)
        await self._notify(ticket, NoticeKind.RESOLVED, envelope, resolution=resolved.resolution)

    async def on_message_added(self, envelope: EventEnvelope) -> None:
        added = parse_payload(envelope, TicketMessageAdded)
        ticket = await self._ticket(added.ticket_id)
        await self._notify(ticket, NoticeKind.AGENT_REPLY, envelope, message=added.body)

    async def on_suggestions_ready(self, envelope: EventEnvelope) -> None:
        ready = parse_payload(envelope, KbSuggestionsReady)
        if not ready.suggestions:
            return
        ticket = await self._ticket(ready.ticket_id)
        language = language_of(ticket.requester.language)
        await self._notify(ticket, NoticeKind.SUGGESTIONS, envelope, suggestions=format_suggestions(
            [(s.title, s.url) for s in ready.suggestions], language))

    # --- the notice itself ---------------------------------------------------

    async def _ticket(self, ticket_id: str, *, to_change: bool = False) -> Ticket:
        """``to_change``: the starting point of a fenced save, which may come from memory."""
        if to_change:
            ticket = await self._tickets.to_change(ticket_id)
        else:
            ticket = await self._tickets.by_id(ticket_id)
        if ticket is None:
            raise TicketNotFound(ticket_id)
        return ticket

    def requester_link(self, ticket: Ticket) -> str:
        token = tokens.issue(self._token_secret, ticket.number, now=utc_now(),
                             ttl=timedelta(seconds=self._settings.status_token_ttl_s))
        base = self._settings.public_url.rstrip("/")
        return f"{base}/public/tickets/{ticket.number}?token={token}"

    async def _notify(self, ticket: Ticket, kind: NoticeKind, cause: EventEnvelope, *,
                      wait_for_sla: float = 0.0, **values: str) -> None:
        notices = self._tickets.notifications
        notice_id = str(uuid.uuid5(NOTICE_NAMESPACE, f"{cause.event_id}:{kind.value}"))
        record = await notices.find_one({"_id": notice_id}, {"status": 1})
        if record is not None and record.get("status") in {"sent", "skipped"}:
            return
        route, unreachable = self._route(ticket)
        if route is not None and kind is NoticeKind.ACKNOWLEDGED and await self._too_many_acks(
                route[1], notice_id):
            route, unreachable = None, (
                f"more than {self._settings.ack_limit_per_hour} acknowledgements to this "
                "address this hour (a mail loop?)")
        if route is None:
            await notices.update_one({"_id": notice_id}, {"$set": {
                "ticket_id": ticket.id, "kind": kind.value, "status": "skipped",
                "reason": unreachable, "at": utc_now()}}, upsert=True)
            self._metrics.skipped.labels(kind.value).inc()
            log.info("notice %s for %s skipped: %s", kind.value, ticket.number, unreachable,
                     extra={"ticket_id": ticket.id})
            return
        language = language_of(ticket.requester.language)
        due = await self._outbound.time_limit(ticket.id, wait_s=wait_for_sla)
        if due is None and kind is NoticeKind.ACKNOWLEDGED:
            due = ticket.created_at + timedelta(seconds=self._settings.default_time_limit_s)
        status_url = self.requester_link(ticket)
        notice = render(kind, language, {
            "name": ticket.requester.name, "number": ticket.number, "subject": ticket.subject,
            "level": ticket.level.value if ticket.level else "L1",
            "group": ticket.group_name or "",
            "time_limit": format_time_limit(due, language, self._settings.display_timezone),
            "status_url": status_url,
            "rating_url": f"{status_url}#rating",  # the page's rating form
            **values,
        })
        await notices.update_one({"_id": notice_id}, {
            "$set": {"ticket_id": ticket.id, "kind": kind.value, "channel": route[0],
                     "to": route[1], "subject": notice.subject, "language": notice.language,
                     "status": "sending", "at": utc_now()},
            "$inc": {"attempts": 1}}, upsert=True)
        try:
            message_id = await self._send(ticket, route, notice)
        except DeliveryFailed as exc:
            self._metrics.failed.labels(kind.value, route[0]).inc()
            await notices.update_one({"_id": notice_id},
                                     {"$set": {"status": "failed", "error": str(exc)[:500]}})
            log.warning("notice %s for %s failed: %s", kind.value, ticket.number, exc,
                        extra={"ticket_id": ticket.id})
            raise
        await notices.update_one({"_id": notice_id}, {"$set": {
            "status": "sent", "sent_at": utc_now(), "message_id": message_id}})
        if message_id is not None:
            await self._tickets.remember_mail_ids([message_id], ticket.id)
        self._metrics.sent.labels(kind.value, route[0]).inc()
        log.info("notice %s sent for %s by %s", kind.value, ticket.number, route[0],
                 extra={"ticket_id": ticket.id})

    async def _too_many_acks(self, address: str, notice_id: str) -> bool:
        """Automatic answers to one address are capped per hour: an autoresponder that does not
        say it is one (no Auto-Submitted) would otherwise loop with us forever."""
        rank = await self._tickets.acknowledgement_rank(address.lower(), notice_id, utc_now())
        return rank >= self._settings.ack_limit_per_hour

    def _route(self, ticket: Ticket) -> tuple[tuple[str, str] | None, str]:
        """Where the requester hears from us: the chat they wrote from, else their mailbox."""
        if ticket.origin_key.startswith("chat:"):
            if self._settings.chat_callback_url:
                return ("chat", ticket.origin_key.split(":")[1]), ""
            if not ticket.requester.email:
                return None, "no CHAT_CALLBACK_URL configured"
        if not ticket.requester.email:
            return None, "no address to reach the requester"
        if not self._settings.smtp_relay_url:
            return None, "no SMTP_RELAY_URL configured"
        return ("email", str(ticket.requester.email)), ""

    async def _send(self, ticket: Ticket, route: tuple[str, str],
                    notice: Notice) -> str | None:
        channel, address = route
        if channel == "chat":
            await self._outbound.post_chat(address, ticket.number, notice)
            return None
        mail_ids = [m.external_id for m in ticket.messages
                    if m.channel is Channel.EMAIL and m.external_id]
        return await self._outbound.send_mail(
            ticket.requester.name, address, notice,
            in_reply_to=mail_ids[-1] if mail_ids else None, references=mail_ids[:-1],
            automatic=notice.kind is not NoticeKind.AGENT_REPLY,
        )
