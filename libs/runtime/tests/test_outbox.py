"""The outbox relay against the run's MongoDB: a late clear from a stale read must never
hide a newer entry (found by bench/intake_bench.py: 12 of 3,000 status changes stuck)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from sportello_contracts import EventEnvelope, new_event, utc_now
from sportello_contracts.events import TicketReopened, TicketResolved
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.outbox import (
    OUTBOX_FIELD,
    PENDING_FIELD,
    OutboxRelay,
    outbox_entry,
    outbox_fields,
    with_outbox,
)
from support.commands import CommandCounter

pytestmark = pytest.mark.e2e

Doc = dict[str, Any]


class GatedBus:
    """Stands in for the broker: records what is published; a gate holds the first publish
    of an event, and a flaky id times out once (what a loaded broker does)."""

    is_connected = True

    def __init__(self) -> None:
        self.published: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.time_out_once: set[str] = set()
        self.holding = asyncio.Event()
        self.asked: list[str] = []
        """Every publish in the order it was asked for, confirmed or not."""
        self.asking = asyncio.Condition()

    async def publish(self, envelope: EventEnvelope) -> None:
        event_id = str(envelope.event_id)
        self.asked.append(event_id)
        async with self.asking:
            self.asking.notify_all()
        if event_id in self.time_out_once:
            self.time_out_once.discard(event_id)
            raise TimeoutError("publish confirm timed out")
        gate = self.gates.pop(event_id, None)
        if gate is not None:
            self.holding.set()
            await gate.wait()
        self.published.append(event_id)


@pytest.fixture
def updates() -> CommandCounter:
    """The update commands sent to ``tickets``: round trips are what clears batch to save."""
    return CommandCounter("update")


@pytest.fixture
async def tickets(mongo_url: str, updates: CommandCounter) -> AsyncIterator[AsyncCollection[Doc]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_url, tz_aware=True,
                                                     event_listeners=[updates])
    db = client[f"outbox_{uuid.uuid4().hex[:10]}"]
    yield db.tickets
    await client.drop_database(db.name)
    await client.close()


def relay_for(bus: GatedBus, *, stale_after_s: float, clear_linger_s: float = 0.0) -> OutboxRelay:
    return OutboxRelay(bus, ServiceMetrics(f"t{uuid.uuid4().hex[:6]}"),  # type: ignore[arg-type]
                       sweep_interval_s=60, stale_after_s=stale_after_s,
                       clear_linger_s=clear_linger_s)


def event(kind: type[TicketResolved] | type[TicketReopened]) -> EventEnvelope:
    payload = (TicketResolved(ticket_id="t-1", number="HD-2026-000001", resolution="ok")
               if kind is TicketResolved else TicketReopened(ticket_id="t-1",
                                                             number="HD-2026-000001"))
    return new_event(payload, producer="test", correlation_id="t-1")


async def test_a_late_clear_from_a_stale_read_keeps_the_newer_entry_findable(
    tickets: AsyncCollection[Doc],
) -> None:
    bus = GatedBus()
    relay = relay_for(bus, stale_after_s=0)
    relay.watch(tickets)
    first, second = event(TicketResolved), event(TicketReopened)
    first_entry = outbox_entry(first)
    fields = outbox_fields([first_entry])
    fields[PENDING_FIELD] = utc_now() - timedelta(seconds=10)  # stale: the sweeper takes it
    await tickets.insert_one({"_id": "t-1", "version": 1, **fields})

    # The sweeper reads [first] and is held while publishing it...
    bus.gates[str(first.event_id)] = gate = asyncio.Event()
    sweeping = asyncio.create_task(relay.sweep())
    await asyncio.wait_for(bus.holding.wait(), 5)
    # ...meanwhile the fast path publishes and clears it, the ticket changes again, and
    # the new entry's first publish times out (kept for later).
    relay.publish_soon(tickets, "t-1", [first_entry])
    await asyncio.wait_for(_settled(relay), 5)
    second_entry = outbox_entry(second)
    bus.time_out_once.add(str(second.event_id))
    await tickets.update_one({"_id": "t-1"},
                             with_outbox({"$set": {"version": 2}}, [second_entry]))
    relay.publish_soon(tickets, "t-1", [second_entry])
    await asyncio.wait_for(_settled(relay), 5)
    # Now the held sweeper finishes and clears what it read: [first], one entry, like [second].
    gate.set()
    await sweeping

    doc = await tickets.find_one({"_id": "t-1"})
    assert doc is not None
    assert [e["event_id"] for e in doc[OUTBOX_FIELD]] == [str(second.event_id)]
    assert doc[PENDING_FIELD] is not None  # still findable by the next sweep
    assert await relay.sweep() == 1
    assert bus.published[-1] == str(second.event_id)
    doc = await tickets.find_one({"_id": "t-1"})
    assert doc is not None
    assert doc[OUTBOX_FIELD] == []
    assert doc[PENDING_FIELD] is None


async def _settled(relay: OutboxRelay) -> None:
    while relay._pending:  # the fast path's tasks
        await asyncio.gather(*relay._pending)


async def test_many_documents_published_at_once_are_cleared_in_shared_updates(
    tickets: AsyncCollection[Doc], updates: CommandCounter,
) -> None:
    """Clears that wait for one on its way go together; each document ends up right: empty
    and unmarked, or (when a newer entry arrived first) holding only that entry, marked."""
    bus = GatedBus()
    relay = relay_for(bus, stale_after_s=60)
    relay.watch(tickets)
    entries = {f"t-{n}": outbox_entry(event(TicketResolved)) for n in range(40)}
    await tickets.insert_many([{"_id": doc_id, **outbox_fields([entry])}
                               for doc_id, entry in entries.items()])
    newer = outbox_entry(event(TicketReopened))  # t-0 changes again before its clear
    await tickets.update_one({"_id": "t-0"}, with_outbox({"$set": {"version": 2}}, [newer]))
    bus.time_out_once.add(newer["event_id"])  # and the newer one is not sent yet
    updates.count = 0
    for doc_id, entry in entries.items():
        relay.publish_soon(tickets, doc_id, [entry])
    await asyncio.wait_for(_settled(relay), 10)

    assert updates.count < len(entries)
    assert sorted(bus.published) == sorted(e["event_id"] for e in entries.values())
    left = {d["_id"]: d async for d in tickets.find({})}
    assert [e["event_id"] for e in left.pop("t-0")[OUTBOX_FIELD]] == [newer["event_id"]]
    assert all(d[OUTBOX_FIELD] == [] and d[PENDING_FIELD] is None for d in left.values())
    assert await tickets.count_documents({PENDING_FIELD: {"$ne": None}}) == 1


async def test_the_sweeper_leaves_alone_what_this_process_is_still_publishing(
    tickets: AsyncCollection[Doc],
) -> None:
    """Under load a fresh publish can take longer than ``stale_after``: sweeping it too sent
    every such event twice, which made the load worse (seen at 100 tickets/s)."""
    bus = GatedBus()
    relay = relay_for(bus, stale_after_s=0)
    relay.watch(tickets)
    slow = event(TicketResolved)
    entry = outbox_entry(slow)
    await tickets.insert_one({"_id": "t-1", **outbox_fields([entry])})
    bus.gates[str(slow.event_id)] = gate = asyncio.Event()
    relay.publish_soon(tickets, "t-1", [entry])
    await asyncio.wait_for(bus.holding.wait(), 5)

    assert await relay.sweep() == 0  # stale by the clock, but on its way
    gate.set()
    await asyncio.wait_for(_settled(relay), 5)
    assert bus.published == [str(slow.event_id)]
    assert await relay.sweep() == 0
    doc = await tickets.find_one({"_id": "t-1"})
    assert doc is not None
    assert doc[OUTBOX_FIELD] == []
    assert doc[PENDING_FIELD] is None


async def test_lingering_clears_of_one_ticket_s_successive_events_empty_it_in_one_update(
    tickets: AsyncCollection[Doc], updates: CommandCounter,
) -> None:
    """A ticket's next event (its assignment, say) often comes before the clear of its first:
    the two clears meet in one batch, and one update empties the outbox and its mark."""
    bus = GatedBus()
    relay = relay_for(bus, stale_after_s=60, clear_linger_s=0.5)
    first, second = outbox_entry(event(TicketResolved)), outbox_entry(event(TicketReopened))
    await tickets.insert_one({"_id": "t-1", "version": 1, **outbox_fields([first])})
    # The broker holds the first publish while the ticket changes again, so that no store
    # round trip (however slow the machine) stands between the two clears.
    bus.gates[first["event_id"]] = first_confirm = asyncio.Event()
    relay.publish_soon(tickets, "t-1", [first])
    await asyncio.wait_for(bus.holding.wait(), 5)
    await tickets.update_one({"_id": "t-1"}, with_outbox({"$set": {"version": 2}}, [second]))
    updates.count = 0
    relay.publish_soon(tickets, "t-1", [second])
    first_confirm.set()
    await asyncio.wait_for(_settled(relay), 5)

    assert sorted(bus.published) == sorted([first["event_id"], second["event_id"]])
    assert updates.count == 1
    doc = await tickets.find_one({"_id": "t-1"})
    assert doc is not None
    assert (doc[OUTBOX_FIELD], doc[PENDING_FIELD]) == ([], None)


async def test_a_change_s_events_go_out_together_and_a_failed_one_stays_for_the_sweep(
    tickets: AsyncCollection[Doc],
) -> None:
    """A routing decision's three events: the second and third are sent while the broker
    still holds the first's confirm (one wait, not three), in the order they were written;
    one that times out stays in the outbox, still marked, and the sweep sends it."""
    bus = GatedBus()
    relay = relay_for(bus, stale_after_s=0)
    relay.watch(tickets)
    entries = [outbox_entry(event(TicketResolved)), outbox_entry(event(TicketReopened)),
               outbox_entry(event(TicketResolved))]
    ids = [entry["event_id"] for entry in entries]
    await tickets.insert_one({"_id": "t-1", "version": 1, **outbox_fields(entries)})
    bus.gates[ids[0]] = first_confirm = asyncio.Event()
    bus.time_out_once.add(ids[1])
    relay.publish_soon(tickets, "t-1", entries)
    await asyncio.wait_for(bus.holding.wait(), 5)
    async with bus.asking:
        await asyncio.wait_for(bus.asking.wait_for(lambda: len(bus.asked) == 3), 5)
    assert bus.asked == ids  # asked for before the first was confirmed, in order
    assert bus.published == [ids[2]]
    first_confirm.set()
    await asyncio.wait_for(_settled(relay), 5)

    doc = await tickets.find_one({"_id": "t-1"})
    assert doc is not None
    assert [e["event_id"] for e in doc[OUTBOX_FIELD]] == [ids[1]]
    assert doc[PENDING_FIELD] is not None
    assert await relay.sweep() == 1
    assert sorted(bus.published) == sorted(ids)
    doc = await tickets.find_one({"_id": "t-1"})
    assert doc is not None
    assert (doc[OUTBOX_FIELD], doc[PENDING_FIELD]) == ([], None)


async def test_a_sweep_with_lingering_clears_publishes_everything_and_clears_in_bulk(
    tickets: AsyncCollection[Doc], updates: CommandCounter,
) -> None:
    """The sweeper does not wait out each document's linger: its clears go together."""
    bus = GatedBus()
    relay = relay_for(bus, stale_after_s=0, clear_linger_s=0.3)
    relay.watch(tickets)
    left_behind = {f"t-{n}": outbox_entry(event(TicketResolved)) for n in range(30)}
    await tickets.insert_many([{"_id": doc_id, **outbox_fields([entry])}
                               for doc_id, entry in left_behind.items()])
    updates.count = 0

    assert await asyncio.wait_for(relay.sweep(), 5) == 30
    assert sorted(bus.published) == sorted(e["event_id"] for e in left_behind.values())
    assert updates.count == 1
    assert await tickets.count_documents({PENDING_FIELD: {"$ne": None}}) == 0
    assert await tickets.count_documents({f"{OUTBOX_FIELD}.0": {"$exists": True}}) == 0


async def test_a_sweep_does_not_resend_what_the_fast_path_finished_after_the_sweep_read_it(
    tickets: AsyncCollection[Doc],
) -> None:
    """A sweep reads a batch, then publishes document after document. A document whose fresh
    publish finished meanwhile was read with an outbox that is gone: sending it again was
    most of the 'left-behind' events after a burst (531 of 3,000 in one run)."""
    bus = GatedBus()
    relay = relay_for(bus, stale_after_s=0)
    relay.watch(tickets)
    left_behind, fresh = event(TicketResolved), event(TicketReopened)
    left_entry, fresh_entry = outbox_entry(left_behind), outbox_entry(fresh)
    await tickets.insert_one({"_id": "t-1", **outbox_fields([left_entry])})
    await tickets.insert_one({"_id": "t-2", **outbox_fields([fresh_entry])})
    bus.gates[fresh_entry["event_id"]] = fresh_gate = asyncio.Event()
    relay.publish_soon(tickets, "t-2", [fresh_entry])  # on its way, held by the broker
    await asyncio.wait_for(bus.holding.wait(), 5)
    bus.holding.clear()

    bus.gates[left_entry["event_id"]] = sweep_gate = asyncio.Event()
    sweeping = asyncio.create_task(relay.sweep())  # reads both, then holds on t-1
    await asyncio.wait_for(bus.holding.wait(), 5)
    fresh_gate.set()  # the fast path publishes and clears t-2...
    await asyncio.wait_for(_settled(relay), 5)
    sweep_gate.set()  # ...before the sweep reaches its stale copy of t-2

    assert await asyncio.wait_for(sweeping, 5) == 1
    assert sorted(bus.published) == sorted([left_entry["event_id"], fresh_entry["event_id"]])
    assert await tickets.count_documents({PENDING_FIELD: {"$ne": None}}) == 0


class UnreadableCollection:
    """A watched collection whose pending documents cannot be read (its server is gone)."""

    full_name = "elsewhere.assignments"

    def find(self, *args: Any, **kwargs: Any) -> Any:
        raise PyMongoError("connection refused")


async def test_a_sweep_that_fails_halfway_still_clears_what_it_sent(
    tickets: AsyncCollection[Doc],
) -> None:
    bus = GatedBus()
    relay = relay_for(bus, stale_after_s=0, clear_linger_s=0.05)
    relay.watch(tickets)
    relay.watch(UnreadableCollection())  # type: ignore[arg-type]
    entry = outbox_entry(event(TicketResolved))
    await tickets.insert_one({"_id": "t-1", **outbox_fields([entry])})

    with pytest.raises(PyMongoError):
        await relay.sweep()
    assert bus.published == [entry["event_id"]]
    doc = await tickets.find_one({"_id": "t-1"})
    assert doc is not None
    assert (doc[OUTBOX_FIELD], doc[PENDING_FIELD]) == ([], None)  # not sent again next time


async def test_a_change_kept_for_later_is_logged_once_and_kept_whole(
    tickets: AsyncCollection[Doc], caplog: pytest.LogCaptureFixture,
) -> None:
    """With the broker gone, a change's events stay in its outbox for the sweep, and the
    relay says so in one line naming them, not one line for each."""
    bus = GatedBus()
    events = [event(TicketResolved), event(TicketReopened), event(TicketResolved)]
    bus.time_out_once.update(str(e.event_id) for e in events)
    relay = relay_for(bus, stale_after_s=60)
    relay.watch(tickets)
    entries = [outbox_entry(e) for e in events]
    await tickets.insert_one({"_id": "t-1", "version": 1, **outbox_fields(entries)})
    with caplog.at_level("INFO", logger="sportello_runtime.outbox"):
        relay.publish_soon(tickets, "t-1", entries)
        await asyncio.wait_for(_settled(relay), 5)

    kept = [r.getMessage() for r in caplog.records if "kept for later" in r.getMessage()]
    assert kept == ["outbox: ticket.resolved, ticket.reopened, ticket.resolved kept for later "
                    "(publish confirm timed out)"]
    doc = await tickets.find_one({"_id": "t-1"})
    assert doc is not None
    assert [e["event_id"] for e in doc[OUTBOX_FIELD]] == [str(e.event_id) for e in events]
    assert bus.published == []
