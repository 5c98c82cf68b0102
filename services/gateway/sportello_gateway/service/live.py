"""The live stream: events from the bus, to the open consoles that may see them.

Every replica binds its own short-lived queue to the events exchange (a broadcast: each
replica's consoles need every event), apart from the durable work queue that the
replicas share for the queue lines and webhooks. An event goes to a connection only
when its person may see the ticket; a connection that cannot keep up loses updates
and is told to reload, it never slows the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sportello_contracts import EventEnvelope
from sportello_gateway.domain import desk as rules
from sportello_gateway.domain.access import Principal, sees_ticket
from sportello_gateway.service.metrics import GatewayMetrics
from sportello_runtime.broadcast import ReplicaQueue

log = logging.getLogger(__name__)

LIVE_KEYS = ("ticket.#", "sla.#", "kb.#")


@dataclass(eq=False)
class Listener:
    principal: Principal
    queue: asyncio.Queue[dict[str, Any]]
    lost: bool = False


@dataclass
class LiveHub:
    """This replica's open streams."""

    metrics: GatewayMetrics
    queue_size: int = 200
    listeners: set[Listener] = field(default_factory=set)
    watched: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while at least one console is open."""
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while none is."""
    bound: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while this replica's live queue is bound to the exchange."""

    def __post_init__(self) -> None:
        self.idle.set()

    def join(self, principal: Principal) -> Listener:
        listener = Listener(principal, asyncio.Queue(self.queue_size))
        self.listeners.add(listener)
        self.metrics.live_connections.set(len(self.listeners))
        self.idle.clear()
        self.watched.set()
        return listener

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        self.metrics.live_connections.set(len(self.listeners))
        if not self.listeners:
            self.watched.clear()
            self.idle.set()

    def publish(self, update: dict[str, Any], groups: tuple[str | None, ...]) -> int:
        """Hand an update to every stream allowed to see it; how many took it."""
        sent = 0
        for listener in list(self.listeners):
            if not sees_ticket(listener.principal, groups):
                continue
            try:
                listener.queue.put_nowait(update)
                sent += 1
            except asyncio.QueueFull:
                listener.lost = True
                self.metrics.live_dropped.inc()
        return sent


class LiveFeed:
    """This replica's broadcast queue on the bus (``sportello_runtime.broadcast``), feeding
    the hub: bound while consoles are open (and ``idle_s`` after the last one closed), so
    that a replica nobody watches costs the broker and itself nothing per event."""

    def __init__(self, amqp_url: str, exchange: str, hub: LiveHub,
                 line_of: Callable[[str], Awaitable[dict[str, Any] | None]],
                 project: Callable[[EventEnvelope], Awaitable[None]],
                 idle_s: float = 30.0) -> None:
        self._idle_s = idle_s
        self._hub = hub
        self._line_of = line_of
        self._project = project
        self._queue = ReplicaQueue(amqp_url, exchange, LIVE_KEYS, self._on_event)
        hub.bound = self._queue.bound  # the streams say "connected" once it is set

    async def run(self) -> None:
        """Bind when the first console opens, unbind when the last has been gone a while;
        until cancelled."""
        while True:
            await self._hub.watched.wait()
            bound = asyncio.create_task(self._queue.run())
            try:
                while True:
                    await self._hub.idle.wait()
                    try:
                        await asyncio.wait_for(self._hub.watched.wait(), self._idle_s)
                    except TimeoutError:
                        break
            finally:
                bound.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await bound
                await self._queue.close()
            log.info("no console open for %.0f s: live feed unbound", self._idle_s)

    async def close(self) -> None:
        await self._queue.close()

    async def _on_event(self, envelope: EventEnvelope) -> None:
        if not self._hub.listeners:
            return
        # A console told of a change reads its queue at once: the change must be in the
        # queue lines by then. The work queue writes it too (maybe on another replica,
        # maybe later); the write is fenced by the event's version, so twice is harmless.
        await self._project(envelope)
        line = await self._line_of(envelope.ticket_id) if envelope.ticket_id else None
        self._hub.publish(rules.live_summary(envelope, line), rules.event_groups(envelope, line))
