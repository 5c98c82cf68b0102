"""The MongoDB emulator's own CPU per command, on the commands a ticket costs.

Every benchmark on this machine runs against the emulator (no MongoDB server can be
installed here), and `bench/system_bench.py` counts its CPU with the services'. This
script starts an emulator of its own and sends it, one after the other with a
synchronous client, the shapes of command a ticket's journey sends: the ticket's insert
(a conversation, an outbox entry, the indexes intake declares), the outbox emptied,
a versioned save, SLA's time limit noted and read back, a read by id, a notice claimed
and recorded, two clocks inserted together. It reports the emulator's CPU per command
(its process's user + system time), which is what the speedups in
``sportello_mongo_emulator.speedups`` are judged by; the client's own CPU is left out.

    .venv/bin/python bench/emulator_bench.py [--tickets 2000 --stored 500]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from common import cpu_seconds, report, write_report
from pymongo import ASCENDING, IndexModel, MongoClient, ReturnDocument

from support.backends import start_emulator

COMMANDS_PER_TICKET = 8


def ticket(n: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "_id": f"t{n}", "number": f"HD-2026-{n:06d}", "status": "new", "level": None,
        "version": 1, "created_at": now, "updated_at": now,
        "subject": "The printer on the third floor jams on every second page",
        "requester": {"name": "Ann Example", "email": f"ann{n}@example.com", "language": "en"},
        "requester_email": f"ann{n}@example.com", "requester_domain": "example.com",
        "conversation": [{"author": "requester", "body": "It does not print. " * 20,
                          "at": now}],
        "outbox": [{"event_id": str(uuid.uuid4()), "type": "ticket.created", "body": "x" * 600,
                    "trace": {}, "queued_at": now}],
        "outbox_pending_at": now, "ack_wait_until": now + timedelta(seconds=30),
    }


def journey(db: Any, n: int) -> None:
    """One ticket's commands, in the order they come."""
    tickets, notices, clocks = db["tickets"], db["notifications"], db["clocks"]
    doc = ticket(n)
    sent = [doc["outbox"][0]["event_id"]]
    tickets.insert_one(doc)
    tickets.update_one(
        {"_id": doc["_id"], "outbox": {"$not": {"$elemMatch": {"event_id": {"$nin": sent}}}}},
        {"$pull": {"outbox": {"event_id": {"$in": sent}}}, "$set": {"outbox_pending_at": None}})
    tickets.update_one({"_id": doc["_id"], "version": 1},
                       {"$set": {"status": "assigned", "level": "L1", "version": 2,
                                 "updated_at": datetime.now(UTC)}})
    as_of = datetime.now(UTC)
    tickets.find_one_and_update(
        {"_id": doc["_id"], "$or": [{"time_limit_as_of": None},
                                    {"time_limit_as_of": {"$lte": as_of}}]},
        {"$set": {"time_limit": as_of + timedelta(hours=4), "time_limit_as_of": as_of},
         "$unset": {"ack_wait_until": ""}},
        projection={"outbox": 0}, return_document=ReturnDocument.AFTER)
    tickets.find_one({"_id": doc["_id"]}, {"outbox": 0})
    notice = f"{doc['_id']}:acknowledged"
    notices.update_one(
        {"_id": notice, "$or": [{"status": None},
                                {"status": "sending", "at": {"$lt": as_of}}]},
        {"$set": {"status": "sending", "at": as_of, "ticket_id": doc["_id"]}}, upsert=True)
    notices.update_one({"_id": notice}, {"$set": {"status": "sent", "message_id": "m@x"}})
    clocks.insert_many([{"_id": f"{doc['_id']}:{name}", "ticket_id": doc["_id"],
                         "state": "running", "next_fire_at": as_of + timedelta(hours=1)}
                        for name in ("first_response", "resolution:0")])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--stored", type=int, default=500,
                        help="tickets stored before the measured ones")
    args = parser.parse_args()
    emulator = start_emulator()
    assert emulator.pid is not None
    client: MongoClient[dict[str, Any]] = MongoClient(emulator.url)
    try:
        db = client["emulator_bench"]
        db["tickets"].create_indexes([
            IndexModel([("number", ASCENDING)], unique=True),
            IndexModel([("status", ASCENDING), ("level", ASCENDING), ("created_at", -1)]),
            IndexModel([("requester_email", ASCENDING), ("created_at", -1)]),
            IndexModel([("outbox_pending_at", ASCENDING)], sparse=True),
            IndexModel([("ack_wait_until", ASCENDING)], sparse=True)])
        db["notifications"].create_indexes([
            IndexModel([("ticket_id", ASCENDING)]),
            IndexModel([("status", ASCENDING), ("wait_until", ASCENDING)])])
        db["clocks"].create_index([("next_fire_at", ASCENDING)])
        for n in range(args.stored):
            journey(db, -1 - n)
        cpu_before, started = cpu_seconds(emulator.pid), time.perf_counter()
        for n in range(args.tickets):
            journey(db, n)
        cpu = cpu_seconds(emulator.pid) - cpu_before
        seconds = time.perf_counter() - started
    finally:
        client.close()
        emulator.stop()
    commands = args.tickets * COMMANDS_PER_TICKET
    write_report("emulator", report(
        "emulator_bench.py", mongo_backend="emulator (mongomock via mockupdb)",
        tickets=args.tickets, stored_before=args.stored, commands=commands,
        emulator_cpu_us_per_command=round(1e6 * cpu / commands, 1),
        wall_us_per_command=round(1e6 * seconds / commands, 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
