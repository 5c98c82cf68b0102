"""The desk: what every channel door does with the pure rules and the store.

Doors (HTTP routes, the SMTP listener) translate their protocol into these
calls; the rules decide; the store writes the ticket and its events in one
update. Creation is idempotent through the ticket's ``origin_key``: the same
Idempotency-Key, chat conversation or Message-ID never makes a second ticket.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal

from prometheus_client import Counter

from sportello_contracts import EventEnvelope, utc_now
from sportello_contracts.api import AttachmentUpload, TicketCreateRequest
from sportello_contracts.enums import Author, Channel, TicketStatus, Visibility
from sportello_contracts.events import LONG, SHORT, Requester, SlaTimeLimitSet, TicketAssigned
from sportello_intake import domain
from sportello_intake.admission import Admission
from sportello_intake.domain import AttachmentRef, Message, Ticket
from sportello_intake.doors.mail import InboundMail, ticket_number_in
from sportello_intake.settings import IntakeSettings
from sportello_intake.store import DuplicateOrigin, TicketStore
from sportello_runtime.concurrency import ConcurrencyConflict, retry_on_conflict
from sportello_runtime.http import LoopLag
from sportello_runtime.metrics import ServiceMetrics

log = logging.getLogger(__name__)


Files = Sequence[tuple[AttachmentRef, bytes]]


class AttachmentRefused(ValueError):
    def __init__(self, reason: str, field: str) -> None:
        super().__init__(reason)
        self.field = field


class TicketMissing(LookupError):
    pass


@dataclass(frozen=True)
class DeskMetrics:
    tickets_created: Counter
    tickets_refused: Counter
    messages: Counter
    mail_ignored: Counter

    @classmethod
    def registered_on(cls, m: ServiceMetrics) -> DeskMetrics:
        return cls(
            tickets_created=m.counter("tickets_created_total", "Tickets opened, by channel",
                                      ["channel"]),
            tickets_refused=m.counter(
                "tickets_refused_total", "What channels brought, refused (503, SMTP 451) "
                "while more came than was assigned within ADMISSION_TARGET_S"),
            messages=m.counter("messages_total", "Conversation messages, by channel and author",
                               ["channel", "author"]),
            mail_ignored=m.counter("mail_ignored_total",
                                   "Inbound mail written by machines (auto-replies, bounces)",
                                   ["reason"]),
        )


@dataclass(frozen=True)
class Outcome:
    ticket: Ticket
    action: Literal["created", "joined", "duplicate", "follow_up"]
    message_id: str | None = None


def decode_uploads(
    uploads: Sequence[AttachmentUpload], *, max_bytes: int, prefix: str
) -> list[tuple[AttachmentRef, bytes]]:
    """Base64 uploads to stored files; a bad or oversized one names its index."""
    files = []
    for index, upload in enumerate(uploads):
        where = f"attachments.{index}.content_base64"
        try:
            content = base64.b64decode(upload.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AttachmentRefused("not valid base64", where) from exc
        if len(content) > max_bytes:
            raise AttachmentRefused(f"{len(content)} bytes; the limit is {max_bytes}", where)
        ref = AttachmentRef(f"{prefix}-{index}", upload.filename, upload.content_type,
                            len(content))
        files.append((ref, content))
    return files


class TicketNotFound(Exception):
    """An event about a ticket we do not (yet) have: retried, then parked."""


class Desk:
    def __init__(self, tickets: TicketStore, settings: IntakeSettings,
                 metrics: DeskMetrics, loop_lag: LoopLag | None = None) -> None:
        self.tickets = tickets
        self.settings = settings
        self.metrics = metrics
        self.admission = Admission(settings.admission_target_s, settings.admission_interval_s,
                                   settings.admission_max_loop_lag_ms / 1000)
        self.loop_lag = loop_lag

    # --- opening and joining -------------------------------------------------

    def refuses_more(self) -> bool:
        """Refuse what a channel brings now (counted)? Asked by the doors before they read
        it (see ``admission``): refusing costs nothing then."""
        lag = self.loop_lag
        if self.admission.admit(time.monotonic(), overdue_s=lag.late_s if lag else 0.0,
                                last_late_s=lag.last_s if lag else 0.0):
            return False
        self.metrics.tickets_refused.inc()
        return True

    async def open(
        self,
        request: TicketCreateRequest,
        *,
        origin_key: str | None = None,
        fingerprint: str | None = None,
        first_message: Message | None = None,
        files: Files = (),
    ) -> tuple[Ticket, bool]:
        """A new ticket, or the one this origin already made (``created`` says which)."""
        if origin_key is not None:
            existing = await self.tickets.by_origin(origin_key)
            if existing is not None:
                return existing, False
        now = utc_now()
        ticket_id = str(uuid.uuid4())
        sequence = await self.tickets.next_sequence(self.settings.ticket_prefix, now.year)
        number = domain.format_number(self.settings.ticket_prefix, now.year, sequence)
        message = first_message or domain.description_message(
            request, message_id=uuid.uuid4().hex, now=now)
        if files:
            message = replace(message, attachments=tuple(ref for ref, _ in files))
            await self.tickets.put_attachments(ticket_id, message.id, files)
        change = domain.open_ticket(
            request, ticket_id=ticket_id, number=number, now=now, origin_key=origin_key,
            fingerprint=fingerprint, first_message=message,
        )
        try:
            await self.tickets.add(change.record, change.events,
                                   ack_wait_until=self.settings.acknowledgement_waits_until(now))
        except DuplicateOrigin:
            await self._forget_files(ticket_id, message.id, files)  # the winner kept its own
            assert origin_key is not None
            winner = await self.tickets.by_origin(origin_key)
            assert winner is not None
            return winner, False
        except BaseException:
            await self._forget_files(ticket_id, message.id, files)
            raise
        self.metrics.tickets_created.labels(request.channel.value).inc()
        self._count(message)
        log.info("ticket %s opened from %s", number, request.channel.value,
                 extra={"ticket_id": ticket_id})
        return change.record, True

    async def post(
        self, ticket: Ticket, message: Message, files: Files = ()
    ) -> tuple[Ticket, bool]:
        """Add a message (retrying on concurrent updates); ``False`` when it was there already."""
        if files:
            message = replace(message, attachments=tuple(ref for ref, _ in files))
            await self.tickets.put_attachments(ticket.id, message.id, files)
        stored = False
        current = ticket

        async def step() -> tuple[Ticket, bool]:
            nonlocal current, stored
            change = domain.add_message(current, message, now=utc_now())
            if change is None:
                return current, False
            try:
                await self.tickets.save(change.record, previous=current, events=change.events)
            except ConcurrencyConflict:
                current = await self.tickets.by_id(ticket.id) or current
                raise
            stored = True
            self._count(message)
            return change.record, True

        try:
            return await retry_on_conflict(step, what=f"ticket {ticket.number}")
        finally:
            if not stored:  # a redelivery, a closed ticket or a failure: no message names them
                await self._forget_files(ticket.id, message.id, files)

    async def _forget_files(self, ticket_id: str, message_id: str, files: Files) -> None:
        if files:
            await self.tickets.drop_attachments(ticket_id, message_id)

    def _count(self, message: Message) -> None:
        channel = message.channel.value if message.channel else "desk"  # written at the desk
        self.metrics.messages.labels(channel, message.author.value).inc()

    async def follow_up(self, closed: Ticket, request: TicketCreateRequest, *, origin_key: str,
                        first_message: Message, files: Files = ()) -> Ticket:
        """A reply to a closed ticket opens a new one that points back to it."""
        body = f"Follow-up of {closed.number} ({closed.subject}).\n\n{first_message.body}"[:LONG]
        linked = request.model_copy(update={
            "description": body, "category_hint": request.category_hint or closed.category_hint,
        })
        ticket, _ = await self.open(linked, origin_key=origin_key, files=files,
                                    first_message=replace(first_message, body=body))
        return ticket

    # --- e-mail --------------------------------------------------------------

    async def take_mail(self, mail: InboundMail) -> Outcome | None:
        """Open, join or follow up from one inbound message; ``None`` when a machine wrote it."""
        if mail.automatic is not None:
            self.metrics.mail_ignored.labels("automatic").inc()
            log.info("ignored automatic mail %s from %s: %s", mail.message_id,
                     mail.sender_email, mail.automatic)
            return None
        origin = f"mail:{mail.message_id}"
        ticket = await self._thread_of(mail)
        files = [(AttachmentRef(f"{uuid.uuid4().hex}-{i}", a.filename, a.content_type,
                                len(a.content)), a.content)
                 for i, a in enumerate(mail.attachments)]
        text = mail.text or "(empty message)"
        if mail.truncated:
            text = text[: LONG - 40] + "\n[message truncated]"
        from_requester = ticket is None or mail.sender_email == (ticket.requester.email or "")
        message = Message(
            id=uuid.uuid4().hex,
            author=Author.REQUESTER,
            visibility=Visibility.PUBLIC if from_requester else Visibility.INTERNAL,
            channel=Channel.EMAIL,
            body=text if from_requester else f"(from {mail.sender_email}) {text}"[:LONG],
            at=utc_now(),
            author_name=mail.sender_name,
            external_id=mail.message_id,
        )
        request = TicketCreateRequest(
            requester=Requester(name=mail.sender_name[:SHORT], email=mail.sender_email,
                                language=mail.language),
            subject=mail.subject, description=text, channel=Channel.EMAIL,
        )
        if ticket is None:
            ticket, created = await self.open(request, origin_key=origin, first_message=message,
                                              files=files)
            await self.tickets.remember_mail_ids([mail.message_id], ticket.id)
            return Outcome(ticket, "created" if created else "duplicate", message.id)
        if ticket.origin_key == origin or domain.has_message(ticket, mail.message_id):
            return Outcome(ticket, "duplicate")
        try:
            ticket, added = await self.post(ticket, message, files)
        except domain.TicketClosedForReplies:
            follow = await self.follow_up(ticket, request, origin_key=origin,
                                          first_message=message, files=files)
            await self.tickets.remember_mail_ids([mail.message_id], follow.id)
            return Outcome(follow, "follow_up", message.id)
        await self.tickets.remember_mail_ids([mail.message_id], ticket.id)
        return Outcome(ticket, "joined" if added else "duplicate", message.id)

    async def _thread_of(self, mail: InboundMail) -> Ticket | None:
        number = ticket_number_in(mail.subject)
        if number is not None:
            ticket = await self.tickets.by_number(number)
            if ticket is not None:
                return ticket
        ticket_id = await self.tickets.ticket_for_mail_ids(mail.thread_ids)
        if ticket_id is not None:
            return await self.tickets.by_id(ticket_id)
        return await self.tickets.by_origin(f"mail:{mail.message_id}")

    # --- chat ----------------------------------------------------------------

    async def take_chat(self, conversation_id: str, sender: Requester, text: str,
                        external_id: str | None, files: Files = ()) -> Outcome:
        """The first message of a conversation opens a ticket; the others join it."""
        origin = f"chat:{conversation_id}"
        message = Message(id=uuid.uuid4().hex, author=Author.REQUESTER,
                          visibility=Visibility.PUBLIC, channel=Channel.CHAT, body=text,
                          at=utc_now(), author_name=sender.name, external_id=external_id)
        request = TicketCreateRequest(requester=sender, subject=_subject_from(text),
                                      description=text, channel=Channel.CHAT)
        ticket = await self.tickets.by_origin(origin)
        while ticket is not None and ticket.status is TicketStatus.CLOSED:
            origin = f"chat:{conversation_id}:{ticket.number}"  # the follow-up's origin
            ticket = await self.tickets.by_origin(origin)
        if ticket is None:
            ticket, created = await self.open(request, origin_key=origin, first_message=message,
                                              files=files)
            return Outcome(ticket, "created" if created else "duplicate", message.id)
        try:
            ticket, added = await self.post(ticket, message, files)
        except domain.TicketClosedForReplies:  # closed between our read and our write
            return await self.take_chat(conversation_id, sender, text, external_id, files)
        return Outcome(ticket, "joined" if added else "duplicate", message.id)

    # --- phone ---------------------------------------------------------------

    async def log_call(
        self, *, caller: Requester, agent_id: str, notes: str, call: dict[str, object],
        subject: str | None, ticket_number: str | None, resolved: bool, public: bool,
        call_id: str | None, category_hint: str | None,
    ) -> Outcome:
        """An agent's call log opens a ticket or joins one; "resolved" closes the loop at once."""
        message = Message(
            id=uuid.uuid4().hex, author=Author.AGENT,
            visibility=Visibility.PUBLIC if public else Visibility.INTERNAL,
            channel=Channel.PHONE, body=notes, at=utc_now(), author_id=agent_id,
            external_id=f"call:{call_id}" if call_id else None, call=call,
        )
        if ticket_number is not None:
            ticket = await self.tickets.by_number(ticket_number)
            if ticket is None:
                raise TicketMissing(ticket_number)
            ticket, added = await self.post(ticket, message)
            outcome = Outcome(ticket, "joined" if added else "duplicate", message.id)
        else:
            request = TicketCreateRequest(
                requester=caller, subject=subject or _subject_from(notes), description=notes,
                channel=Channel.PHONE, category_hint=category_hint,
            )
            ticket, created = await self.open(
                request, origin_key=f"phone:{call_id}" if call_id else None,
                first_message=message,
            )
            outcome = Outcome(ticket, "created" if created else "duplicate", message.id)
        if resolved and outcome.action != "duplicate" and outcome.ticket.status not in {
            TicketStatus.RESOLVED, TicketStatus.CLOSED
        }:
            resolved_ticket = await self.change_status(
                outcome.ticket, TicketStatus.RESOLVED, reason="resolved on the phone",
                actor=agent_id, resolution=notes,
            )
            outcome = replace(outcome, ticket=resolved_ticket)
        return outcome

    # --- lifecycle -----------------------------------------------------------

    async def change_status(self, ticket: Ticket, status: TicketStatus, *, reason: str | None,
                            actor: str | None, resolution: str | None,
                            pinned: bool = False) -> Ticket:
        """Move the ticket. ``pinned``: the caller decided on this version of it (an agent's
        expected version), and a change meanwhile is theirs to see (ConcurrencyConflict).
        Otherwise a change that landed meanwhile (routing's assignment of a ticket being
        resolved at once) is read and the move tried again on it."""
        current = ticket

        async def step() -> Ticket:
            nonlocal current
            change = domain.change_status(current, status, reason=reason, actor=actor,
                                          resolution=resolution, now=utc_now())
            try:
                await self.tickets.save(change.record, previous=current, events=change.events)
            except ConcurrencyConflict:
                current = await self.tickets.by_id(ticket.id) or current
                raise
            return change.record

        if pinned:
            return await step()
        return await retry_on_conflict(step, what=f"ticket {ticket.number}")

    # --- what other services decided -------------------------------------------

    async def apply_assignment(self, assigned: TicketAssigned,
                               cause: EventEnvelope) -> Ticket | None:
        """Routing's assignment on the ticket; ``None`` when it was stale or applied already."""
        async def step() -> Ticket | None:
            ticket = await self.known(assigned.ticket_id, to_change=True)
            change = domain.apply_assignment(ticket, assigned, cause=cause, now=utc_now())
            if change is None:
                return None
            await self.tickets.save(change.record, previous=ticket, events=change.events)
            if assigned.sequence == 1:  # the first: how long a ticket taken waits for it
                waited = change.record.updated_at - ticket.created_at
                self.admission.heard(waited.total_seconds(), time.monotonic())
            log.info("ticket %s assigned to %s (%s)", ticket.number, assigned.group_id,
                     assigned.level.value, extra={"ticket_id": ticket.id})
            return change.record

        return await retry_on_conflict(step, what=f"ticket {assigned.ticket_id}")

    async def note_time_limit(self, announced: SlaTimeLimitSet) -> Ticket:
        """SLA's newest time limit on the ticket (a late, older announcement changes nothing)."""
        noted = await self.tickets.note_time_limit(announced.ticket_id, announced.due_at,
                                                   as_of=announced.as_of)
        return noted or await self.known(announced.ticket_id)

    async def known(self, ticket_id: str, *, to_change: bool = False) -> Ticket:
        """``to_change``: the starting point of a fenced save, which may come from memory."""
        if to_change:
            ticket = await self.tickets.to_change(ticket_id)
        else:
            ticket = await self.tickets.by_id(ticket_id)
        if ticket is None:
            raise TicketNotFound(ticket_id)
        return ticket

    async def rate(self, ticket: Ticket, score: int, comment: str | None) -> Ticket:
        change = domain.rate(ticket, score, comment, now=utc_now())
        await self.tickets.save(change.record, previous=ticket,
                                events=change.events)
        return change.record

    async def close_quiet_tickets(self) -> int:
        """Close resolved tickets nobody answered within the quiet period."""
        quiet = timedelta(seconds=self.settings.auto_close_after_s)
        now = utc_now()
        closed = 0
        for ticket in await self.tickets.resolved_before(now - quiet):
            change = domain.auto_close(ticket, quiet_period=quiet, now=now)
            if change is None:
                continue
            try:
                await self.tickets.save(change.record, previous=ticket,
                                        events=change.events)
            except ConcurrencyConflict:
                continue  # someone replied or another replica closed it: next sweep decides
            closed += 1
            log.info("ticket %s closed after the quiet period", ticket.number,
                     extra={"ticket_id": ticket.id})
        return closed


def _subject_from(text: str) -> str:
    line = " ".join(text.split())
    return (line[:77] + "...") if len(line) > 80 else (line or "(no subject)")
