"""What SREs see through the gateway: every service's health and the dead-letter queues,
counts and reasons only, never ticket content."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
from fastapi import APIRouter, Depends, Request

from sportello_gateway.api.deps import DeskDep, SettingsDep, guard

ops = APIRouter(tags=["operations"], dependencies=[Depends(guard)])

SERVICES = ("intake", "routing", "sla", "knowledge", "analytics", "gateway")


@ops.get("/api/ops/services")
async def services(desk: DeskDep, request: Request) -> dict[str, Any]:
    """Each deployed service's readiness (broker and database reachable)."""
    names = desk.backends.names
    results = await asyncio.gather(*(desk.backends[n].healthy() for n in names))
    gateway = request.app.state.service
    answer = {name: "ready" if ok else "not_ready" for name, ok in zip(names, results,
                                                                       strict=True)}
    answer["gateway"] = ("ready" if gateway.bus.is_connected and await gateway.store.ping()
                         else "not_ready")
    return {"services": answer}


@ops.get("/api/ops/dead-letters")
async def dead_letters(settings: SettingsDep) -> dict[str, Any]:
    """Messages parked in each service's dead-letter queue (`<namespace>.<service>.dlq`).
    Counts only: SREs see no ticket content. To read, replay or purge them:
    `python -m sportello_runtime.dlq`."""
    counts: dict[str, int | None] = {}
    connection = await aio_pika.connect(settings.amqp_url, timeout=5)
    try:
        for name in SERVICES:
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(f"{settings.bus_namespace}.{name}.dlq",
                                                    passive=True)
                counts[name] = queue.declaration_result.message_count
            except aio_pika.exceptions.AMQPError:
                counts[name] = None  # not deployed (no queue)
            finally:
                with contextlib.suppress(Exception):
                    if not channel.is_closed:
                        await channel.close()
    finally:
        await connection.close()
    return {"dead_letters": counts}
