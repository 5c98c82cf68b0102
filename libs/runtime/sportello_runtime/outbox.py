"""The transactional outbox, kept inside the aggregate document.

A state change and the events it causes are written in one single-document
update (events ``$push``-ed into the document's ``outbox`` array, and the
top-level ``outbox_pending_at`` set), so the broker being down never loses an
event. The relay then publishes each entry with a broker confirm and
``$pull``-s them; the update that empties the outbox also clears
``outbox_pending_at``. Entries left behind (broker down, crash between write
and publish) are found by the sweeper through an index on
``outbox_pending_at``, never by scanning the collection. Publishing twice is
possible after a crash; consumers dedupe by ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from opentelemetry import context, propagate
from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from sportello_contracts import EventEnvelope, utc_now
from sportello_runtime.batching import Batcher
from sportello_runtime.bus import BusNotConnected, EventBus
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.store import Document

log = logging.getLogger(__name__)

OUTBOX_FIELD = "outbox"
PENDING_FIELD = "outbox_pending_at"
SWEEP_BATCH = 500
OUTBOX_INDEX = IndexModel([(PENDING_FIELD, ASCENDING)], sparse=True, name="outbox_pending_at")


def outbox_fields(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The outbox part of a new document."""
    return {OUTBOX_FIELD: list(entries), PENDING_FIELD: utc_now() if entries else None}


def with_outbox(update: dict[str, Any], entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Add pushing ``entries`` (and marking the document pending) to a MongoDB update."""
    if not entries:
        return update
    merged = dict(update)
    merged["$push"] = {**merged.get("$push", {}), OUTBOX_FIELD: {"$each": list(entries)}}
    merged["$set"] = {**merged.get("$set", {}), PENDING_FIELD: utc_now()}
    return merged


def outbox_entry(envelope: EventEnvelope) -> dict[str, Any]:
    """The stored form of an event, with the trace context of the change that caused it."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {
        "event_id": str(envelope.event_id),
        "type": envelope.type,
        "body": envelope.model_dump_json(),
        "trace": carrier,
        "queued_at": utc_now(),
    }


@dataclass(frozen=True)
class _Clear:
    doc_id: Any
    sent: list[str]
    """The event ids that went out, in order."""
    complete: bool
    """Everything the publisher had read went out: the outbox may now be empty."""

    def pull(self) -> dict[str, Any]:
        return {"$pull": {OUTBOX_FIELD: {"event_id": {"$in": self.sent}}}} if self.sent else {}

    def emptying(self) -> UpdateOne:
        """Pull and clear the mark, if the outbox holds nothing but what was sent. A late
        clear from a stale read must not drop the mark of a newer, unsent entry."""
        nothing_else = {OUTBOX_FIELD: {"$not": {"$elemMatch": {"event_id": {"$nin": self.sent}}}}}
        return UpdateOne({"_id": self.doc_id, **nothing_else},
                         {**self.pull(), "$set": {PENDING_FIELD: None}})


def _per_document(clears: list[_Clear]) -> list[_Clear]:
    """One clear per document: the clears of a ticket's successive events often meet in
    one batch, and one update then empties its outbox."""
    merged: dict[Any, _Clear] = {}
    for clear in clears:
        before = merged.get(clear.doc_id)
        merged[clear.doc_id] = clear if before is None else _Clear(
            clear.doc_id, before.sent + clear.sent, before.complete and clear.complete)
    return list(merged.values())


async def _clear_together(collection: AsyncCollection[Document], clears: list[_Clear]) -> None:
    """Where the outbox holds only what was sent, empty it and clear the mark in the same
    update; otherwise (more arrived, or some are still unsent) just pull what was sent. A
    pull after an emptying update of the same document changes nothing, so when some
    emptying updates miss, every pull is sent: no need to know which ones missed."""
    clears = _per_document(clears)
    complete = [c for c in clears if c.complete]
    pulls_needed = [c for c in clears if c.sent and not c.complete]
    if complete:
        emptied = await collection.bulk_write([c.emptying() for c in complete], ordered=False)
        if emptied.matched_count < len(complete):
            pulls_needed += [c for c in complete if c.sent]
    if pulls_needed:
        await collection.bulk_write(
            [UpdateOne({"_id": c.doc_id}, c.pull()) for c in pulls_needed], ordered=False
        )


class OutboxRelay:
    def __init__(
        self,
        bus: EventBus,
        metrics: ServiceMetrics,
        *,
        sweep_interval_s: float,
        stale_after_s: float,
        clear_linger_s: float = 0.0,
    ) -> None:
        self._bus = bus
        self._metrics = metrics
        self._collections: list[AsyncCollection[Document]] = []
        self._sweep_interval = sweep_interval_s
        self._stale_after = timedelta(seconds=stale_after_s)
        self._pending: set[asyncio.Task[None]] = set()
        self._publishing: dict[tuple[str, Any], int] = {}
        """Documents whose fresh entries this process is publishing, and how many times."""
        self._finished: dict[tuple[str, Any], float] = {}
        """When this process last finished publishing a document's fresh entries: a sweep
        that read the document before then holds a stale copy of its outbox."""
        self._sweeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._clears: Batcher[AsyncCollection[Document], _Clear, None] = Batcher(
            self._clear_batch, linger_s=clear_linger_s)

    def watch(self, collection: AsyncCollection[Document]) -> None:
        self._collections.append(collection)

    def publish_soon(
        self, collection: AsyncCollection[Document], doc_id: Any, entries: Sequence[dict[str, Any]]
    ) -> None:
        """Publish a document's fresh entries right away, without blocking the caller."""
        if not entries:
            return
        key = (collection.full_name, doc_id)
        self._publishing[key] = self._publishing.get(key, 0) + 1
        task = asyncio.create_task(self._publish_and_clear(collection, doc_id, entries))
        self._pending.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._pending.discard(task)
            self._finished[key] = time.monotonic()
            if self._publishing[key] == 1:
                del self._publishing[key]
            else:
                self._publishing[key] -= 1

        task.add_done_callback(done)

    def wake(self) -> None:
        """Sweep now (the broker just came back)."""
        self._wake.set()

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="outbox-sweeper")

    async def stop(self, grace_s: float) -> None:
        self._stopping = True
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=grace_s)
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    async def _publish_and_clear(self, collection: AsyncCollection[Document], doc_id: Any,
                                 entries: Sequence[dict[str, Any]]) -> None:
        sent = await self._publish_entries(entries)
        if sent:
            await self._clear(collection, doc_id, sent, read=entries)

    async def _publish_entries(self, entries: Sequence[dict[str, Any]]) -> list[str]:
        """Publish every entry at once and wait for the confirms together; the event ids
        that went out. A routing decision brings three events: waited for one by one, each
        cost a wait for the broker's commit (and its log write of its own); sent together
        they are taken in one. They leave in order (the channel writes publishes in the
        order they ask); one that fails is kept for the sweep, which may then deliver it
        after a later one, as any redelivery can (consumers order by sequence)."""
        outcomes = await asyncio.gather(*(self._publish_entry(entry) for entry in entries))
        kept = [(event_type, why) for event_type, why in outcomes if why is not None]
        if kept:  # one line for the change, not one for each of its events
            log.info("outbox: %s kept for later (%s)",
                     ", ".join(event_type for event_type, _ in kept), kept[0][1])
        return [entry["event_id"] for entry, (_, why) in zip(entries, outcomes, strict=True)
                if why is None]

    async def _publish_entry(self, entry: dict[str, Any]) -> tuple[str, str | None]:
        """The event's type, and why it was kept for later (``None``: it went out)."""
        envelope = EventEnvelope.from_json(entry["body"])
        token = context.attach(propagate.extract(entry.get("trace") or {}))
        try:
            await self._bus.publish(envelope)
        except (BusNotConnected, TimeoutError, OSError) as exc:
            return envelope.type, str(exc) or type(exc).__name__
        except Exception as exc:
            log.exception("outbox: could not publish %s", envelope.type)
            return envelope.type, type(exc).__name__
        finally:
            context.detach(token)
        return envelope.type, None

    async def _clear(self, collection: AsyncCollection[Document], doc_id: Any, sent: list[str],
                     *, read: Sequence[dict[str, Any]]) -> None:
        """Take the sent entries (of the ``read`` ones) out of the document. Clears wait
        ``clear_linger_s`` (and for any clear on its way to the store) and then go together
        in one bulk write: the clears of a busy service cost one round trip per batch, not
        one per event."""
        await self._clears.submit(collection, _Clear(doc_id, sent, len(sent) == len(read)))

    @staticmethod
    async def _clear_batch(collection: AsyncCollection[Document],
                           clears: list[_Clear]) -> list[None]:
        try:
            await _clear_together(collection, clears)
        except PyMongoError:
            log.warning("outbox: published %s but could not clear them; they will be "
                        "sent again", [c.sent for c in clears], exc_info=True)
        return [None] * len(clears)

    async def sweep(self) -> int:
        """Publish every entry older than ``stale_after`` that this process is not already
        publishing; returns how many went out."""
        published = 0
        pending = 0
        clears: list[Coroutine[Any, Any, None]] = []
        began = time.monotonic()
        cutoff = utc_now() - self._stale_after
        try:
            for collection in self._collections:
                cursor = collection.find(
                    {PENDING_FIELD: {"$lte": cutoff}}, {OUTBOX_FIELD: 1}
                ).limit(SWEEP_BATCH)
                async for doc in cursor:
                    entries = doc.get(OUTBOX_FIELD) or []
                    pending += len(entries)
                    key = (collection.full_name, doc["_id"])
                    if key in self._publishing:
                        continue  # this process is still on it (slow under load): not stale
                    if self._finished.get(key, 0.0) >= began:
                        # Published (and cleared) since this sweep read it: what was read is
                        # gone. Anything that failed to go out is found by the next sweep.
                        continue
                    if self._bus.is_connected or not entries:
                        sent = await self._publish_entries(entries)
                        published += len(sent)
                        if sent or not entries:  # an empty outbox still has its mark to clear
                            # Not awaited one by one: each clear lingers for company.
                            clears.append(self._clear(collection, doc["_id"], sent, read=entries))
        finally:  # what went out is cleared, even when reading the next page failed
            await asyncio.gather(*clears)
        # Only completions after a sweep's read matter to it, and the next one reads anew.
        self._finished = {k: t for k, t in self._finished.items() if t >= began}
        self._metrics.outbox_pending.set(pending - published)
        return published

    async def _sweep_forever(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._sweep_interval)
            self._wake.clear()
            try:
                sent = await self.sweep()
                if sent:
                    log.info("outbox sweep published %s left-behind events", sent)
            except PyMongoError:
                log.warning("outbox sweep could not read the store", exc_info=True)
            except Exception:
                log.exception("outbox sweep failed")
