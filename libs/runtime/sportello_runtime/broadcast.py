"""A replica's own queue on the events exchange: every replica hears every event bound.

The work queue is shared: each event goes to one replica. Some work belongs to every
replica (its consoles' live stream, its own search index), so each binds an exclusive
queue of its own, deleted with its connection. Events published while it was unbound
are not in it: ``on_bound(lost_at)`` runs on every (re)binding, with the wall-clock time the
previous binding was lost (None the first time), so that the owner catches up from its
source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from sportello_contracts import EventEnvelope

log = logging.getLogger(__name__)


class ReplicaQueue:
    def __init__(self, amqp_url: str, exchange: str, keys: Sequence[str],
                 on_event: Callable[[EventEnvelope], Awaitable[None]], *,
                 on_bound: Callable[[float | None], Awaitable[None]] | None = None,
                 prefetch: int = 100, max_length: int = 10_000,
                 retry_interval_s: float = 1.0) -> None:
        self._url = amqp_url
        self._exchange = exchange
        self._keys = tuple(keys)
        self._on_event = on_event
        self._on_bound = on_bound
        self._prefetch = prefetch
        self._max_length = max_length
        self._retry_interval_s = retry_interval_s
        self._connection: AbstractConnection | None = None
        self.bound = asyncio.Event()
        """Set while the queue is bound and consumed."""

    async def run(self) -> None:
        """Bind, consume, and bind again whenever the connection is lost; until cancelled."""
        lost_at: float | None = None
        while True:
            lost = asyncio.Event()
            try:
                await self._open(lost)
                if self._on_bound is not None:
                    await self._on_bound(lost_at)
                await lost.wait()
                log.warning("replica queue on %s lost its connection; binding again",
                            self._exchange)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker is away: try again shortly
                log.warning("replica queue cannot bind to %s (%s); trying again",
                            self._exchange, exc)
            finally:
                if self.bound.is_set():
                    lost_at = time.time()
                await self.close()
            await asyncio.sleep(self._retry_interval_s)

    async def _open(self, lost: asyncio.Event) -> None:
        self._connection = await aio_pika.connect(self._url)
        self._connection.close_callbacks.add(lambda *_: lost.set())
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        exchange = await channel.declare_exchange(
            self._exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True,
                                            arguments={"x-max-length": self._max_length})
        for key in self._keys:
            await queue.bind(exchange, key)
        await queue.consume(self._on_message, no_ack=True)
        self.bound.set()
        log.info("replica queue bound to %s for %s", self._exchange, ", ".join(self._keys))

    async def close(self) -> None:
        self.bound.clear()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = EventEnvelope.from_json(message.body)
        except ValueError:
            return  # the work queues park bad events with the reason; here they are dropped
        try:
            await self._on_event(envelope)
        except Exception:
            log.exception("replica queue handler failed on %s", envelope.type)
