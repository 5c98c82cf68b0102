"""The system as users run it: intake, routing, SLA and the gateway, notices mailed,
ordinary logging.

`bench/intake_bench.py` measures intake and routing alone. This one starts what
`make up` starts, with its settings: intake (acknowledgement and assignment
mailed through SMTP), routing, SLA (clocks, the time limit each acknowledgement
waits for), the gateway (every event folded into its queue lines; ``--no-gateway``
leaves it out, as runs before it existed did), the mail catcher as the relay
(`python -m sportello_mailcatcher`, one line per message), and every service logging
at INFO to a file. Intake's admission is off, as in the tests (``FAST_TEST_SETTINGS``): this
measures what the pipeline sustains and costs with every ticket taken, and the burst would
otherwise be refused in part; ``bench/overload_bench.py`` measures the admission. Then:

1. sustained: posts --tickets tickets with --concurrency clients as fast as they
   are accepted and reports tickets/s from the first POST to the last ticket
   assigned (what the pipeline sustains), and until its last notice was mailed;
2. latency: posts --latency-tickets tickets at --rate tickets/s (open loop) and
   measures POST-to-assigned per ticket (the assignment's status change reaching
   the bench), and CPU per ticket by process (the bench, the services, the mail
   catcher, the MongoDB emulator, RabbitMQ) until the last notice of the phase was
   mailed: ``total`` over all of them, ``system`` over all but the bench (the
   load generator, as the requesters' side is not the help desk's);
3. idle: --idle-s seconds with nothing offered, CPU and MongoDB commands a second (the
   timers and sweeps every rate pays);
   (phases 1 and 2 also count MongoDB commands a ticket by service and collection,
   from MongoDB's ``top``, which the emulator answers too: where a cut would count; and
   wake-ups a ticket by process, which move with this VM's speed less than CPU time does);
4. checks: every ticket assigned in intake's store; every requester received the
   acknowledgement, then the assignment notice, and nothing twice;
5. says whether the run met issue 14's targets (``targets``): at least 80
   tickets/s sustained, p99 under 250 ms at 50/s, at most 25 ms of CPU per ticket
   over the system's processes (in the burst, and at the steady rate).

    .venv/bin/python bench/system_bench.py [--tickets 1000 --concurrency 32 --rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

import uvloop
from common import (
    BenchRun,
    RunMeter,
    confined_to_cores,
    isolated_system,
    outbox_drained,
    processes,
    until_quiet,
    write_report,
)
from intake_bench import AssignedWatcher, intake_client, latency, throughput

from support.proxy import free_port
from support.wait import eventually


class Defaults(TypedDict):
    BUS_RETRY_DELAYS_MS: str
    BUS_MAX_ATTEMPTS: str
    BUS_RECONNECT_INTERVAL_S: str
    OUTBOX_SWEEP_INTERVAL_S: str
    OUTBOX_STALE_AFTER_S: str
    SHUTDOWN_GRACE_S: str
    LOG_LEVEL: str
    LOG_FORMAT: str


# What `make up` runs with: the services' own defaults, not the tests' quick ones.
AS_USERS_RUN_IT = Defaults(
    BUS_RETRY_DELAYS_MS="[1000, 5000, 30000, 120000]", BUS_MAX_ATTEMPTS="6",
    BUS_RECONNECT_INTERVAL_S="1", OUTBOX_SWEEP_INTERVAL_S="1", OUTBOX_STALE_AFTER_S="2",
    SHUTDOWN_GRACE_S="10", LOG_LEVEL="INFO", LOG_FORMAT="json",
)
LINE = re.compile(r"^\S+ to (?P<to>\S+): \[(?P<number>[A-Z]+-\d{4}-\d+)\] (?P<subject>.*)$")


class MailCatcher:
    """The relay `make up` runs, as a process of its own, its lines read from a file."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.out = folder / "mailcatcher.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.out.open("w") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sportello_mailcatcher", "--port", str(self.port)],
                stdout=sink, stderr=subprocess.STDOUT)

    async def ready(self) -> None:
        async def listening() -> bool:
            return "mail catcher on" in self.out.read_text()
        await eventually(listening, timeout=20, what="the mail catcher")

    def notices(self) -> list[tuple[str, str]]:
        """(ticket number, subject) of every message taken, in order."""
        found = []
        for line in self.out.read_text().splitlines():
            if match := LINE.match(line):
                found.append((match["number"], match["subject"]))
        return found

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


async def every_notice(catcher: MailCatcher, expected: int) -> float:
    started = time.perf_counter()

    async def arrived() -> bool:
        return len(catcher.notices()) >= expected

    await eventually(arrived, timeout=600, interval=0.2, what=f"{expected} notices mailed")
    return round(time.perf_counter() - started, 2)


def notices_in_order(notices: list[tuple[str, str]]) -> dict[str, int]:
    """Per ticket: the acknowledgement first, then the assignment notice, once each."""
    per_ticket: dict[str, list[str]] = {}
    for number, subject in notices:
        kind = ("ack" if "received your request" in subject
                else "assigned" if "being handled" in subject else "other")
        per_ticket.setdefault(number, []).append(kind)
    in_order = sum(1 for kinds in per_ticket.values() if kinds == ["ack", "assigned"])
    return {"tickets_told": len(per_ticket), "ack_then_assigned": in_order,
            "otherwise": len(per_ticket) - in_order}


async def measure(run: BenchRun, args: argparse.Namespace) -> dict[str, Any]:
    system = run.system
    catcher = MailCatcher(system.folder)
    catcher.start()
    watcher = AssignedWatcher(system.amqp_url, system.namespace)
    mongo = system.mongo()
    try:
        await catcher.ready()
        sla = await system.start("sla", **AS_USERS_RUN_IT)
        await system.start("routing", **AS_USERS_RUN_IT)
        await system.start("intake", SMTP_RELAY_URL=f"smtp://127.0.0.1:{catcher.port}",
                           SLA_URL=sla.url, **AS_USERS_RUN_IT)
        if args.gateway:
            await system.start("gateway", **AS_USERS_RUN_IT)
        await watcher.start()
        pids = processes(system, run.emulator)
        assert catcher.process is not None
        pids["mail catcher"] = catcher.process.pid
        urls = {name: service.url for name, service in system.services.items()}
        meter = RunMeter(pids, mongo, urls, databases=system.database(""))

        async with intake_client(system, args.concurrency) as client:
            # 1. What the pipeline sustains, from the first POST.
            await meter.start()
            started = time.perf_counter()
            tp = await throughput(client, args.tickets, args.concurrency)

            async def all_assigned() -> bool:
                return all(t in watcher.assigned_at for t in tp["ids"])

            await eventually(all_assigned, timeout=600, interval=0.2,
                             what="the burst assigned")
            assigned_s = time.perf_counter() - started
            await every_notice(catcher, 2 * tp["accepted"])
            notified_s = time.perf_counter() - started
            await meter.stop()
            tp.update(meter.per_ticket(tp["accepted"]))
            tp["assigned_per_s"] = round(tp["accepted"] / assigned_s, 1)
            tp["notified_per_s"] = round(tp["accepted"] / notified_s, 1)
            tp["quiet_after_s"] = await until_quiet(meter.cpu.pids)

            # 2. A steady rate, measured until its last notice was mailed.
            told = len(catcher.notices())
            lat = await latency(client, watcher, args.latency_tickets, args.rate, meter)
            # latency() stopped the meter when the last ticket was assigned: measure on
            # until the phase's notices are out, so their cost is in the figure.
            await meter.start()
            lat["notices_after_assigned_s"] = await every_notice(
                catcher, told + 2 * lat["tickets"])
            await meter.stop()
            tail = meter.per_ticket(lat["tickets"])
            for key in ("cpu_ms_per_ticket", "wakeups_per_ticket"):
                lat[key] = {name: round(lat[key].get(name, 0.0) + tail[key].get(name, 0.0), 2)
                            for name in {*lat[key], *tail[key]}}

            # 3. Nothing offered: what the system costs a second, every ticket kept (timers,
            # sweeps, the emulator's scans over what they find), which the steady rate pays
            # per ticket and the burst spreads thin.
            await until_quiet(meter.cpu.pids)
            await meter.start()
            await asyncio.sleep(args.idle_s)
            await meter.stop()
            per_second = meter.per_ticket(args.idle_s)
            idle = {"seconds": args.idle_s,
                    "cpu_ms_per_s": per_second["cpu_ms_per_ticket"],
                    "wakeups_per_s": per_second["wakeups_per_ticket"],
                    "mongo_commands_per_s": per_second["mongo_commands_per_ticket"]}

        tickets = mongo[system.database("intake")]["tickets"]
        expected = set(tp.pop("ids")) | set(lat.pop("ids"))
        assigned = await tickets.count_documents({"status": "assigned"})
        notices = notices_in_order(catcher.notices())
        lost = len(expected) - assigned
        return run.report(
            "system_bench.py",
            sustained=tp,
            latency_at_rate=lat,
            idle=idle,
            checks={"accepted": len(expected), "assigned_in_store": assigned, "lost": lost,
                    **await outbox_drained(tickets), "notices": notices},
            targets={
                "sustained_at_least_80_per_s": tp["assigned_per_s"] >= 80,
                "p99_under_250_ms_at_50_per_s": (lat["p99_ms"] < 250 if args.rate == 50
                                                 else None),
                # The issue measured its 78 ms posting as fast as tickets were taken: the
                # burst is that measurement; the steady rate costs more (less shared work).
                # Over the system's processes, as the issue counted them (its client's CPU
                # was not in its list): the bench's own is reported beside, not judged.
                "cpu_at_most_25_ms_per_ticket_in_the_burst": tp["cpu_ms_per_ticket"]["system"]
                <= 25,
                "cpu_at_most_25_ms_per_ticket_at_the_rate": lat["cpu_ms_per_ticket"]["system"]
                <= 25,
                "nothing_lost": lost == 0,
                "every_requester_told_in_order": notices["otherwise"] == 0
                and notices["tickets_told"] == len(expected),
            },
        )
    finally:
        await mongo.close()
        await watcher.close()
        catcher.stop()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--latency-tickets", type=int, default=1500)
    parser.add_argument("--idle-s", type=int, default=10,
                        help="how long the idle system is measured after the run")
    parser.add_argument("--no-gateway", dest="gateway", action="store_false",
                        help="leave the gateway out (the system before it existed)")
    parser.add_argument("--cpus", type=float, default=None,
                        help="confine the whole run to this many cores' worth of CPU time")
    args = parser.parse_args()
    with confined_to_cores(args.cpus):
        async with isolated_system("sportello-system-bench-") as run:
            report = await measure(run, args)
    write_report("system", report)
    return 0 if report["checks"]["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(uvloop.run(main()))
