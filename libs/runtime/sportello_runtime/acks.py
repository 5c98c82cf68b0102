"""Acknowledgements of one consume channel, sent together.

A ticket's journey is a dozen deliveries, and each ack was a frame, a write to the socket
and, on a quorum queue, an entry in the broker's log of its own. Messages that finish
within ``linger_s`` of each other are acknowledged at once: the finished ones below the
oldest message still running in one ``multiple`` ack, the others one by one (a slow
handler never holds back the acks of the messages after it), and at once when half the
prefetch window is finished and waiting (a burst never stalls on them). Nothing is acknowledged
before its handler is done, so a crash costs at most a redelivery of what finished in the
last ``linger_s``, which at-least-once delivery allows for.

Delivery tags count per channel: after a reconnect the old channel's messages cannot be
acknowledged any more (they come again), so the state starts over with the new channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError

log = logging.getLogger(__name__)


class Acks:
    def __init__(self, linger_s: float, *, flush_at: int | None = None) -> None:
        """``flush_at``: this many finished messages go at once, lingering or not. The
        broker counts an unacknowledged message against the prefetch window, finished or
        not: a linger that held half of it would stall the consumer in a burst."""
        self._linger_s = linger_s
        self._flush_at = flush_at
        self._channel: Any = None
        self._running: set[int] = set()
        """Tags taken on the channel and not finished."""
        self._finished: dict[int, AbstractIncomingMessage] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._last: asyncio.Future[None] | None = None
        """The latest batch being written: the next one waits for it, so that frames go
        out in the order the batches were made (a single ack after the ``multiple`` that
        covers it would name an unknown tag, and the broker closes the channel)."""

    def taken(self, message: AbstractIncomingMessage) -> None:
        """Called as a message arrives, before its handler runs (tags arrive in order)."""
        channel = _channel_of(message)
        if channel is not self._channel:
            self._start_over(channel)
        self._running.add(message.delivery_tag or 0)

    def finished(self, message: AbstractIncomingMessage) -> None:
        """The message is done with: acknowledge it with the next batch."""
        channel = _channel_of(message)
        if channel is None or channel is not self._channel:
            return  # its channel closed: it cannot be acknowledged, and comes again
        tag = message.delivery_tag or 0
        self._running.discard(tag)
        self._finished[tag] = message
        if self._linger_s <= 0 or (self._flush_at is not None
                                   and len(self._finished) >= self._flush_at):
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self.flush)

    def forget(self, message: AbstractIncomingMessage) -> None:
        """Settled otherwise (requeued): no longer waited for."""
        if _channel_of(message) is self._channel:
            self._running.discard(message.delivery_tag or 0)

    def flush(self) -> None:
        """Send what finished: one ``multiple`` ack up to the oldest message still running,
        single acks above it. Written in order, one flush after the other."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._finished:
            return
        oldest_running = min(self._running, default=None)
        below = sorted(t for t in self._finished
                       if oldest_running is None or t < oldest_running)
        acks = [(self._finished[below[-1]], len(below) > 1)] if below else []
        acks += [(self._finished[t], False) for t in sorted(self._finished) if t not in below]
        self._finished.clear()
        self._send_soon(acks)

    async def drained(self) -> None:
        """Every ack finished so far is written (graceful shutdown)."""
        self.flush()
        if self._last is not None:
            await asyncio.gather(self._last, return_exceptions=True)

    def _start_over(self, channel: Any) -> None:
        self.flush()  # the old channel's: they fail if it is closed, and come again
        self._channel = channel
        self._running.clear()

    def _send_soon(self, acks: list[tuple[AbstractIncomingMessage, bool]]) -> None:
        self._last = asyncio.ensure_future(self._send(self._last, acks))

    @staticmethod
    async def _send(previous: asyncio.Future[None] | None,
                    acks: list[tuple[AbstractIncomingMessage, bool]]) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        for message, multiple in acks:
            try:
                await message.ack(multiple=multiple)
            except Exception as exc:  # the channel closed: the messages come again
                log.debug("ack not sent: %s", exc)
                return


def _channel_of(message: AbstractIncomingMessage) -> Any:
    """The channel the message came on; ``None`` once it is closed (aio-pika refuses to
    name a closed one)."""
    try:
        return message.channel
    except ChannelInvalidStateError:
        return None
