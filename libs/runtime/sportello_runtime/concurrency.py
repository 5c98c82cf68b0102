"""Optimistic concurrency: one conflict type and one way to retry a fenced write.

Every store writes with the version it read in the update filter; when another
writer got there first the write matches nothing and the store raises
``ConcurrencyConflict``. A use case retries by reading again and deciding
again, never by writing blindly: ``retry_on_conflict`` runs that whole
read-decide-write step again, a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TRIES = 8
"""Enough for the handful of writers one record sees at once (replicas, API, sweeps)."""


class ConcurrencyConflict(Exception):
    """The record changed between our read and our write: read again and decide again."""


async def retry_on_conflict(step: Callable[[], Awaitable[T]], *, tries: int = DEFAULT_TRIES,
                            what: str = "record") -> T:
    """Run ``step`` (read, decide, fenced write) until it does not conflict.

    After ``tries`` conflicts the last one escapes, naming ``what``: an event
    handler is then retried by the bus, an API call answers 409.
    """
    if tries < 1:
        raise ValueError("tries must be at least 1")
    for _ in range(tries):
        try:
            return await step()
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(f"{what}: {tries} concurrent updates in a row")
