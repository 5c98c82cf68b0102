"""Every service stops within SHUTDOWN_GRACE_S while tickets flow (issue 23, point 8):
a stop that hangs gets the service killed by its supervisor (honcho, Kubernetes) and
loses the chance to finish in-flight work cleanly."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from support.mailsink import MailSink
from support.system import System
from support.tickets import ticket_body
from support.wait import eventually

pytestmark = pytest.mark.e2e

GRACE_S = 3.0
"""Shorter than the tests' usual 5 s, so that a service that needed more would show."""
MARGIN_S = 2.0
"""The interpreter's own exit after the lifespan ends (uvicorn, threads, atexit)."""


async def test_each_service_stops_within_its_grace_while_tickets_flow(system: System) -> None:
    with MailSink() as relay:
        sla = await system.start("sla", SHUTDOWN_GRACE_S=str(GRACE_S))
        await system.start("routing", SHUTDOWN_GRACE_S=str(GRACE_S))
        await system.start("intake", SMTP_RELAY_URL=relay.url, SLA_URL=sla.url,
                           SHUTDOWN_GRACE_S=str(GRACE_S))
        posted = 0
        stop_load = asyncio.Event()

        async def load() -> None:
            nonlocal posted
            async with system.channel_client("web") as web:
                while not stop_load.is_set():
                    await asyncio.gather(*(web.post("/tickets", json=ticket_body(posted + n))
                                           for n in range(8)), return_exceptions=True)
                    posted += 8

        loader = asyncio.create_task(load())
        try:
            took: dict[str, float] = {}
            for name in ("sla", "routing", "intake"):  # intake last: it takes the load
                wanted = 40 * (len(took) + 1)

                async def busy(wanted: int = wanted) -> bool:  # tickets and events flowing
                    return posted >= wanted

                await eventually(busy, what=f"{wanted} tickets posted")
                service = system.services[name]
                started = time.monotonic()
                rc = await asyncio.to_thread(service.stop, GRACE_S + MARGIN_S + 10)
                took[name] = time.monotonic() - started
                assert rc in (0, -signal.SIGTERM), (name, rc, service.log_tail())
                assert f'"message": "{name} stopped"' in service.log_tail(20), name
        finally:
            stop_load.set()
            await loader
    assert all(seconds <= GRACE_S + MARGIN_S for seconds in took.values()), took
