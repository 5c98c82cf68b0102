"""The desk on the run's MongoDB: what a lost creation race leaves behind (nothing), and
changes that start from this process's copy of a ticket."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import AutoReconnect

from sportello_contracts import EventEnvelope, parse_payload
from sportello_contracts.api import AttachmentUpload, TicketCreateRequest
from sportello_contracts.enums import (
    Author,
    Channel,
    Priority,
    SupportLevel,
    TicketStatus,
    Visibility,
)
from sportello_contracts.events import SlaTimeLimitSet, TicketAssigned, new_event
from sportello_intake.consumers import IntakeConsumers
from sportello_intake.domain import Message
from sportello_intake.requester.notices import NoticeKind, format_time_limit
from sportello_intake.requester.notifier import NoticeMetrics, Notifier, notice_id
from sportello_intake.requester.outbound import NoticeNotBuildable, Outbound
from sportello_intake.service import Desk, DeskMetrics, decode_uploads
from sportello_intake.settings import IntakeSettings
from sportello_intake.store import (
    INDEXES,
    NoticeClaim,
    NoticeStatus,
    NoticeStore,
    SentNotice,
    TicketStore,
)
from sportello_runtime.bus import Outcome
from sportello_runtime.concurrency import ConcurrencyConflict
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.outbox import OutboxRelay
from sportello_runtime.store import MongoStore
from support.mailsink import MailSink

pytestmark = pytest.mark.e2e


class RecordingBus:
    is_connected = True

    def __init__(self) -> None:
        self.published: list[EventEnvelope] = []

    async def publish(self, envelope: EventEnvelope) -> None:
        self.published.append(envelope)


@pytest.fixture
async def mongo(mongo_url: str) -> AsyncIterator[MongoStore]:
    store = MongoStore(mongo_url, f"desk_{uuid.uuid4().hex[:10]}", app_name="test")
    await store.ensure_indexes(INDEXES)
    yield store
    await store.client.drop_database(store.db.name)
    await store.close()


@pytest.fixture
async def desk(mongo: MongoStore) -> Desk:
    store = mongo
    relay = OutboxRelay(RecordingBus(), ServiceMetrics(f"d{uuid.uuid4().hex[:6]}"),  # type: ignore[arg-type]
                        sweep_interval_s=60, stale_after_s=60)
    registry = CollectorRegistry()

    def counter(name: str, *labels: str) -> Counter:
        return Counter(name, name, list(labels), registry=registry)

    return Desk(TicketStore(store, relay), IntakeSettings(status_token_secret="s" * 32),
                DeskMetrics(counter("created", "channel"), counter("refused"),
                            counter("messages", "channel", "author"),
                            counter("ignored", "reason")))


def request() -> TicketCreateRequest:
    return TicketCreateRequest.model_validate({
        "requester": {"name": "Anna", "email": "anna@example.com"}, "subject": "Scanner",
        "description": "Lo scanner non invia le scansioni.", "channel": "api",
        "attachments": [{"filename": "log.txt", "content_base64": "aGVsbG8="}],
    })


async def attachments(desk: Desk) -> list[dict[str, Any]]:
    return [d async for d in desk.tickets._attachments.find({}, {"content": 0})]


async def test_the_loser_of_a_creation_race_takes_its_files_back(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = request()
    uploads: list[AttachmentUpload] = body.attachments
    winner, created = await desk.open(body, origin_key="idem:api:k1",
                                      files=decode_uploads(uploads, max_bytes=1024, prefix="a"))
    assert created

    # The loser read "no ticket with this origin yet" just before the winner wrote it.
    real_by_origin = desk.tickets.by_origin
    stale = [True]

    async def stale_then_real(origin_key: str) -> Any:
        if stale:
            stale.pop()
            return None
        return await real_by_origin(origin_key)

    monkeypatch.setattr(desk.tickets, "by_origin", stale_then_real)
    same, created = await desk.open(body, origin_key="idem:api:k1",
                                    files=decode_uploads(uploads, max_bytes=1024, prefix="b"))
    assert not created
    assert same.id == winner.id
    files = await attachments(desk)
    assert [(f["ticket_id"], f["filename"]) for f in files] == [(winner.id, "log.txt")]


async def test_a_redelivered_message_keeps_no_second_copy_of_its_files(desk: Desk) -> None:
    ticket, _ = await desk.open(request())

    def message() -> Message:
        return Message(id=uuid.uuid4().hex, author=Author.REQUESTER, visibility=Visibility.PUBLIC,
                       channel=Channel.EMAIL, body="altro log", at=ticket.created_at,
                       external_id="m-1@example.com")

    uploads = request().attachments
    ticket, added = await desk.post(ticket, message(),
                                    decode_uploads(uploads, max_bytes=1024, prefix="c"))
    assert added
    _, added = await desk.post(ticket, message(),
                               decode_uploads(uploads, max_bytes=1024, prefix="d"))
    assert not added
    assert len(await attachments(desk)) == 1


async def test_saves_that_send_only_changes_leave_the_whole_ticket_stored(desk: Desk) -> None:
    ticket, _ = await desk.open(request())
    reply = Message(id=uuid.uuid4().hex, author=Author.AGENT, visibility=Visibility.PUBLIC,
                    channel=Channel.EMAIL, body="Provi a riavviare lo scanner",
                    at=ticket.created_at)
    ticket, _ = await desk.post(ticket, reply)
    ticket = await desk.change_status(ticket, TicketStatus.RESOLVED, reason=None,
                                      actor="lucia", resolution="riavviato")
    stored = await desk.tickets.by_id(ticket.id)
    assert stored is not None
    # MongoDB keeps milliseconds: compare everything else exactly.
    assert (stored.status, stored.version, stored.resolution, stored.requester, stored.subject) \
        == (TicketStatus.RESOLVED, ticket.version, "riavviato", ticket.requester, ticket.subject)
    assert [(m.id, m.author, m.body) for m in stored.messages] \
        == [(m.id, m.author, m.body) for m in ticket.messages]
    assert [(h.kind, h.detail) for h in stored.history] \
        == [(h.kind, h.detail) for h in ticket.history]
    assert stored.resolved_at is not None


def notifier_for(desk: Desk, mongo: MongoStore, settings: IntakeSettings,
                 http: httpx.AsyncClient, notices: NoticeStore | None = None) -> Notifier:
    registry = CollectorRegistry()
    metrics = NoticeMetrics(*(Counter(n, n, ["kind", "channel"] if n != "skipped" else ["kind"],
                                      registry=registry) for n in ("sent", "failed", "skipped")))
    return Notifier(desk.tickets, notices or NoticeStore(mongo), Outbound(settings, http),
                    settings, metrics, "s" * 32)


@pytest.fixture
async def consumers(desk: Desk, mongo: MongoStore) -> AsyncIterator[IntakeConsumers]:
    async with httpx.AsyncClient() as http:
        yield IntakeConsumers(desk, notifier_for(desk, mongo, desk.settings, http))


def assignment_of(ticket_id: str) -> EventEnvelope:
    return new_event(TicketAssigned(ticket_id=ticket_id, level=SupportLevel.L1,
                                    group_id="service-desk", group_name="L1 Service Desk",
                                    sequence=1),
                     producer="routing", correlation_id=ticket_id)


async def test_the_first_change_of_a_new_ticket_starts_from_the_copy_just_written(
    desk: Desk, consumers: IntakeConsumers, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket, _ = await desk.open(request())

    async def no_read(ticket_id: str) -> Any:
        raise AssertionError("read the ticket back although this process just wrote it")

    monkeypatch.setattr(desk.tickets, "by_id", no_read)
    assert await consumers.on_ticket_assigned(assignment_of(ticket.id)) is Outcome.OK
    monkeypatch.undo()
    stored = await desk.tickets.by_id(ticket.id)
    assert stored is not None
    assert (stored.status, stored.group_id, stored.version) \
        == (TicketStatus.ASSIGNED, "service-desk", 2)


async def test_a_copy_another_replica_moved_on_from_is_read_again_and_nothing_is_lost(
    desk: Desk, consumers: IntakeConsumers
) -> None:
    ticket, _ = await desk.open(request())
    # Another replica changes the ticket: this process's copy is now one version behind.
    await desk.tickets._tickets.update_one(
        {"_id": ticket.id}, {"$set": {"subject": "Scanner (edited elsewhere)", "version": 2}})

    assert await consumers.on_ticket_assigned(assignment_of(ticket.id)) is Outcome.OK
    stored = await desk.tickets.by_id(ticket.id)
    assert stored is not None
    assert (stored.status, stored.subject, stored.version) \
        == (TicketStatus.ASSIGNED, "Scanner (edited elsewhere)", 3)
    # Read back, so no longer kept: only the copies this process wrote since opening are.
    assert desk.tickets.recent.get(ticket.id) is None


async def test_with_notices_off_their_event_types_are_unsubscribed_not_left_bound(
    desk: Desk, consumers: IntakeConsumers, mongo: MongoStore,
) -> None:
    """Unbound, so intake's queue stops collecting events nobody here will read."""
    assert not desk.settings.smtp_relay_url
    assert not desk.settings.chat_callback_url
    # Routing's assignments and SLA's time limits land on the ticket, notices or not.
    assert set(consumers.subscriptions()) == {"ticket.assigned", "sla.time_limit_set"}
    assert "ticket.status_changed" in consumers.unsubscribed()
    assert "ticket.created" in consumers.unsubscribed()

    async with httpx.AsyncClient() as http:
        settings = desk.settings.model_copy(update={"smtp_relay_url": "smtp://x"})
        notifying = IntakeConsumers(desk, notifier_for(desk, mongo, settings, http))
    assert notifying.unsubscribed() == []
    assert {"ticket.assigned", "ticket.status_changed"} <= set(notifying.subscriptions())
    # With SLA to wait for, the ticket is saved holding its acknowledgement: intake's own
    # creation event has nothing left to do here, and is not collected.
    async with httpx.AsyncClient() as http:
        waiting = settings.model_copy(update={"sla_url": "http://sla"})
        for_sla = IntakeConsumers(desk, notifier_for(desk, mongo, waiting, http))
    assert for_sla.unsubscribed() == ["ticket.created"]
    assert "ticket.created" not in for_sla.subscriptions()
    assert "ticket.status_changed" in for_sla.subscriptions()


class UnwritableMail(Outbound):
    """The relay is never reached: the notice itself cannot be written as mail."""

    async def send_mail(self, *args: Any, **kwargs: Any) -> str:
        raise NoticeNotBuildable("cannot be written as mail: a header no relay would take")


async def test_a_notice_that_cannot_be_written_is_recorded_as_failed_not_retried(
    desk: Desk, mongo: MongoStore
) -> None:
    """Issue 23: such a notice was retried six times and parked in the dead-letter queue,
    and every later notice of the ticket with it. Now it is failed, with the reason, once."""
    ticket, _ = await desk.open(request())
    settings = desk.settings.model_copy(update={"smtp_relay_url": "smtp://127.0.0.1:9"})
    registry = CollectorRegistry()
    metrics = NoticeMetrics(*(Counter(n, n, ["kind", "channel"] if n != "skipped" else ["kind"],
                                      registry=registry) for n in ("sent", "failed", "skipped")))
    notices = NoticeStore(mongo)
    async with httpx.AsyncClient() as http:
        notifier = Notifier(desk.tickets, notices, UnwritableMail(settings, http), settings,
                            metrics, "s" * 32)
        await notifier.acknowledge(ticket)  # no exception: nothing for the bus to retry
        await notifier.acknowledge(ticket)  # a redelivery: not tried again
    record = await mongo.collection("notifications").find_one(
        {"ticket_id": ticket.id, "kind": "acknowledged"})
    assert record is not None
    assert record["status"] == "unsendable"  # failed for good
    assert "cannot be written as mail" in record["error"]
    assert record["attempts"] == 1
    assert registry.get_sample_value("failed_total", {"kind": "acknowledged",
                                                      "channel": "email"}) == 1


async def test_a_claim_is_taken_again_only_under_the_name_it_was_made(mongo: MongoStore) -> None:
    """A claim whose answer the database lost may be written: the handler's retry claims
    again under the same name and gets it; any other handler still finds it taken (and a
    notice sent is nobody's to claim)."""
    notices = NoticeStore(mongo)
    now = datetime.now(UTC)
    assert await notices.claim("n-1", "t-1", "acknowledged", now, "first")
    assert not await notices.claim("n-1", "t-1", "acknowledged", now, "second")
    assert await notices.claim("n-1", "t-1", "acknowledged", now, "first")
    await notices.sent(sent_notice("n-1"))
    assert not await notices.claim("n-1", "t-1", "acknowledged", now, "first")
    # Several lost names (two handlers of one notice): retaken under any, renamed.
    assert await notices.claim("n-2", "t-1", "acknowledged", now, "lost")
    assert not await notices.claim("n-2", "t-1", "acknowledged", now, "retry", ("other",))
    assert await notices.claim("n-2", "t-1", "acknowledged", now, "retry", ("other", "lost"))
    assert not await notices.claim("n-2", "t-1", "acknowledged", now, "lost")
    assert await notices.claim("n-2", "t-1", "acknowledged", now, "retry")


class ClaimsLostInACut(NoticeStore):
    """A database cut as two handlers claim one notice: the first claim is written and its
    answer lost; the second is not written, and fails after the first."""

    def __init__(self, mongo: MongoStore) -> None:
        super().__init__(mongo)
        self.cut = True
        self._one_written = False
        self._second_in = asyncio.Event()
        self._first_failed = asyncio.Event()

    async def claim(self, notice_id: str, ticket_id: str, kind: str, now: datetime,
                    owner: str, earlier: tuple[str, ...] = ()) -> bool:
        if not self.cut:
            return await super().claim(notice_id, ticket_id, kind, now, owner, earlier)
        if not self._one_written:
            self._one_written = True
            assert await super().claim(notice_id, ticket_id, kind, now, owner, earlier)
            await self._second_in.wait()
            self._first_failed.set()
            raise AutoReconnect("written, and the answer lost")
        self._second_in.set()
        await self._first_failed.wait()
        raise AutoReconnect("not written")


async def test_after_two_handlers_lose_their_claims_in_a_cut_the_retry_sends_the_notice_once(
    desk: Desk, mongo: MongoStore
) -> None:
    """Session 20's finding: each handler kept its own claim's name as the one to retake,
    the second overwrote the first's, and the claim actually written was then nobody's
    until the stale-claim sweep (a minute without the acknowledgement). Every lost name is
    kept now: the event's retry retakes the written claim and sends."""
    ticket, _ = await desk.open(request())
    store = ClaimsLostInACut(mongo)
    with MailSink() as relay:
        settings = desk.settings.model_copy(update={"smtp_relay_url": relay.url})
        async with httpx.AsyncClient() as http:
            notifier = notifier_for(desk, mongo, settings, http, notices=store)
            outcomes = await asyncio.gather(notifier.acknowledge(ticket),
                                            notifier.acknowledge(ticket),
                                            return_exceptions=True)
            assert all(isinstance(o, AutoReconnect) for o in outcomes), outcomes
            store.cut = False
            await notifier.acknowledge(ticket)  # one event's retry
            await notifier.acknowledge(ticket)  # the other's: nothing more
            assert await store.status(notice_id(ticket.id, NoticeKind.ACKNOWLEDGED)) == (
                NoticeStatus.SENT)
    assert [m["Subject"] for m in relay.messages] == [
        f"[{ticket.number}] We received your request: Scanner"]


def sent_notice(nid: str) -> SentNotice:
    return SentNotice(nid, "t-1", f"<{nid}@sportello.localhost>", False,
                      {"channel": "email", "to": "a@example.com"})


async def test_a_record_and_the_next_claim_go_in_one_write_the_claim_only_if_free(
    mongo: MongoStore,
) -> None:
    """The acknowledgement's record claims the assignment notice in the same round trip:
    claimed when free; refused (the record still written) when another handler holds it
    or it went already."""
    notices = NoticeStore(mongo)
    now = datetime.now(UTC)
    for n in range(3):
        assert await notices.claim(f"ack-{n}", "t-1", "acknowledged", now, "me")
    assert await notices.sent_then_claim(
        sent_notice("ack-0"), NoticeClaim("next-0", "t-1", "assigned", now, "me"))
    assert await notices.claim("next-1", "t-1", "assigned", now, "another")
    assert not await notices.sent_then_claim(
        sent_notice("ack-1"), NoticeClaim("next-1", "t-1", "assigned", now, "me"))
    assert await notices.claim("next-2", "t-1", "assigned", now, "another")
    await notices.sent(sent_notice("next-2"))
    assert not await notices.sent_then_claim(
        sent_notice("ack-2"), NoticeClaim("next-2", "t-1", "assigned", now, "me"))
    for n in range(3):
        assert await notices.status(f"ack-{n}") == NoticeStatus.SENT
    assert await notices.status("next-0") == NoticeStatus.SENDING
    assert not await notices.claim("next-0", "t-1", "assigned", now, "another")
    assert await notices.claim("next-0", "t-1", "assigned", now, "me")  # its owner's


async def test_claims_a_killed_process_left_are_found_once_they_are_stale(
    mongo: MongoStore,
) -> None:
    """Only acknowledgements and first assignment notices: no later event brings them
    again (the others come with an event of their own, redelivered)."""
    notices = NoticeStore(mongo, stale_sending_s=60)
    then = datetime.now(UTC)
    for nid, kind in (("ack", "acknowledged"), ("first", "assigned"), ("reply", "agent_reply")):
        assert await notices.claim(nid, "t-1", kind, then, "killed")
    assert await notices.abandoned(then + timedelta(seconds=30)) == []
    found = await notices.abandoned(then + timedelta(seconds=61))
    assert sorted(found) == [("t-1", "acknowledged"), ("t-1", "assigned")]
    await notices.sent(sent_notice("ack"))
    assert await notices.abandoned(then + timedelta(seconds=61)) == [("t-1", "assigned")]


async def test_an_acknowledgement_a_killed_process_claimed_is_sent_by_the_sweep_once(
    desk: Desk, mongo: MongoStore
) -> None:
    """Protection: ``resume_abandoned``. No event brings an acknowledgement again once
    its handler was acked; without the sweep the requester would never hear from us."""
    ticket, _ = await desk.open(request())
    nid = notice_id(ticket.id, NoticeKind.ACKNOWLEDGED)
    notices = NoticeStore(mongo, stale_sending_s=60)
    assert await notices.claim(nid, ticket.id, "acknowledged",
                               datetime.now(UTC) - timedelta(minutes=2), "killed")
    with MailSink() as relay:
        settings = desk.settings.model_copy(update={"smtp_relay_url": relay.url})
        async with httpx.AsyncClient() as http:
            notifier = notifier_for(desk, mongo, settings, http)
            assert await notifier.resume_abandoned() == 1
            assert await notifier.resume_abandoned() == 0
            await notifier.acknowledge(ticket)  # its event, late: nothing more is sent
    assert [m["To"] for m in relay.messages] == ["Anna <anna@example.com>"]
    assert relay.messages[0]["Message-ID"].startswith(f"<{nid}@")


async def test_a_claim_left_on_a_ticket_not_stored_here_is_skipped_not_swept_forever(
    desk: Desk, mongo: MongoStore
) -> None:
    """SLA's time limit is claimed before the ticket is read: about a ticket this intake
    does not have (its database restored from an older backup), the claim stays behind.
    The sweep marks it skipped once; left, it would be found first by every sweep, and a
    hundred of them would hide the real abandoned notices."""
    nid = notice_id("not-here", NoticeKind.ACKNOWLEDGED)
    notices = NoticeStore(mongo, stale_sending_s=60)
    assert await notices.claim(nid, "not-here", "acknowledged",
                               datetime.now(UTC) - timedelta(minutes=2), "killed")
    async with httpx.AsyncClient() as http:
        notifier = notifier_for(desk, mongo, desk.settings, http)
        assert await notifier.resume_abandoned() == 0
    assert await notices.abandoned(datetime.now(UTC)) == []
    assert await notices.status(nid) == NoticeStatus.SKIPPED


class WritesTo(monitoring.CommandListener):
    """Counts the write commands sent to one collection."""

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("insert", "update", "delete", "findAndModify") and \
                event.command.get(event.command_name) == self.collection:
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_the_acknowledgements_record_claims_the_assignment_notice_in_the_same_write(
    desk: Desk, mongo: MongoStore, mongo_url: str
) -> None:
    """The usual order: SLA's time limit comes once routing has assigned the ticket. The
    two notices go in that order, and their records take three writes (claim; record and
    claim the next; record), not four."""
    ticket, _ = await desk.open(request())
    cause = assignment_of(ticket.id)
    assigned = await desk.apply_assignment(parse_payload(cause, TicketAssigned), cause)
    assert assigned is not None

    writes = WritesTo("notifications")
    watched = MongoStore(mongo_url, mongo.db.name, app_name="watched")
    await watched.client.close()
    watched.client = AsyncMongoClient(mongo_url, event_listeners=[writes], tz_aware=True)
    watched.db = watched.client[mongo.db.name]
    with MailSink() as relay:
        settings = desk.settings.model_copy(update={"smtp_relay_url": relay.url})
        async with httpx.AsyncClient() as http:
            notifier = notifier_for(desk, watched, settings, http)
            await notifier.acknowledge(assigned)
            assert writes.count == 3
            await notifier.first_assignment(assigned)  # its own handler, after: nothing more
    await watched.close()
    subjects = [str(m["Subject"]) for m in relay.messages]
    assert len(subjects) == 2
    assert "We received your request" in subjects[0]
    assert "is being handled" in subjects[1]


async def test_sla_s_time_limit_is_kept_by_the_write_the_acknowledgement_is_written_from(
    desk: Desk, mongo: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual order: assigned, then SLA's time limit. The acknowledgement is claimed
    first and written from the ticket that the time limit's own write answers: no other
    read of the ticket, the limit in the mail, the assignment notice after it. A later
    announcement, the acknowledgement long gone, is kept all the same."""
    ticket, _ = await desk.open(request())
    cause = assignment_of(ticket.id)
    assert await desk.apply_assignment(parse_payload(cause, TicketAssigned), cause)
    due, now = datetime(2026, 12, 8, 15, 0, tzinfo=UTC), datetime.now(UTC)
    first = SlaTimeLimitSet(ticket_id=ticket.id, clock_id="c", priority=Priority.P3,
                            due_at=due, as_of=now)
    moved = first.model_copy(update={"due_at": due + timedelta(hours=2),
                                     "as_of": now + timedelta(minutes=1)})
    reads: list[str] = []
    read = desk.tickets.by_id

    async def counted(ticket_id: str) -> Any:
        reads.append(ticket_id)
        return await read(ticket_id)

    monkeypatch.setattr(desk.tickets, "by_id", counted)
    with MailSink() as relay:
        settings = desk.settings.model_copy(update={"smtp_relay_url": relay.url})
        async with httpx.AsyncClient() as http:
            notifier = notifier_for(desk, mongo, settings, http)
            await notifier.time_limit_known(ticket.id, lambda: desk.note_time_limit(first))
            assert reads == []
            await notifier.time_limit_known(ticket.id, lambda: desk.note_time_limit(moved))
    stored = await read(ticket.id)
    assert stored is not None
    assert stored.time_limit == due + timedelta(hours=2)
    assert [str(m["Subject"]).split("] ")[1][:12] for m in relay.messages] == [
        "We received ", "Your request"]
    promised = format_time_limit(due, "en", settings.display_timezone)
    body = relay.messages[0].get_body(("plain",))
    assert body is not None
    assert promised in str(body.get_content())


async def test_a_status_change_not_pinned_to_a_version_is_tried_again_on_the_changed_ticket(
    desk: Desk,
) -> None:
    """Resolved at the moment routing's assignment lands: without an expected version the
    caller asked for the move, not for that version, so the move is made on the ticket as
    it now is. With one (an agent's), the change meanwhile is theirs to see."""
    opened, _ = await desk.open(request())
    note = Message(id=uuid.uuid4().hex, author=Author.AGENT, visibility=Visibility.INTERNAL,
                   channel=None, body="visto", at=opened.created_at)
    meanwhile, _ = await desk.post(opened, note)  # the copy in hand is now one version old
    with pytest.raises(ConcurrencyConflict):
        await desk.change_status(opened, TicketStatus.RESOLVED, reason=None, actor="lucia",
                                 resolution="riavviato", pinned=True)
    resolved = await desk.change_status(opened, TicketStatus.RESOLVED, reason=None,
                                        actor="lucia", resolution="riavviato")
    assert resolved.status is TicketStatus.RESOLVED
    assert resolved.version == meanwhile.version + 1
    stored = await desk.tickets.by_id(opened.id)
    assert stored is not None
    assert (stored.status, len(stored.messages)) == (TicketStatus.RESOLVED, 2)
