"""Store calls that arrive while one of their kind is on its way go together in the next.

Under load this turns one round trip per caller into one per batch; a lone caller still
goes at once, unless the batcher lingers: then the first caller waits ``linger_s`` for
others to join. Used for ticket-number counters (no linger: a request waits for its number)
and outbox clears (which nobody waits for).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[K, T, R]):
    """``run(key, items)`` answers a batch of items for one key, one result per item, in
    order. Its exception reaches every caller of that batch. The batches run in a task of
    their own, so a caller's cancellation never cancels the others' work."""

    def __init__(self, run: Callable[[K, list[T]], Awaitable[Sequence[R]]], *,
                 linger_s: float = 0.0) -> None:
        self._run = run
        self._linger_s = linger_s
        self._waiting: dict[K, list[tuple[T, asyncio.Future[R]]]] = {}
        self._running: dict[K, asyncio.Task[None]] = {}

    async def submit(self, key: K, item: T) -> R:
        waiter: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append((item, waiter))
        if key not in self._running:
            self._running[key] = asyncio.create_task(self._run_batches(key))
        return await waiter

    async def _run_batches(self, key: K) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            if self._linger_s > 0:
                await asyncio.sleep(self._linger_s)
            while batch := self._waiting.pop(key, []):
                try:
                    results = await self._run(key, [item for item, _ in batch])
                except Exception as exc:
                    for _, waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                for (_, waiter), result in zip(batch, results, strict=True):
                    if not waiter.done():
                        waiter.set_result(result)
        except asyncio.CancelledError:  # shutting down
            for _, waiter in [*batch, *self._waiting.pop(key, [])]:
                waiter.cancel()
            raise
        finally:
            del self._running[key]
