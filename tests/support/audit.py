"""The independent check that ends a fault test: it reads every service's own database and
the mail the relay received, not the services' answers, and says what it finds wrong.

- No ticket acknowledged to a channel is missing, and no number is stored twice.
- No effect is doubled: intake records each of routing's moves at most once and ends on
  routing's latest; no SLA clock escalated twice; no two level boxes running at once;
  no notice mailed as two messages (a notice sent again after its sender was killed
  between the send and its record keeps its Message-ID: mail clients show it once).
- No clock left running on a closed ticket, nor a resolution clock on a resolved one.
- Every ticket reached the read models of the services running: analytics' facts, the
  gateway's desk, knowledge's suggestions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from support.mailsink import MailSink
from support.system import System

ACTIVE = ("running", "paused")
READ_MODELS = {"analytics": "facts", "gateway": "desk", "knowledge": "suggestions"}
"""Per service, the collection that holds one document per ticket, keyed by its id."""


async def check_nothing_lost_or_doubled(system: System, acknowledged: Iterable[str],
                                        relay: MailSink | None = None) -> None:
    running = {service.name for service in system.services.values()}
    problems: list[str] = []
    client = system.mongo()
    try:
        tickets = [doc async for doc in client[system.database("intake")]["tickets"].find(
            {}, {"number": 1, "status": 1, "routing_sequence": 1, "history.kind": 1})]
        routing: dict[str, dict[str, Any]] = {}
        if "routing" in running:
            routing = {doc["_id"]: doc async for doc in client[system.database("routing")][
                "assignments"].find({}, {"sequence": 1, "escalated_clocks": 1})}
        clocks: list[dict[str, Any]] = []
        if "sla" in running:
            clocks = [doc async for doc in client[system.database("sla")]["clocks"].find(
                {}, {"ticket_id": 1, "metric": 1, "state": 1})]
        projected = {}
        for service, collection in READ_MODELS.items():
            if service in running:
                projected[service] = {doc["_id"] async for doc in client[system.database(
                    service)][collection].find({}, {"_id": 1})}
    finally:
        await client.close()
    for service, ids in projected.items():
        problems += [f"{t['number']} missing from {service}'s {READ_MODELS[service]}"
                     for t in tickets if t["_id"] not in ids]

    numbers = Counter(t["number"] for t in tickets)
    problems += [f"{n} stored {c} times" for n, c in numbers.items() if c > 1]
    problems += [f"{n} acknowledged but not stored" for n in acknowledged if n not in numbers]
    for ticket in tickets:
        number, moves = ticket["number"], [h["kind"] for h in ticket.get("history", [])]
        assignment = routing.get(ticket["_id"])
        if assignment is None:
            if routing and ticket["status"] != "new":
                problems.append(f"{number} is {ticket['status']} but routing has no record")
            continue
        if ticket.get("routing_sequence") != assignment["sequence"]:
            problems.append(f"{number}: intake at routing's move {ticket.get('routing_sequence')}"
                            f", routing at {assignment['sequence']}")
        if moves.count("assigned") > assignment["sequence"]:
            problems.append(f"{number}: {moves.count('assigned')} assignments recorded for "
                            f"{assignment['sequence']} moves")
        escalated = assignment.get("escalated_clocks", [])
        if len(escalated) != len(set(escalated)):
            problems.append(f"{number}: a clock escalated twice {escalated}")

    status = {t["_id"]: (t["number"], t["status"]) for t in tickets}
    boxes = Counter(c["ticket_id"] for c in clocks
                    if c["metric"] == "level_time_box" and c["state"] in ACTIVE)
    problems += [f"{status.get(t, (t,))[0]}: {n} level boxes running" for t, n in boxes.items()
                 if n > 1]
    for clock in clocks:
        number, state = status.get(clock["ticket_id"], (clock["ticket_id"], None))
        if clock["state"] in ACTIVE and (state == "closed" or (
                state == "resolved" and clock["metric"] == "resolution")):
            problems.append(f"{number} is {state} with its {clock['metric']} clock "
                            f"{clock['state']}")

    if relay is not None:
        messages: dict[tuple[str, str], set[str]] = {}
        for m in relay.messages:
            messages.setdefault((str(m["To"]), str(m["Subject"])), set()).add(
                str(m["Message-ID"]))
        problems += [f"mailed as {len(ids)} messages: {key}" for key, ids in messages.items()
                     if len(ids) > 1]
    assert not problems, "\n".join(problems)
