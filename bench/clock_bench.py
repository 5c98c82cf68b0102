"""SLA's own arithmetic per ticket: starting its three clocks as the service does.

No I/O: the CPU of the pure domain alone, which `bench/system_bench.py` cannot separate
from SLA's round trips. Per ticket, for a P3 ticket under the default policy (office
hours in Europe/Rome, Italian holidays): the first response, resolution and L1 time box
clocks started, each one's next firing, and the time limit the requester is told.

    .venv/bin/python bench/clock_bench.py [--tickets 2000 --rounds 5]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from common import report, write_report

from sportello_contracts.enums import Priority, SlaMetric, SupportLevel
from sportello_sla.defaults import DEFAULT_POLICY
from sportello_sla.service import ClockKeeper

CLOCKS = ((SlaMetric.FIRST_RESPONSE, None), (SlaMetric.RESOLUTION, None),
          (SlaMetric.LEVEL_TIME_BOX, SupportLevel.L1))


def start_clocks(n: int, opened: datetime) -> None:
    """Ticket ``n`` of a stream opened one every 20 ms from ``opened``: each clock started
    as SLA starts it (``ClockKeeper._starting``, the pure part before its writes)."""
    at = opened + timedelta(milliseconds=20 * n)
    for metric, level in CLOCKS:
        started = ClockKeeper._starting(f"t{n}:{metric.value}", f"t{n}", metric, Priority.P3,
                                        DEFAULT_POLICY, at, level, None)
        assert started is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    opened = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)  # a Monday morning
    start_clocks(0, opened)  # the holiday tables load once, outside the measure
    per_ticket = []
    for _ in range(args.rounds):
        began = time.process_time()
        for n in range(args.tickets):
            start_clocks(n, opened)
        per_ticket.append((time.process_time() - began) / args.tickets * 1e6)
    write_report("clock_bench", report(
        "clock_bench.py", tickets=args.tickets, rounds=args.rounds,
        cpu_us_per_ticket_by_round=[round(us) for us in per_ticket],
        cpu_us_per_ticket_best=round(min(per_ticket))))


if __name__ == "__main__":
    main()
