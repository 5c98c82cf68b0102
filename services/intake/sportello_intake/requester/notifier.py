"""Keeping the requester informed: which notice goes out when, once, in order.

The acknowledgement carries the requester's time limit, which SLA announces
(``sla.time_limit_set``) once routing has triaged the ticket. So the
acknowledgement goes out when that announcement arrives, and the first
assignment notice right after it, whichever of the two events came first: the
order is kept by the notices' own records, not by waiting. Where no SLA
service runs (no ``SLA_URL``) the acknowledgement goes out at once with the
configured default; where SLA runs but has said nothing within
``SLA_WAIT_S``, a sweep sends it with that default.

A notice is claimed before sending and recorded after: a redelivered event or
a second handler finds it taken and does not mail twice; a failed send is
retried with its event and counted. A database that stops answering mid-way
loses nothing and doubles nothing: a claim whose answer was lost may have been
written, so the retry claims it again under the same name; a notice mailed whose
record was not written is remembered until it can be (its event is retried
meanwhile), so it is not mailed again and what follows it (the assignment
after the acknowledgement) still goes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter
from pymongo.errors import PyMongoError

from sportello_contracts import utc_now
from sportello_contracts.enums import Channel
from sportello_intake.domain import Ticket
from sportello_intake.requester import tokens
from sportello_intake.requester.notices import (
    Notice,
    NoticeKind,
    format_suggestions,
    format_time_limit,
    language_of,
    render,
)
from sportello_intake.requester.outbound import DeliveryFailed, NoticeNotBuildable, Outbound
from sportello_intake.settings import IntakeSettings
from sportello_intake.store import (
    FINAL,
    NoticeClaim,
    NoticeStatus,
    NoticeStore,
    SentNotice,
    TicketStore,
)
from sportello_runtime.metrics import ServiceMetrics

log = logging.getLogger(__name__)

NOTICE_NAMESPACE = uuid.UUID("0b7f6a52-8f0e-4c1e-9a59-2f6f1b1c0a11")


@dataclass(frozen=True)
class NoticeMetrics:
    sent: Counter
    failed: Counter
    skipped: Counter

    @classmethod
    def registered_on(cls, m: ServiceMetrics) -> NoticeMetrics:
        return cls(
            sent=m.counter("notifications_sent_total", "Notices sent to requesters",
                           ["kind", "channel"]),
            failed=m.counter("notifications_failed_total",
                             "Notices the relay or chat platform did not take (retried)",
                             ["kind", "channel"]),
            skipped=m.counter("notifications_skipped_total",
                              "Notices with no way to reach the requester (no address, no relay)",
                              ["kind"]),
        )


def notice_id(key: str, kind: NoticeKind) -> str:
    """One id per notice: per ticket for the acknowledgement and the first assignment
    (several events may trigger them), per event for the rest."""
    return str(uuid.uuid5(NOTICE_NAMESPACE, f"{key}:{kind.value}"))


TicketRead = Callable[[], Awaitable[Ticket]]


class ReadOnce:
    """How a notice's ticket is read once the notice is claimed (so that what was kept on
    the ticket before the claim goes with it), and what that read answered: ``None`` until
    it ran, and for good when the notice was not this handler's to send."""

    def __init__(self, read: TicketRead) -> None:
        self._read = read
        self.answer: Ticket | None = None

    async def __call__(self) -> Ticket:
        self.answer = await self._read()
        return self.answer


def _assignment_if_assigned(ticket: Ticket) -> NoticeKind | None:
    """Assigned already when the acknowledgement was claimed (the usual order): the
    assignment handler found the acknowledgement still to come, so the assignment notice
    is the acknowledgement's to send, claimed in the write that records it."""
    return NoticeKind.ASSIGNED if ticket.routing_sequence >= 1 else None


class NoticeInFlight(Exception):
    """Another handler holds the notice's claim: its event is retried."""


class AcknowledgementInFlight(Exception):
    """The acknowledgement is being sent right now: whether it carried the articles is
    known in a moment (the event is retried)."""


class Notifier:
    def __init__(self, tickets: TicketStore, notices: NoticeStore, outbound: Outbound,
                 settings: IntakeSettings, metrics: NoticeMetrics, token_secret: str) -> None:
        self._tickets = tickets
        self._notices = notices
        self._outbound = outbound
        self._settings = settings
        self._metrics = metrics
        self._token_secret = token_secret
        self.enabled = settings.notifies
        self.acknowledges_at_once = self.enabled and not settings.sla_url
        """No SLA service to wait for: the acknowledgement goes when the ticket is opened."""
        self._uncertain: dict[str, set[str]] = {}
        """Names of claims whose answer the database did not deliver, by notice id. Any of
        them may be written: two handlers of one notice (the time limit's and the at-once
        acknowledgement's) can each lose one, and the retry must retake whichever it was."""
        self._unrecorded: dict[str, SentNotice] = {}
        """Notices mailed whose record the database did not take, by notice id."""
        self._claimed: dict[str, str] = {}
        """Claims written with the record of the notice before (the assignment notice's
        with the acknowledgement's), by notice id: the owner's name, to send under."""

    # --- the acknowledgement and the first assignment, in that order -------------------

    async def ticket_opened(self, ticket_id: str) -> None:
        """Where no SLA service runs: acknowledge at once, with the default time limit.
        (Where one runs, the ticket was saved holding its acknowledgement until
        ``SLA_WAIT_S`` after creation: SLA's time limit, or the sweep past that, sends it.)"""
        await self._acknowledge_by_id(ticket_id)

    async def time_limit_known(self, ticket_id: str, note: TicketRead) -> None:
        """SLA announced the time limit: the acknowledgement can say it. ``note`` keeps the
        limit and answers the ticket; it runs once the acknowledgement is claimed, so that
        one round trip both keeps the limit and reads what the acknowledgement says (and
        always runs, the acknowledgement sent before or not)."""
        noting = ReadOnce(note)
        await self._acknowledge(ticket_id, noting)
        if noting.answer is None:
            await note()

    async def first_assignment(self, ticket: Ticket) -> None:
        """Told after the acknowledgement: if that is still to come, it brings this along."""
        if await self._notices.is_done(notice_id(ticket.id, NoticeKind.ACKNOWLEDGED)):
            current = await self._tickets.by_id(ticket.id) or ticket  # with SLA's time limit
            await self._notify(current.id, NoticeKind.ASSIGNED,
                               notice_id(ticket.id, NoticeKind.ASSIGNED), ticket=current)

    async def acknowledge(self, ticket: Ticket) -> None:
        """Send the acknowledgement (once), then the assignment notice if routing has
        assigned the ticket (``_acknowledge``); the ticket is read again once the
        acknowledgement is claimed."""
        async def again() -> Ticket:
            return await self._tickets.by_id(ticket.id) or ticket

        await self._acknowledge(ticket.id, ReadOnce(again))

    async def _acknowledge(self, ticket_id: str, read: ReadOnce) -> None:
        """The acknowledgement, written from the ticket as ``read`` answers it once the
        acknowledgement is claimed (articles kept before the claim go with it), then the
        assignment notice. The assignment handler reads the acknowledgement's record after
        saving the assignment, and this reads the ticket after claiming the acknowledgement
        (and again after recording it, unless assigned already then): whichever runs second
        sends the assignment notice."""
        if not await self._notify(ticket_id, NoticeKind.ACKNOWLEDGED,
                                  notice_id(ticket_id, NoticeKind.ACKNOWLEDGED), ticket=read,
                                  then_claim=_assignment_if_assigned):
            return  # another handler is sending it: that one brings the assignment along
        current = read.answer
        if current is None or current.routing_sequence < 1:
            current = await self._tickets.by_id(ticket_id) or current
        if current is not None and current.routing_sequence >= 1:
            await self._notify(ticket_id, NoticeKind.ASSIGNED,
                               notice_id(ticket_id, NoticeKind.ASSIGNED), ticket=current)

    async def suggestions_ready(self, ticket_id: str, cause_event_id: str,
                                suggestions: list[tuple[str, str | None]]) -> None:
        """Articles for the requester: in the acknowledgement when it has not gone yet
        (the usual order: knowledge answers in tens of milliseconds, SLA's time limit
        waits for triage), else in a mail of their own. The acknowledgement reads the
        ticket once its send is claimed, so articles kept before the claim go with it;
        while it is being sent, this waits (a retry) to learn whether they went."""
        ticket = await self._tickets.note_suggestions(ticket_id, suggestions)
        if ticket is None:
            return  # the caller found it; it cannot have gone
        ack = notice_id(ticket.id, NoticeKind.ACKNOWLEDGED)
        status = await self._notices.status(ack)
        if status == NoticeStatus.SENDING:
            raise AcknowledgementInFlight(ticket.number)
        if status not in FINAL or await self._notices.carried_suggestions(ack):
            return  # the acknowledgement is still to go (or to be retried): it carries them
        await self._notify(ticket.id, NoticeKind.SUGGESTIONS,
                           notice_id(cause_event_id, NoticeKind.SUGGESTIONS),
                           {"suggestions": format_suggestions(
                               list(suggestions), language_of(ticket.requester.language))},
                           ticket=ticket)

    async def acknowledge_overdue(self) -> int:
        """Acknowledge, with the default time limit, what waited for SLA too long: tickets
        holding their acknowledgement, and the holds kept as notices by earlier versions."""
        done = 0
        now = utc_now()
        for ticket_id in await self._tickets.waiting_for_sla(now):
            done += await self._acknowledge_by_id(ticket_id)
            await self._tickets.stop_waiting_for_sla(ticket_id)
        for ticket_id in await self._notices.overdue(now):
            done += await self._acknowledge_by_id(ticket_id)
        return done

    async def _acknowledge_by_id(self, ticket_id: str) -> bool:
        """Whether the ticket was there to acknowledge."""
        ticket = await self._tickets.by_id(ticket_id)
        if ticket is None:
            return False
        await self.acknowledge(ticket)
        return True

    async def sweep_overdue(self) -> None:
        if acknowledged := await self.acknowledge_overdue():
            log.warning("acknowledged %s tickets with the default time limit: SLA announced "
                        "none within SLA_WAIT_S (is it down, or behind?)", acknowledged)
        if resumed := await self.resume_abandoned():
            log.warning("resumed %s notices a stopped process had claimed", resumed)

    async def resume_abandoned(self) -> int:
        """Acknowledgements and first assignment notices claimed by a process that died
        before recording them (past ``NOTICE_STALE_SENDING_S``): no event will come for
        them again, so the sweep sends them. One that was mailed before the crash goes
        again under the same Message-ID."""
        resumed = 0
        for ticket_id, kind in await self._notices.abandoned(utc_now()):
            ticket = await self._tickets.by_id(ticket_id)
            if ticket is None:  # claimed on an event about a ticket not stored here
                await self._notices.skipped(notice_id(ticket_id, NoticeKind(kind)),
                                            "the ticket is not known here")
                continue  # and not found by every sweep after, ahead of the real ones
            if kind == NoticeKind.ACKNOWLEDGED.value:
                await self.acknowledge(ticket)
            else:
                await self.first_assignment(ticket)
            resumed += 1
        return resumed

    # --- any notice ---------------------------------------------------------------------

    async def notify(self, ticket: Ticket, kind: NoticeKind, cause_event_id: str,
                     **values: str) -> None:
        """A notice of its own event. Claimed by another handler and not done, it may be
        a killed process's: the event is retried until the notice is sent or that claim is
        stale, and then taken over (what the notice says comes with the event alone)."""
        if not await self._notify(ticket.id, kind, notice_id(cause_event_id, kind), values,
                                  ticket=ticket):
            raise NoticeInFlight(f"{kind.value} for {ticket.number}")

    def requester_link(self, ticket: Ticket) -> str:
        token = tokens.issue(self._token_secret, ticket.number, now=utc_now(),
                             ttl=timedelta(seconds=self._settings.status_token_ttl_s))
        base = self._settings.public_url.rstrip("/")
        return f"{base}/public/tickets/{ticket.number}?token={token}"

    def time_limit(self, ticket: Ticket, kind: NoticeKind) -> datetime | None:
        """SLA's last word; the acknowledgement promises the default when SLA said none."""
        if ticket.time_limit is None and kind is NoticeKind.ACKNOWLEDGED:
            return ticket.created_at + timedelta(seconds=self._settings.default_time_limit_s)
        return ticket.time_limit

    async def _notify(self, ticket_id: str, kind: NoticeKind, nid: str,
                      values: dict[str, str] | None = None, *, ticket: Ticket | TicketRead,
                      then_claim: Callable[[Ticket], NoticeKind | None] | None = None) -> bool:
        """Send the notice unless it is done or on its way; whether it is done now (sent,
        skipped, or failed and left to the retry). Written from ``ticket``, or from what it
        answers when it is a read (run once the notice is claimed). ``then_claim``: the
        ticket's notice that follows (if any, as the ticket stands), claimed with this
        one's record."""
        if (unrecorded := self._unrecorded.pop(nid, None)) is not None:
            await self._record(unrecorded)  # mailed already: only the record was missing
            return True
        # Taken from the maps before the first await: one handler of this process resumes.
        claimed = self._claimed.pop(nid, None)
        earlier = tuple(self._uncertain.pop(nid, ()))
        claim = claimed or uuid.uuid4().hex
        try:
            if claimed is None and not await self._notices.claim(nid, ticket_id, kind.value,
                                                                 utc_now(), claim, earlier):
                # Sent or skipped before, or being sent by another handler right now.
                return await self._notices.is_done(nid)
            if not isinstance(ticket, Ticket):
                ticket = await ticket()
            sent = await self._deliver(ticket, kind, nid, values or {})
        except PyMongoError:
            # The claim may be written and the notice not sent: the retry claims it again.
            self._lost(nid, claim, *earlier)
            raise
        if sent is None:
            return True
        follower = None
        if then_claim is not None and (follows := then_claim(ticket)) is not None:
            follower_id = notice_id(ticket_id, follows)
            follower = NoticeClaim(follower_id, ticket_id, follows.value, utc_now(),
                                   uuid.uuid4().hex, tuple(self._uncertain.pop(follower_id, ())))
        await self._record(sent, follower)
        return True

    async def _deliver(self, ticket: Ticket, kind: NoticeKind, nid: str,
                       values: dict[str, str]) -> SentNotice | None:
        """Send a claimed notice: what to record, or ``None`` when it was skipped or cannot
        be built (recorded here)."""
        if kind is NoticeKind.ACKNOWLEDGED and ticket.suggestions:  # read once claimed
            values = {**values, "suggestions": format_suggestions(
                list(ticket.suggestions), language_of(ticket.requester.language))}
        route, unreachable = self._route(ticket)
        if route is not None and kind is NoticeKind.ACKNOWLEDGED and (
                ticket.channel is Channel.EMAIL) and await self._too_many_acks(route[1], nid):
            route, unreachable = None, (
                f"more than {self._settings.ack_limit_per_hour} acknowledgements to this "
                "address this hour (a mail loop?)")
        if route is None:
            await self._notices.skipped(nid, unreachable)
            self._metrics.skipped.labels(kind.value).inc()
            log.info("notice %s for %s skipped: %s", kind.value, ticket.number, unreachable,
                     extra={"ticket_id": ticket.id})
            return None
        language = language_of(ticket.requester.language)
        status_url = self.requester_link(ticket)
        notice = render(kind, language, {
            "name": ticket.requester.name, "number": ticket.number, "subject": ticket.subject,
            "level": ticket.level.value if ticket.level else "L1",
            "group": ticket.group_name or "",
            "time_limit": format_time_limit(self.time_limit(ticket, kind), language,
                                            self._settings.display_timezone),
            "status_url": status_url,
            "rating_url": f"{status_url}#rating",  # the page's rating form
            **values,
        })
        sent_as = {"channel": route[0], "to": route[1], "subject": notice.subject,
                   "language": notice.language}
        try:
            message_id = await self._send(ticket, route, notice, nid)
        except NoticeNotBuildable as exc:
            self._metrics.failed.labels(kind.value, route[0]).inc()
            await self._notices.unsendable(nid, str(exc), **sent_as)
            log.warning("notice %s for %s cannot be sent: %s", kind.value, ticket.number, exc,
                        extra={"ticket_id": ticket.id})
            return None  # done: retrying would fail the same way, and park the event
        except DeliveryFailed as exc:
            self._metrics.failed.labels(kind.value, route[0]).inc()
            await self._notices.failed(nid, str(exc), **sent_as)
            log.warning("notice %s for %s failed: %s", kind.value, ticket.number, exc,
                        extra={"ticket_id": ticket.id})
            raise
        self._metrics.sent.labels(kind.value, route[0]).inc()
        log.info("notice %s sent for %s by %s", kind.value, ticket.number, route[0],
                 extra={"ticket_id": ticket.id})
        return SentNotice(nid, ticket.id, message_id, bool(values.get("suggestions")), sent_as)

    async def _record(self, sent: SentNotice, then_claim: NoticeClaim | None = None) -> None:
        """Write that the notice went (and claim the one after it, when there is one); kept
        for the event's retry when the database does not take it (which then records it and
        goes on, claiming the next under the same name)."""
        try:
            if then_claim is None:
                await self._notices.sent(sent)
            elif await self._notices.sent_then_claim(sent, then_claim):
                self._claimed[then_claim.notice_id] = then_claim.owner
        except PyMongoError:
            self._unrecorded[sent.notice_id] = sent
            if then_claim is not None:
                self._lost(then_claim.notice_id, then_claim.owner, *then_claim.earlier)
            raise

    def _lost(self, nid: str, *names: str) -> None:
        """Claims that may have been written under these names: the next try retakes them."""
        self._uncertain.setdefault(nid, set()).update(names)

    async def _too_many_acks(self, address: str, nid: str) -> bool:
        """Acknowledgements of tickets opened by mail are capped per address and hour: an
        autoresponder that does not say it is one (no Auto-Submitted) would otherwise loop
        with us forever. Only mail can loop (an answer to an acknowledgement comes back as
        mail), so a person filing many tickets through the form or the API is acknowledged
        every time, and those acknowledgements cost no count."""
        rank = await self._notices.acknowledgement_rank(address.lower(), nid, utc_now())
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

    async def _send(self, ticket: Ticket, route: tuple[str, str], notice: Notice,
                    nid: str) -> str | None:
        channel, address = route
        if channel == "chat":
            await self._outbound.post_chat(address, ticket.number, notice)
            return None
        mail_ids = [m.external_id for m in ticket.messages
                    if m.channel is Channel.EMAIL and m.external_id]
        return await self._outbound.send_mail(
            ticket.requester.name, address, notice,
            in_reply_to=mail_ids[-1] if mail_ids else None, references=mail_ids[:-1],
            automatic=notice.kind is not NoticeKind.AGENT_REPLY, key=nid,
        )
