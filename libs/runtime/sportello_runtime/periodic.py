"""Background work on a timer (sweeps, timers, gauges): one loop shape for every service.

Event handlers never wait on a timer; what genuinely happens with time (a quiet period
ending, a due clock, a safety-net sweep, a gauge refresh) runs here, in
``ServiceWiring.background``, and a failure is logged and tried again next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


def every(interval_s: float, job: Callable[[], Awaitable[object]], *, what: str,
          at_start: bool = False) -> Callable[[], Coroutine[Any, Any, None]]:
    """A loop for ``ServiceWiring.background`` that runs ``job`` every ``interval_s``
    (first right away with ``at_start``); an exception is logged as "``what`` failed"."""

    async def loop() -> None:
        if not at_start:
            await asyncio.sleep(interval_s)
        while True:
            try:
                await job()
            except Exception:  # the next round tries again; the failure is in the log
                log.exception("%s failed", what)
            await asyncio.sleep(interval_s)

    loop.__qualname__ = f"every {interval_s}s: {what}"
    return loop
