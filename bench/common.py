"""What every benchmark here needs: an isolated Sportello on a MongoDB (MONGO_URL or the
emulator), percentiles, CPU accounting, and a report that says which machine, backend and
command produced the numbers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.backends import LOCAL_AMQP, Backend, start_emulator  # noqa: E402
from support.system import System  # noqa: E402


def mongo_for_bench() -> tuple[str, Backend | None, str]:
    """(url, the emulator we started or None, a label for the report)."""
    if url := os.environ.get("MONGO_URL"):
        return url, None, "MONGO_URL"
    emulator = start_emulator()
    return emulator.url, emulator, "emulator (mongomock via mockupdb)"


def amqp_for_bench() -> str:
    return os.environ.get("AMQP_URL", LOCAL_AMQP)


@dataclass(frozen=True)
class BenchRun:
    """One benchmark's own Sportello: its services start on ``system``."""

    system: System
    emulator: Backend | None
    backend: str

    def report(self, script: str, **results: Any) -> dict[str, Any]:
        return report(script, mongo_backend=self.backend, **results)


def report(script: str, *, mongo_backend: str | None = None, **results: Any) -> dict[str, Any]:
    """The results with when, where and how they were measured (the MongoDB backend for a
    script that uses one)."""
    backend = {} if mongo_backend is None else {"mongo_backend": mongo_backend}
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "python_loop_s": python_loop_seconds(),
        **backend,
        "command": " ".join([f"bench/{script}", *sys.argv[1:]]),
        **results,
    }


@asynccontextmanager
async def isolated_system(prefix: str) -> AsyncIterator[BenchRun]:
    """A fresh namespace and databases (and the emulator, without MONGO_URL); everything
    is stopped and deleted afterwards, with the services' logs printed when the run failed."""
    mongo_url, emulator, backend = mongo_for_bench()
    system = System(mongo_url, amqp_for_bench(), Path(tempfile.mkdtemp(prefix=prefix)))
    failed = True
    try:
        yield BenchRun(system, emulator, backend)
        failed = False
    finally:
        await system.shutdown(failed=failed)
        if emulator is not None:
            emulator.stop()


def percentile_ms(sorted_seconds: list[float], p: float) -> float:
    index = min(len(sorted_seconds) - 1, int(p / 100 * len(sorted_seconds)))
    return round(sorted_seconds[index] * 1000, 1)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def python_loop_seconds() -> float:
    """Seconds a fixed pure-Python loop takes here, now: this VM's speed varies by a third
    from hour to hour, and runs are only comparable next to it."""
    started = time.perf_counter()
    total = 0
    for n in range(5_000_000):
        total += n
    return round(time.perf_counter() - started, 3)


def write_report(name: str, report: dict[str, Any]) -> None:
    """Print the report and keep it in bench/results/<name>-<when>.json (git ignores it)."""
    print(json.dumps(report, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = str(report.get("when", "unknown")).replace(":", "")
    (out / f"{name}-{stamp}.json").write_text(json.dumps(report, indent=2))


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wakeups(pid: int) -> int:
    """Times a process's threads gave up the CPU to wait (voluntary context switches, Linux
    /proc): each time it went back to waiting on a socket or a timer with nothing left to do."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # the thread ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


LOAD_GENERATOR = "bench"
"""The benchmark's own process in ``processes``: it posts the tickets and watches them
assigned, as requesters and their clients do, and is not part of the system measured."""


class ProcessMeter:
    """A count each named process keeps (CPU time, wake-ups), between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int], read: Callable[[int], float]) -> None:
        self.pids = pids
        self.read = read
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: self.read(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        self.used = {name: self.read(pid) - self.before[name] for name, pid in self.pids.items()}
        return self.used

    def _per_item(self, items: int, scale: float, digits: int) -> dict[str, float]:
        """Each process, ``total`` over all of them, and ``system`` over all but the
        benchmark's own process (the load generator: the requesters' side)."""
        per = {name: round(scale * used / max(1, items), digits)
               for name, used in self.used.items()}
        per["total"] = round(scale * sum(self.used.values()) / max(1, items), digits)
        if LOAD_GENERATOR in self.used:
            system = sum(used for name, used in self.used.items() if name != LOAD_GENERATOR)
            per["system"] = round(scale * system / max(1, items), digits)
        return per


class CpuMeter(ProcessMeter):
    """CPU used by named processes: where a run's time went."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(pids, cpu_seconds)

    def per_item_ms(self, items: int) -> dict[str, float]:
        return self._per_item(items, 1000, 2)


class WakeupMeter(ProcessMeter):
    """Wake-ups by process. They move with this VM's speed from hour to hour far less than
    CPU time (not at all is too much to say: the broker's, for the same code at 50/s, were
    65-71 a ticket one half hour and 80-91 in a slower one). Every crossing between
    processes (a MongoDB command, a delivery, an ack, an SMTP reply) costs one on each side
    unless it finds work already waiting: where batching helps, this count falls."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(pids, wakeups)

    def per_item(self, items: int) -> dict[str, float]:
        return self._per_item(items, 1, 1)


DATA_COMMANDS = ("insert", "update", "delete", "find", "findAndModify", "getMore",
                 "aggregate", "count", "distinct")


class CommandMeter:
    """MongoDB round trips between ``start`` and ``stop``, from the server's own count
    (serverStatus ``metrics.commands``, which the emulator keeps too): unlike CPU time, it
    does not change with the machine's speed. A bulk write is one round trip, as it is
    one command."""

    def __init__(self, client: AsyncMongoClient[Any], databases: str | None = None) -> None:
        """``databases``: the prefix of the run's databases (``<prefix><service>``), to
        count their commands by service and collection too, from MongoDB's ``top``."""
        self.client = client
        self.databases = databases
        self.before: dict[str, int] = {}
        self.used: dict[str, int] = {}
        self.before_by_collection: dict[str, int] = {}
        self.used_by_collection: dict[str, int] = {}

    async def _counts(self) -> dict[str, int]:
        status = await self.client.admin.command("serverStatus")
        commands = status.get("metrics", {}).get("commands", {})
        return {name: int(commands.get(name, {}).get("total", 0)) for name in DATA_COMMANDS}

    async def _by_collection(self) -> dict[str, int]:
        """``service.collection`` -> commands run on it so far."""
        if self.databases is None:
            return {}
        try:
            totals = (await self.client.admin.command("top"))["totals"]
        except OperationFailure:  # a server that refuses it to this user: left out
            return {}
        return {namespace.removeprefix(self.databases): int(kinds["total"]["count"])
                for namespace, kinds in totals.items()
                if namespace.startswith(self.databases) and isinstance(kinds, dict)}

    async def start(self) -> None:
        self.before = await self._counts()
        self.before_by_collection = await self._by_collection()

    async def stop(self) -> None:
        after = await self._counts()
        self.used = {name: after[name] - self.before[name] for name in DATA_COMMANDS}
        after_by_collection = await self._by_collection()
        self.used_by_collection = {
            name: n - self.before_by_collection.get(name, 0)
            for name, n in after_by_collection.items()
            if n > self.before_by_collection.get(name, 0)}

    def per_item(self, items: int) -> dict[str, float]:
        per = {name: round(n / max(1, items), 2) for name, n in self.used.items() if n}
        per["total"] = round(sum(self.used.values()) / max(1, items), 2)
        return per

    def per_item_by_collection(self, items: int) -> dict[str, float]:
        return {name: round(n / max(1, items), 2)
                for name, n in sorted(self.used_by_collection.items(), key=lambda kv: -kv[1])}


class GcMeter:
    """Time each service spent stopped in garbage collection between ``start`` and ``stop``,
    and its longest pause's bucket, from the services' own ``python_gc_pause_seconds``."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.before: dict[str, dict[str, float]] = {}
        self.used: dict[str, dict[str, float]] = {}

    async def _pauses(self) -> dict[str, dict[str, float]]:
        found: dict[str, dict[str, float]] = {}
        async with httpx.AsyncClient(timeout=10) as client:
            for name, url in self.urls.items():
                text = (await client.get(f"{url}/metrics")).text
                totals = found.setdefault(name, {})
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        if sample.name == "python_gc_pause_seconds_sum":
                            totals["seconds"] = totals.get("seconds", 0.0) + sample.value
                        elif sample.name == "python_gc_pause_seconds_bucket":
                            key = f"le {sample.labels['le']}"
                            totals[key] = totals.get(key, 0.0) + sample.value
        return found

    async def start(self) -> None:
        self.before = await self._pauses()

    async def stop(self) -> None:
        after = await self._pauses()
        self.used = {name: {key: value - self.before[name].get(key, 0.0)
                            for key, value in totals.items()}
                     for name, totals in after.items()}

    def report(self) -> dict[str, dict[str, float | None]]:
        """Per service: seconds in collections, and the bound of the longest pause (None
        when there was no collection)."""
        out = {}
        for name, totals in self.used.items():
            everything = totals.get("le +Inf", 0.0)
            bounds = sorted((float(key[3:]), n) for key, n in totals.items()
                            if key.startswith("le ") and key != "le +Inf")
            longest = None if not everything else next(
                (bound for bound, n in bounds if n >= everything), float("inf"))
            out[name] = {"seconds": round(totals.get("seconds", 0.0), 3),
                         "collections": int(everything), "longest_at_most_s": longest}
        return out


class RunMeter:
    """CPU and wake-ups by process, MongoDB commands and the services' garbage collection
    over the same stretch of a run, per ticket."""

    def __init__(self, pids: dict[str, int], mongo: AsyncMongoClient[Any],
                 service_urls: dict[str, str], databases: str | None = None) -> None:
        self.cpu = CpuMeter(pids)
        self.wakeups = WakeupMeter(pids)
        self.commands = CommandMeter(mongo, databases)
        self.gc = GcMeter(service_urls)

    async def start(self) -> None:
        await self.commands.start()
        await self.gc.start()
        self.wakeups.start()
        self.cpu.start()

    async def stop(self) -> None:
        self.cpu.stop()
        self.wakeups.stop()
        await self.gc.stop()
        await self.commands.stop()

    def per_ticket(self, tickets: int) -> dict[str, Any]:
        by_collection = self.commands.per_item_by_collection(tickets)
        return {"cpu_ms_per_ticket": self.cpu.per_item_ms(tickets),
                "wakeups_per_ticket": self.wakeups.per_item(tickets),
                "mongo_commands_per_ticket": self.commands.per_item(tickets),
                **({"mongo_commands_per_ticket_by_collection": by_collection}
                   if by_collection else {}),
                "garbage_collection": self.gc.report()}


async def until_quiet(pids: dict[str, int], *, below_cores: float = 0.2,
                      window_s: float = 0.5, timeout_s: float = 120.0) -> float:
    """Wait until these processes together use less than ``below_cores`` over a window:
    the work a phase left behind (outbox clears, acks, sweeps) is done before the next
    phase is measured. Returns the seconds waited."""
    watched = {name: pid for name, pid in pids.items() if name != LOAD_GENERATOR}
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        before = {name: cpu_seconds(pid) for name, pid in watched.items()}
        await asyncio.sleep(window_s)
        used = sum(cpu_seconds(pid) - before[name] for name, pid in watched.items())
        if used / window_s < below_cores:
            break
    return round(time.perf_counter() - started, 2)


async def outbox_drained(collection: AsyncCollection[Any], *,
                         timeout_s: float = 30.0) -> dict[str, Any]:
    """Wait until no document of ``collection`` holds an outbox entry: a published
    event's entry is cleared a linger later (``OUTBOX_CLEAR_LINGER_S``), so a count
    taken the moment the last event arrived still sees a few. Returns the entries
    left at the end (0 unless the deadline passed) and the seconds waited."""
    started = time.perf_counter()
    while True:
        left = await collection.count_documents({"outbox.0": {"$exists": True}})
        waited = time.perf_counter() - started
        if left == 0 or waited > timeout_s:
            return {"outbox_entries_left": left, "outbox_drained_after_s": round(waited, 2)}
        await asyncio.sleep(0.05)


def processes(system: System, emulator: Backend | None) -> dict[str, int]:
    """Every process the run's CPU goes to on this machine (RabbitMQ when it is local)."""
    pids = {LOAD_GENERATOR: os.getpid()}
    for name, service in system.services.items():
        assert service.process is not None
        pids[name] = service.process.pid
    if emulator is not None and emulator.pid is not None:
        pids["mongo emulator"] = emulator.pid
    if (broker := local_rabbitmq_pid()) is not None:
        pids["rabbitmq"] = broker
    return pids


CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PERIOD_US = 10_000
"""Short, so a confined run is throttled in 10 ms slices and not in 100 ms stalls."""


@contextmanager
def confined_to_cores(cores: float | None) -> Iterator[None]:
    """With ``cores``, this process, what it starts from now on, and the local RabbitMQ
    share that many cores' worth of CPU time (a cgroup CPU quota; needs root): how a run
    behaves on a slower machine, measured on this one. Everything moves back afterwards."""
    if cores is None:
        yield
        return
    v1 = CGROUP_ROOT / "cpu"
    root = v1 if (v1 / "cpu.cfs_quota_us").exists() else CGROUP_ROOT
    group = root / f"sportello-bench-{os.getpid()}"
    group.mkdir()
    quota = str(round(cores * CGROUP_PERIOD_US))
    if root is v1:
        (group / "cpu.cfs_period_us").write_text(str(CGROUP_PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(quota)
    elif (group / "cpu.max").exists():
        (group / "cpu.max").write_text(f"{quota} {CGROUP_PERIOD_US}")
    else:
        group.rmdir()
        raise SystemExit("--cpus needs the cgroup CPU controller: cgroup v1's cpu, or v2 with "
                         f"'+cpu' in {CGROUP_ROOT / 'cgroup.subtree_control'}")
    broker = subprocess.run(["pgrep", "beam.smp|erl_child_setup|epmd"], capture_output=True,
                            text=True).stdout.split()
    came_from = {pid: _cpu_cgroup(root, pid) for pid in [*map(int, broker), os.getpid()]}
    try:
        for pid in came_from:
            (group / "cgroup.procs").write_text(str(pid))
        yield
    finally:
        for pid, home in came_from.items():
            with contextlib.suppress(OSError):
                (home / "cgroup.procs").write_text(str(pid))
        try:
            group.rmdir()
        except OSError as exc:  # a process still in it stays confined: say so
            print(f"warning: could not remove {group}: {exc}", file=sys.stderr)


def _cpu_cgroup(root: Path, pid: int) -> Path:
    """The cgroup ``pid`` is in now, under ``root`` (the v1 cpu hierarchy or the v2 one)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (controllers == "") == (root == CGROUP_ROOT) and (
                root == CGROUP_ROOT or "cpu" in controllers.split(",")):
            return root / path.lstrip("/")
    return root


def local_rabbitmq_pid() -> int | None:
    """The local broker's Erlang VM, when RabbitMQ runs on this machine."""
    found = subprocess.run(["pgrep", "-o", "beam.smp"], capture_output=True, text=True).stdout
    return int(found.split()[0]) if found.strip() else None
