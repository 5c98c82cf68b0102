"""The keeper of this replica's index: its one writer, fed by this replica's own queue.

Every knowledge write announces itself (``kb.article_changed``, ``kb.case_archived``);
each replica hears those on its own queue and re-reads the named documents from
MongoDB, so the order events arrive in does not matter: the index always takes the
document as it is now. Changes noted while a writer is busy go together in the next
commit. What a replica may have missed (before its queue was bound, while the broker
was away) is caught up from MongoDB by ``updated_at``, with a margin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sportello_contracts import EventEnvelope, parse_payload
from sportello_contracts.events import KbArticleChanged, KbCaseArchived
from sportello_knowledge.index import SearchIndex
from sportello_knowledge.service.metrics import KnowledgeMetrics
from sportello_knowledge.store import KnowledgeStore

log = logging.getLogger(__name__)

INDEX_KEYS = (KbArticleChanged.event_type, KbCaseArchived.event_type)
"""What each replica's own queue is bound to."""
SYNCED = "SYNCED"


def key_of(envelope: EventEnvelope) -> str | None:
    if envelope.type == KbArticleChanged.event_type:
        return f"article:{parse_payload(envelope, KbArticleChanged).article_id}"
    if envelope.type == KbCaseArchived.event_type:
        return f"case:{parse_payload(envelope, KbCaseArchived).ticket_id}"
    return None


class IndexKeeper:
    def __init__(self, index: SearchIndex, store: KnowledgeStore, metrics: KnowledgeMetrics, *,
                 catch_up_margin_s: float = 60.0) -> None:
        self.index = index
        self._store = store
        self._metrics = metrics
        self._margin = timedelta(seconds=catch_up_margin_s)
        self._pending: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._flushes = 0
        self._flushed = asyncio.Condition()
        self._changed_while_rebuilding: set[str] | None = None
        self._started_at = time.time()
        self.hearing: Callable[[], bool] = lambda: True
        """Whether this replica's queue is bound now: only then is a commit proof that
        nothing was missed up to it (``SYNCED``, where a restart catches up from)."""
        self.rebuild_progress: dict[str, float] | None = None
        self._tasks: set[asyncio.Task[int]] = set()
        """While a rebuild runs: documents done, of how many, since when."""

    # -- start, catch up, rebuild ---------------------------------------------------------

    async def start(self) -> bool:
        """Open the index; answers False when it must be rebuilt (run ``rebuild`` then)."""
        self._started_at = time.time()
        if not await self.index.open():
            return False
        synced = self._synced_at()
        if synced is not None:
            await self.catch_up(synced)
        self.refresh_gauges()
        return True

    async def catch_up(self, since: float) -> int:
        """Re-take every document changed since ``since`` (less the margin)."""
        after = datetime.fromtimestamp(since, UTC) - self._margin
        count = 0
        async for batch in self._store.all_entries(since=after):
            await self.index.put(batch)
            count += len(batch)
        if count:
            log.info("index caught up with %d documents changed since %s", count, after)
        self._mark_synced()
        return count

    async def on_bound(self, lost_at: float | None) -> None:
        """This replica's queue is (again) bound: take what was missed while it was not."""
        await self.catch_up(lost_at if lost_at is not None else self._started_at)

    def begin_rebuild(self) -> bool:
        """Start a rebuild in the background (False when one is running already)."""
        if self.rebuild_progress is not None:
            return False
        self.rebuild_progress = {"done": 0, "total": 0, "started": time.time()}
        task = asyncio.create_task(self.rebuild())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """A new generation from MongoDB, swapped in when complete. Changes heard
        meanwhile go to the old one (which answers until the swap) and again to the new."""
        total = await self._store.count_searchable()
        started = time.monotonic()
        self._changed_while_rebuilding = set()
        self.rebuild_progress = {"done": 0, "total": total, "started": time.time()}

        def step(done: int) -> None:
            self.rebuild_progress = {"done": done, "total": total, "started": time.time()
                                     - (time.monotonic() - started)}
            if progress:
                progress(done, total)

        try:
            count = await self.index.rebuild(self._store.all_entries, step)
            changed = self._changed_while_rebuilding
        finally:
            self._changed_while_rebuilding = None
            self.rebuild_progress = None
        self.note(*changed)
        self._mark_synced()
        self.refresh_gauges()
        log.info("index rebuilt: %d documents in %.1f s", count, time.monotonic() - started)
        return count

    # -- the stream of changes ----------------------------------------------------------

    def note(self, *keys: str) -> None:
        now = time.time()
        for key in keys:
            self._pending.setdefault(key, now)
            if self._changed_while_rebuilding is not None:
                self._changed_while_rebuilding.add(key)
        if keys:
            self._wake.set()

    async def on_event(self, envelope: EventEnvelope) -> None:
        key = key_of(envelope)
        if key is not None:
            self.note(key)

    async def written(self, key: str, timeout_s: float) -> bool:
        """Wait until a commit that holds ``key`` is searchable here (a writer's API answer
        can then promise the change is found on this replica)."""
        async with self._flushed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._flushed.wait_for(lambda: key not in self._pending
                                           and key not in self._in_flight), timeout_s)
        return key not in self._pending and key not in self._in_flight

    _in_flight: frozenset[str] = frozenset()

    async def run(self) -> None:
        """The writer loop: every change noted since the last commit, in one commit."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            batch, self._pending = self._pending, {}
            self._in_flight = frozenset(batch)
            try:
                entries, gone = await self._store.entries(list(batch))
                await self.index.put(entries, gone)
                done = time.time()
                for noted in batch.values():
                    self._metrics.index_lag.observe(max(0.0, done - noted))
                if self.hearing():
                    self._mark_synced()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("index update failed; trying again")
                for key, noted in batch.items():
                    self._pending.setdefault(key, noted)
                await asyncio.sleep(1.0)
                self._wake.set()
            finally:
                self._in_flight = frozenset()
                async with self._flushed:
                    self._flushed.notify_all()
            self.refresh_gauges()

    # -- state --------------------------------------------------------------------------

    def refresh_gauges(self) -> None:
        self._metrics.index_documents.set(self.index.size)
        last = self.index.last_write or self.index.built_at
        if last is not None:
            self._metrics.index_age.set(max(0.0, time.time() - last))

    def status(self) -> dict[str, object]:
        last = self.index.last_write or self.index.built_at
        return {"documents": self.index.size, "pending": len(self._pending),
                "built_at": _iso(self.index.built_at), "last_change_at": _iso(last),
                "rebuilding": self.rebuild_progress}

    def _synced_at(self) -> float | None:
        path = self.index.directory / SYNCED
        try:
            return float(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _mark_synced(self) -> None:
        path = self.index.directory / SYNCED
        with contextlib.suppress(OSError):
            path.write_text(f"{time.time()}\n")


def _iso(at: float | None) -> str | None:
    return datetime.fromtimestamp(at, UTC).isoformat() if at is not None else None
