"""Intake's admission through real processes: more offered than the desk assigns in its
target wait, the channel doors refuse at once (503 with Retry-After, SMTP 451 before the
message is sent), take again by themselves once the flood stops, and every ticket they
took is assigned. The rule's arithmetic is unit-tested in
``services/intake/tests/test_admission.py``; the figures under a real overload come from
``bench/overload_bench.py``."""

from __future__ import annotations

import asyncio
import smtplib

import httpx
import pytest

from support.metrics import metric
from support.system import System
from support.tickets import count_tickets, ticket_body, wait_assigned
from support.wait import eventually

pytestmark = pytest.mark.e2e


def mail_from_answer(port: int) -> tuple[int, str]:
    """The listener's answer to MAIL FROM: the sender is told before it sends anything."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo()
        code, text = smtp.mail("relay@example.org")
        return code, text.decode(errors="replace")


async def test_a_flood_is_refused_at_the_doors_then_taken_again_and_nothing_taken_is_lost(
    system: System,
) -> None:
    """A target of 5 ms makes the ordinary wait for routing the overload: bursts of
    tickets posted at once are offered faster than they are assigned, and the shortest
    wait of a burst is over the target (at 50 ms, a clean-clone run on a fast minute, with
    the pipeline a little cheaper, assigned bursts of 40 inside it for 90 s and was never
    refused). Taking again needs no target met: an interval that assigns what it was
    offered takes everything. Protections: the
    admission's quota (without it every post is a 201 and the test never sees a 503), the
    refusal at the door (a 503 without Retry-After, or a 451 after DATA, fail it), and the
    quota recomputed every interval (stuck refusing, no 201 comes after the flood)."""
    await system.start("routing")
    intake = await system.start("intake", ADMISSION_TARGET_S="0.005",
                                ADMISSION_INTERVAL_S="0.5")
    accepted: list[str] = []
    refusals: list[httpx.Response] = []
    mail_refusals: list[tuple[int, str]] = []
    round_number = 0

    async def post(channel: httpx.AsyncClient, n: int) -> None:
        response = await channel.post("/tickets", json=ticket_body(n))
        if response.status_code == 201:
            accepted.append(response.json()["number"])
        else:
            assert response.status_code == 503, response.text
            refusals.append(response)

    async with system.channel_client("web") as channel:

        async def refused_at_both_doors() -> bool:
            nonlocal round_number
            round_number += 1
            await asyncio.gather(*(post(channel, round_number * 100 + n) for n in range(40)))
            code, text = await asyncio.to_thread(mail_from_answer, intake.smtp_port)
            if code != 250:
                mail_refusals.append((code, text))
            return bool(refusals) and bool(mail_refusals)

        await eventually(refused_at_both_doors, timeout=90, interval=0.05,
                         what="a 503 and a 451 while flooded")
        refused = refusals[0]
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"] == "overloaded"
        assert "assigns in time" in refused.json()["message"]
        assert mail_refusals[0][0] == 451
        assert "busy" in mail_refusals[0][1]

        async def taken_again() -> bool:  # one at a time now: the desk keeps up again
            taken = len(accepted)
            await post(channel, 99_999 + len(refusals))
            return len(accepted) > taken

        await eventually(taken_again, timeout=60, what="a ticket taken after the flood")

        async def mail_taken_again() -> bool:  # the quota may still allow one a second
            return (await asyncio.to_thread(mail_from_answer, intake.smtp_port))[0] == 250

        await eventually(mail_taken_again, timeout=60, what="mail taken after the flood")

    async with system.client("intake") as internal:
        for number in accepted:
            await wait_assigned(internal, number, timeout=60)
        assert await metric(internal, "tickets_refused_total") >= len(refusals) + 1
    assert await count_tickets(system) == len(accepted)  # a refusal stored nothing
