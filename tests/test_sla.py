"""SLA through real processes: warnings, breaches and escalation; replicas; restarts."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any, TypedDict

import httpx
import jwt
import pytest

from sportello_contracts import EventEnvelope, utc_now
from support.probe import BusProbe
from support.system import STATUS_TOKEN_SECRET, System
from support.tickets import post_tickets, ticket_body, wait_assigned
from support.wait import eventually, true_when

pytestmark = pytest.mark.e2e


class QuickTimer(TypedDict):
    """Environment of an SLA process whose timer looks every 100 ms (typed, so that
    ``System.start(..., **FAST)`` can be checked against its keyword arguments)."""

    TIMER_POLL_INTERVAL_S: str
    TIMER_LEASE_S: str
    GAUGE_INTERVAL_S: str


FAST = QuickTimer(TIMER_POLL_INTERVAL_S="0.1", TIMER_LEASE_S="2", GAUGE_INTERVAL_S="0.2")


def short_policy(current: dict[str, Any], l1_seconds: int) -> dict[str, Any]:
    """Round the clock for every priority (the test must not depend on the time of day) and
    an L1 time box of a few seconds."""
    policy = {k: v for k, v in current.items() if k != "version"}
    policy["based_on_version"] = current["version"]
    for targets in policy["targets"].values():
        targets["calendar"] = "24x7"
    policy["level_time_box_s"] = {"L1": l1_seconds, "L2": 3600, "L3": 3600}
    return policy


async def shorten_l1(sla: httpx.AsyncClient, seconds: int) -> None:
    current = (await sla.get("/policy")).json()
    response = await sla.put("/policy", json=short_policy(current, seconds))
    assert response.status_code == 201, response.text


def firings(probe: BusProbe, ticket_id: str | None = None) -> list[EventEnvelope]:
    return [e for e in probe.events if e.type in ("sla.warning", "sla.breached")
            and (ticket_id is None or e.ticket_id == ticket_id)]


async def test_policy_input_is_validated(system: System) -> None:
    await system.start("sla")
    async with system.client("sla") as sla:
        current = (await sla.get("/policy")).json()
        base = {k: v for k, v in current.items() if k != "version"}
        negative = {**base, "targets": {**base["targets"], "P3": {
            "first_response_s": -60, "resolution_s": 3600, "calendar": "office-hours"}}}
        overlapping = {**base, "calendars": [{**c, "hours": {"0": [["09:00", "13:00"],
                                                                  ["12:00", "18:00"]]}}
                                             if c["name"] == "office-hours" else c
                                             for c in base["calendars"]]}
        bad_zone = {**base, "calendars": [{**c, "timezone": "Europe/Atlantis"}
                                          for c in base["calendars"]]}
        answers = [await sla.put("/policy", json=body)
                   for body in (negative, overlapping, bad_zone)]
    assert [a.status_code for a in answers] == [422, 422, 422]
    assert answers[0].json()["field"] == "targets.P3"
    assert answers[1].json()["field"] == "hours.0"
    assert answers[2].json()["field"] == "timezone"


async def test_an_l1_time_box_warns_then_breaches_and_routing_escalates(
    system: System, probe: BusProbe
) -> None:
    await system.start("intake")
    await system.start("routing")
    await system.start("sla", **FAST)
    async with system.client("sla") as sla, system.client("intake") as intake:
        await shorten_l1(sla, 4)
        async with system.channel_client("web") as channel:
            ticket = (await channel.post("/tickets", json=ticket_body())).json()
        tid = ticket["id"]
        await wait_assigned(intake, ticket["number"])

        async def l1_clock_running() -> dict[str, Any] | None:
            response = await sla.get(f"/tickets/{tid}/sla")
            if response.status_code != 200:
                return None
            boxes = [c for c in response.json()["clocks"] if c["metric"] == "level_time_box"]
            return boxes[0] if boxes else None

        clock = await eventually(l1_clock_running, what="the L1 clock")
        assert clock["level"] == "L1"
        assert clock["state"] == "running"
        assert 0 < clock["remaining_s"] <= 4

        await probe.wait_for(lambda _: any(e.type == "ticket.escalated"
                                           for e in probe.of_type("ticket.escalated", tid)),
                             timeout=30, what="automatic escalation")
        fired = [(e.type, e.payload.get("threshold_percent")) for e in firings(probe, tid)]
        assert fired == [("sla.warning", 75), ("sla.warning", 90), ("sla.breached", None)]
        breach = probe.of_type("sla.breached", tid)[0]
        assert breach.payload["level"] == "L1"
        assert breach.payload["metric"] == "level_time_box"
        [escalated] = probe.of_type("ticket.escalated", tid)
        assert escalated.payload["kind"] == "automatic"
        assert escalated.payload["to_level"] == "L2"
        assert escalated.causation_id == str(breach.event_id)

        async def at_l2() -> bool:
            level: str = (await intake.get(f"/tickets/{ticket['number']}")).json()["level"]
            return level == "L2"

        await eventually(at_l2, what="intake shows L2")

        async def l2_box_started() -> list[dict[str, Any]] | None:
            clocks = (await sla.get(f"/tickets/{tid}/sla")).json()["clocks"]
            boxes = [c for c in clocks if c["metric"] == "level_time_box"]
            return clocks if len(boxes) == 2 else None

        clocks = await eventually(l2_box_started, what="the L2 time box")
        by_level = {c["level"]: c for c in clocks if c["metric"] == "level_time_box"}
        assert by_level["L1"]["state"] == "stopped"
        assert by_level["L1"]["breached"] is True
        assert by_level["L2"]["state"] == "running"
        assert by_level["L2"]["target_s"] == 3600

        async def gauges_settled() -> str | None:
            text = (await sla.get("/metrics")).text
            wanted = ['sla_active_clocks{metric="level_time_box"} 1.0',  # L2's; L1's stopped
                      'sla_active_clocks{metric="resolution"} 1.0',
                      'sla_active_clocks{metric="first_response"} 1.0']
            return text if all(w in text for w in wanted) else None

        metrics_text = await eventually(gauges_settled, what="active clock gauges")
    assert 'sla_breaches_total{level="L1",metric="level_time_box",priority="P3"} 1.0' in (
        metrics_text)
    assert 'sla_warnings_total{level="L1",metric="level_time_box",priority="P3"} 2.0' in (
        metrics_text)
    assert "sla_timer_lag_seconds_count 3.0" in metrics_text


def expected_ids(events: list[EventEnvelope]) -> dict[tuple[str, str, Any], set[str]]:
    seen: dict[tuple[str, str, Any], set[str]] = {}
    for e in events:
        key = (e.payload["clock_id"], e.type, e.payload.get("threshold_percent"))
        seen.setdefault(key, set()).add(str(e.event_id))
    return seen


async def test_two_replicas_one_killed_mid_run_emit_every_due_event_exactly_once(
    system: System, probe: BusProbe
) -> None:
    await system.start("intake")
    await system.start("routing")
    doomed = await system.start("sla", replica="sla-a", REPLICA_NAME="sla-a", **FAST)
    await system.start("sla", replica="sla-b", REPLICA_NAME="sla-b", **FAST)
    async with system.client("sla-b") as sla:
        await shorten_l1(sla, 6)
    tickets = [t["id"] for t in await post_tickets(system, 20)]
    await probe.wait_for(lambda _: len(firings(probe)) >= 5, timeout=30, what="first warnings")
    doomed.kill()

    await probe.wait_for(lambda _: len(expected_ids(firings(probe))) == 20 * 3, timeout=60,
                         what="every warning and breach")
    per_firing = expected_ids(firings(probe))
    assert {key[0].split(":")[0] for key in per_firing} == set(tickets)
    assert all(len(ids) == 1 for ids in per_firing.values()), per_firing  # one id per firing
    # Downstream sees each breach once: every ticket escalated exactly once.
    await probe.wait_for(
        lambda _: {e.ticket_id for e in probe.of_type("ticket.escalated")} == set(tickets),
        timeout=30, what="every ticket escalated")
    escalations = Counter(e.ticket_id for e in probe.of_type("ticket.escalated"))
    assert escalations == Counter(tickets)


async def test_two_replicas_racing_for_the_same_due_clocks_publish_each_firing_once(
    system: System, probe: BusProbe
) -> None:
    """Protections: the timer lease and the fence on saving a clock, together (each alone
    is pinned on the store in services/sla/tests/test_timer_fence.py; any one of them is
    enough to keep this green). Both replicas are frozen while every clock falls due, then
    thawed together, so each finds the same backlog and they race for every clock. The
    probe counts raw messages, not distinct ids: without the protections both replicas
    publish the same (derived) id, which counting ids hides."""
    await system.start("intake")
    await system.start("routing")
    replicas = [await system.start("sla", replica=name, REPLICA_NAME=name, **FAST)
                for name in ("sla-a", "sla-b")]
    async with system.client("sla-a") as sla:
        await shorten_l1(sla, 4)
        tickets = [t["id"] for t in await post_tickets(system, 15)]

        async def latest_due() -> datetime | None:
            due = []
            for tid in tickets:
                response = await sla.get(f"/tickets/{tid}/sla")
                boxes = [c for c in response.json().get("clocks", [])
                         if c["metric"] == "level_time_box" and c["due_at"]]
                if response.status_code != 200 or not boxes:
                    return None
                due.append(datetime.fromisoformat(boxes[0]["due_at"]))
            return max(due)

        last_due = await eventually(latest_due, what="every L1 clock started")
    for replica in replicas:
        replica.pause()
    try:
        await eventually(lambda: true_when(utc_now() > last_due), timeout=30, interval=0.2,
                         what="every L1 time box past due")
    finally:
        for replica in replicas:
            replica.resume()
    await probe.wait_for(lambda _: len(expected_ids(firings(probe))) == 15 * 3, timeout=30,
                         what="every warning and breach")
    escalated = await probe.wait_for(
        lambda _: len(probe.of_type("ticket.escalated")) >= 15, timeout=30,
        what="every ticket escalated")
    raw = Counter((e.payload["clock_id"], e.type, e.payload.get("threshold_percent"))
                  for e in firings(probe))
    assert len(raw) == 15 * 3
    assert set(raw.values()) == {1}, [k for k, n in raw.items() if n > 1]
    assert Counter(e.ticket_id for e in escalated if e.type == "ticket.escalated") == Counter(
        tickets)


async def test_sla_stopped_then_restarted_emits_what_fell_due_meanwhile_once(
    system: System, probe: BusProbe
) -> None:
    await system.start("intake")
    await system.start("routing")
    sla_process = await system.start("sla", **FAST)
    async with system.client("sla") as sla:
        await shorten_l1(sla, 30)
        tickets = [t["id"] for t in await post_tickets(system, 5)]

        async def all_due_times() -> list[datetime] | None:
            due = []
            for tid in tickets:
                response = await sla.get(f"/tickets/{tid}/sla")
                if response.status_code != 200:
                    return None
                boxes = [c for c in response.json()["clocks"]
                         if c["metric"] == "level_time_box" and c["due_at"]]
                if not boxes:
                    return None
                due.append(datetime.fromisoformat(boxes[0]["due_at"]))
            return due

        due_times = await eventually(all_due_times, what="every L1 clock started")
    sla_process.stop()
    stopped_at = utc_now()
    assert firings(probe) == []  # a 30 s time box: nothing was due before the stop

    async def a_minute_down_and_everything_overdue() -> bool:
        # The point is downtime: a minute of it, during which every warning and breach falls due.
        now = utc_now()
        return (now - stopped_at).total_seconds() >= 60 and now > max(due_times)

    await eventually(a_minute_down_and_everything_overdue, timeout=90, interval=0.5,
                     what="a minute down, every due time passed")
    assert firings(probe) == []
    sla_process.start()
    await sla_process.wait_ready()
    await probe.wait_for(lambda _: len(expected_ids(firings(probe))) == 5 * 3, timeout=30,
                         what="every warning and breach after the restart")
    per_firing = expected_ids(firings(probe))
    assert all(len(ids) == 1 for ids in per_firing.values())


async def test_clocks_follow_the_conversation_first_response_met_pause_while_waiting(
    system: System, probe: BusProbe
) -> None:
    """Intake's messages and statuses drive SLA's clocks: an agent's public reply meets the
    first response; waiting for the customer pauses resolution; the reply resumes it."""
    sla = await system.start("sla", **FAST)
    await system.start("routing")
    await system.start("intake", SLA_URL=sla.url)
    async with system.channel_client("web") as web:
        ticket = (await web.post("/tickets", json=ticket_body(1))).json()
    number, ticket_id = ticket["number"], ticket["id"]

    async with system.client("sla") as sla_api, system.client("intake") as intake:
        await wait_assigned(intake, number)

        async def clock(metric: str, state: str | None = None) -> dict[str, Any] | None:
            response = await sla_api.get(f"/tickets/{ticket_id}/sla")
            if response.status_code != 200:
                return None
            for c in response.json()["clocks"]:
                if c["metric"] == metric and (state is None or c["state"] == state):
                    return dict(c)
            return None

        await eventually(lambda: clock("first_response", "running"), what="first response")
        note = await intake.post(f"/tickets/{number}/messages", json={
            "author_id": "agent-1", "visibility": "internal", "body": "checking logs"})
        assert note.status_code == 201
        reply = await intake.post(f"/tickets/{number}/messages", json={
            "author_id": "agent-1", "body": "Ciao Giulia, puoi mandarci il log del client?"})
        assert reply.status_code == 201
        met = await eventually(lambda: clock("first_response", "stopped"),
                               what="first response met")
        assert met["met"] is True
        events = await probe.wait_for(lambda evs: any(
            e.type == "sla.met" and e.payload["metric"] == "first_response" for e in evs),
            what="sla.met")
        met_events = [e for e in events if e.type == "sla.met" and e.ticket_id == ticket_id]
        assert len(met_events) == 1  # the internal note before did not count

        waiting = await intake.post(f"/tickets/{number}/status",
                                    json={"status": "waiting_customer"})
        assert waiting.status_code == 200
        paused = await eventually(lambda: clock("resolution", "paused"), what="paused")
        assert paused["due_at"] is None

        async with system.channel_client("email") as mail_door:
            answer = await mail_door.post(
                "/channels/email/messages",
                content=(f"From: {ticket['requester']['email']}\r\nSubject: Re: [{number}]\r\n"
                         "Message-ID: <log-1@example.com>\r\n\r\nEcco il log.").encode())
        assert answer.status_code == 200, answer.text
        resumed = await eventually(lambda: clock("resolution", "running"), what="resumed")
        assert resumed["due_at"] is not None
        assert (await intake.get(f"/tickets/{number}")).json()["status"] == "in_progress"

        # The requester's status page tells the same time limit SLA keeps.
        token = jwt.encode({"sub": number, "aud": "sportello-requester",
                            "exp": utc_now() + timedelta(hours=1)},
                           STATUS_TOKEN_SECRET, algorithm="HS256")
        page = await intake.get(f"/public/tickets/{number}", params={"token": token})
        assert page.status_code == 200, page.text
        assert datetime.fromisoformat(page.json()["time_limit"]) == datetime.fromisoformat(
            resumed["due_at"])
