"""Reading a service's dead-letter queue the way an operator would."""

from __future__ import annotations

from typing import Any

import aio_pika

from support.wait import eventually


async def dead_letters(amqp_url: str, queue_name: str, expected: int,
                       timeout: float = 20) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Wait until ``expected`` messages are parked, then take them (acked) off the queue."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)

        async def parked() -> int:
            declared: Any = await channel.declare_queue(queue_name, passive=True)
            count: int = declared.declaration_result.message_count
            return count if count >= expected else 0

        await eventually(parked, timeout=timeout, what=f"{expected} messages in {queue_name}")
        messages = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            messages.append(message)
        return messages
    finally:
        await connection.close()


async def queue_depth(amqp_url: str, queue_name: str) -> int:
    """How many messages wait in the queue now (0 when it was never declared)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        try:
            queue: Any = await channel.declare_queue(queue_name, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return 0
        depth: int = queue.declaration_result.message_count
        return depth
    finally:
        await connection.close()
