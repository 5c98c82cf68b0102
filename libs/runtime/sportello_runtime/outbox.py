"""The transactional outbox, kept inside the aggregate document.

A state change and the events it causes are written in one single-document
update (events ``$push``-ed into the document's ``outbox`` array), so the
broker being down never loses an event. The relay then publishes each entry
with a broker confirm and ``$pull``-s it. Entries left behind (broker down,
crash between write and publish) are found by the sweeper. Publishing twice
is possible after a crash; consumers dedupe by ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from opentelemetry import context, propagate
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from sportello_contracts import EventEnvelope, utc_now
from sportello_runtime.bus import BusNotConnected, EventBus
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.store import Document

log = logging.getLogger(__name__)

OUTBOX_FIELD = "outbox"
SWEEP_BATCH = 500


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


class OutboxRelay:
    def __init__(
        self,
        bus: EventBus,
        metrics: ServiceMetrics,
        *,
        sweep_interval_s: float,
        stale_after_s: float,
    ) -> None:
        self._bus = bus
        self._metrics = metrics
        self._collections: list[AsyncCollection[Document]] = []
        self._sweep_interval = sweep_interval_s
        self._stale_after = timedelta(seconds=stale_after_s)
        self._pending: set[asyncio.Task[int]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    def watch(self, collection: AsyncCollection[Document]) -> None:
        self._collections.append(collection)

    def publish_soon(
        self, collection: AsyncCollection[Document], doc_id: Any, entries: Sequence[dict[str, Any]]
    ) -> None:
        """Publish a document's fresh entries right away, without blocking the caller."""
        if not entries:
            return
        task = asyncio.create_task(self._publish_entries(collection, doc_id, entries))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

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

    async def _publish_entries(
        self, collection: AsyncCollection[Document], doc_id: Any, entries: Iterable[dict[str, Any]]
    ) -> int:
        published = 0
        for entry in entries:
            envelope = EventEnvelope.from_json(entry["body"])
            token = context.attach(propagate.extract(entry.get("trace") or {}))
            try:
                await self._bus.publish(envelope)
            except (BusNotConnected, TimeoutError, OSError) as exc:
                log.info("outbox: %s kept for later (%s)", envelope.type, exc)
                return published
            except Exception:
                log.exception("outbox: could not publish %s", envelope.type)
                return published
            finally:
                context.detach(token)
            try:
                await collection.update_one(
                    {"_id": doc_id}, {"$pull": {OUTBOX_FIELD: {"event_id": entry["event_id"]}}}
                )
            except PyMongoError:
                log.warning("outbox: published %s but could not clear it; it will be sent again",
                            envelope.type, exc_info=True)
                return published
            published += 1
        return published

    async def sweep(self) -> int:
        """Publish every entry older than ``stale_after``; returns how many went out."""
        published = 0
        pending = 0
        cutoff = utc_now() - self._stale_after
        for collection in self._collections:
            cursor = collection.find(
                {f"{OUTBOX_FIELD}.queued_at": {"$lte": cutoff}}, {OUTBOX_FIELD: 1}
            ).limit(SWEEP_BATCH)
            async for doc in cursor:
                entries = doc.get(OUTBOX_FIELD) or []
                pending += len(entries)
                if self._bus.is_connected:
                    published += await self._publish_entries(collection, doc["_id"], entries)
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
