"""Acks sent together: never one before its message is done, never a ``multiple`` over a
message still running, and always in the order they were decided (the broker closes a
channel that acks a tag twice)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError

from sportello_runtime.acks import Acks


class Channel:
    """What the broker hears: every ack frame, in order; slow to write, like a socket."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bool]] = []
        self.closed = False


class Delivery:
    def __init__(self, channel: Channel, tag: int) -> None:
        self._channel = channel
        self.delivery_tag = tag

    @property
    def channel(self) -> Channel:
        if self._channel.closed:  # as aio-pika does
            raise ChannelInvalidStateError
        return self._channel

    async def ack(self, multiple: bool = False) -> None:
        channel = self.channel
        await asyncio.sleep(0)  # the writer's turn comes later
        channel.frames.append((self.delivery_tag, multiple))


def delivered(channel: Channel, *tags: int) -> list[AbstractIncomingMessage]:
    return [cast(AbstractIncomingMessage, Delivery(channel, tag)) for tag in tags]


def acked(channel: Channel) -> set[int]:
    """The tags the broker counts as acknowledged after these frames."""
    done: set[int] = set()
    for tag, multiple in channel.frames:
        assert multiple or tag not in done, f"tag {tag} acked twice: {channel.frames}"
        done |= set(range(1, tag + 1)) if multiple else {tag}
    return done


async def test_messages_finished_together_are_acked_in_one_frame() -> None:
    channel, acks = Channel(), Acks(linger_s=60)
    messages = delivered(channel, 1, 2, 3)
    for message in messages:
        acks.taken(message)
    for message in messages:
        acks.finished(message)
    assert channel.frames == []  # nothing before the linger (or a flush)
    await acks.drained()
    assert channel.frames == [(3, True)]


async def test_a_message_still_running_is_never_covered_nor_holds_back_the_others() -> None:
    channel, acks = Channel(), Acks(linger_s=60)
    first, second, third = delivered(channel, 1, 2, 3)
    for message in (first, second, third):
        acks.taken(message)
    acks.finished(second)
    acks.finished(third)
    await acks.drained()
    assert acked(channel) == {2, 3}
    assert all(not multiple for _, multiple in channel.frames)
    acks.finished(first)
    await acks.drained()
    assert acked(channel) == {1, 2, 3}


async def test_batches_are_written_in_the_order_they_were_made() -> None:
    """A single ack written after a ``multiple`` that covers it would name a tag the broker
    no longer knows: each batch waits for the one before."""
    channel, acks = Channel(), Acks(linger_s=60)
    messages = delivered(channel, *range(1, 10))
    for message in messages:
        acks.taken(message)
    for tag in (1, 2, 3, 4, 5, 8):  # 6 and 7 still running: 8 goes alone
        acks.finished(messages[tag - 1])
    acks.flush()
    for tag in (6, 7, 9):
        acks.finished(messages[tag - 1])
    acks.flush()
    await acks.drained()
    assert channel.frames == [(5, True), (8, False), (9, True)]
    assert acked(channel) == set(range(1, 10))


async def test_a_requeued_message_is_no_longer_waited_for() -> None:
    channel, acks = Channel(), Acks(linger_s=60)
    requeued, done = delivered(channel, 1, 2)
    acks.taken(requeued)
    acks.taken(done)
    acks.forget(requeued)  # nacked: the broker has it back
    acks.finished(done)
    await acks.drained()
    assert channel.frames == [(2, False)]


async def test_after_a_reconnect_the_old_channels_messages_are_not_counted() -> None:
    old, new, acks = Channel(), Channel(), Acks(linger_s=60)
    (stale,) = delivered(old, 1)
    acks.taken(stale)
    old.closed = True
    (fresh,) = delivered(new, 1)  # tags start again on the new channel
    acks.taken(fresh)
    acks.finished(stale)  # its channel is closed: nothing to send, the message comes again
    acks.finished(fresh)
    await acks.drained()
    assert old.frames == []
    assert new.frames == [(1, False)]


async def test_without_a_linger_each_ack_goes_at_once() -> None:
    channel, acks = Channel(), Acks(linger_s=0)
    messages: list[Any] = delivered(channel, 1, 2)
    for message in messages:
        acks.taken(message)
    acks.finished(messages[0])
    await asyncio.sleep(0.01)
    assert channel.frames == [(1, False)]
    acks.finished(messages[1])
    await acks.drained()
    assert acked(channel) == {1, 2}


async def test_half_a_prefetch_window_finished_goes_without_waiting_for_the_linger() -> None:
    """The broker sends no more than the prefetch window unacknowledged: finished
    messages held for the linger would stall the consumer in a burst."""
    channel, acks = Channel(), Acks(linger_s=60, flush_at=3)
    messages: list[Any] = delivered(channel, 1, 2, 3, 4)
    for message in messages:
        acks.taken(message)
    acks.finished(messages[0])
    acks.finished(messages[1])
    await asyncio.sleep(0.01)
    assert channel.frames == []  # two of three: they linger
    acks.finished(messages[2])
    await asyncio.sleep(0.01)
    assert channel.frames == [(3, True)]  # the third: all three go, 60 s early
    acks.finished(messages[3])
    await asyncio.sleep(0.01)
    assert channel.frames == [(3, True)]  # a new batch lingers again
    await acks.drained()
    assert acked(channel) == {1, 2, 3, 4}


async def test_a_message_whose_channel_closed_meanwhile_is_left_to_come_again() -> None:
    channel, acks = Channel(), Acks(linger_s=60)
    first, second = delivered(channel, 1, 2)
    acks.taken(first)
    acks.taken(second)
    acks.finished(first)
    channel.closed = True
    acks.finished(second)  # no error: the broker delivers both again on a new channel
    await acks.drained()  # the batch's ack fails quietly with the channel
    assert channel.frames == []
