"""Whether intake takes a new ticket now: a pure rule over how long the tickets it took
lately waited to be assigned, and how many were offered. No I/O; the caller passes the
time (monotonic seconds).

Refusing on requests in progress, or on the event loop's lateness, looks at intake
alone. Past what the whole system sustains, intake can still take tickets quickly while
routing's queue, the database and the other services fall behind, and they take the
CPU every answer needs, refusals included (bench/overload_bench.py: refusals seconds
late at p99). The wait from acceptance to assignment is what a requester feels, and it
grows with every queue behind intake, so the rule steers on it, one interval at a time
(as CoDel steers on a packet's time in the queue):

- while no more tickets are offered than are assigned, every one is taken: a backlog is
  being worked off (routing back after a restart), whatever its waits;
- otherwise the next interval takes ``assigned * target / shortest wait``: as many as
  were assigned while the waits are at the target, fewer above it (the queue drains),
  more below it. Under overload the waits settle at the target and the rest is refused,
  at once and cheaply;
- and while steering, nothing is taken while intake's own event loop runs more than
  ``max_late_s`` behind: on two cores shared with the pipeline, intake is one of the
  queues, and a refusal waits for the loop like everything else. Not steering, the
  loop's lateness refuses nothing: one long computation (a huge mail parsed) or a pause
  of the machine is over by the next request, and refusing for it would refuse a lone
  requester.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def quota(*, offered: int, assigned: int, shortest_wait_s: float,
          target_s: float) -> int | None:
    """New tickets the next interval takes, from what the last one saw; ``None``: all."""
    if not assigned or offered <= assigned:
        return None
    return math.floor(assigned * target_s / max(shortest_wait_s, 1e-3))


@dataclass
class Admission:
    """Counts one interval (``interval_s``, on the monotonic clock) and steers the next."""

    target_s: float
    interval_s: float
    max_late_s: float = 0.0  # 0: the loop's lateness refuses nothing
    _interval: int = -2  # the interval being counted: its number since the clock's zero
    _offered: int = 0
    _assigned: int = 0
    _shortest: float = math.inf
    _taken: int = 0
    _quota: int | None = None  # from the interval before; None: every ticket is taken

    def heard(self, waited_s: float, now: float) -> None:
        """A ticket's first assignment reached intake ``waited_s`` after it was taken."""
        self._roll(now)
        self._assigned += 1
        self._shortest = min(self._shortest, waited_s)

    def admit(self, now: float, *, overdue_s: float = 0.0, last_late_s: float = 0.0) -> bool:
        """A new ticket is offered: take it? ``overdue_s``: how long the loop's timer is
        overdue now; ``last_late_s``: how late it woke last time."""
        self._roll(now)
        self._offered += 1
        if not self.target_s:
            return True
        if self._quota is not None:
            if self.max_late_s and max(overdue_s, last_late_s) > self.max_late_s:
                return False
            # Spread over the interval: the quota's share of it gone by, and one more. All
            # at its start would be a burst of the very work the quota keeps out.
            gone_by = now / self.interval_s - self._interval
            if self._taken >= math.floor(self._quota * gone_by) + 1:
                return False
        self._taken += 1
        return True

    def _roll(self, now: float) -> None:
        interval = math.floor(now / self.interval_s)
        if interval == self._interval:
            return
        # An interval with nothing heard, or one long gone, steers nothing.
        self._quota = quota(offered=self._offered, assigned=self._assigned,
                            shortest_wait_s=self._shortest,
                            target_s=self.target_s) if interval == self._interval + 1 else None
        self._interval = interval
        self._offered = self._assigned = self._taken = 0
        self._shortest = math.inf
