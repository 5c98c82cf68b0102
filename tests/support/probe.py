"""A test's own window on the bus: an exclusive queue that records events, and a publisher."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from sportello_contracts import EventEnvelope
from support.wait import eventually


class BusProbe:
    def __init__(self, amqp_url: str, namespace: str, routing_keys: Sequence[str] = ("#",)) -> None:
        self.amqp_url = amqp_url
        self.exchange_name = f"{namespace}.events"
        self.routing_keys = routing_keys
        self.events: list[EventEnvelope] = []
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def __aenter__(self) -> BusProbe:
        self._connection = await aio_pika.connect_robust(self.amqp_url)
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in self.routing_keys:
            await queue.bind(self._exchange, key)
        await queue.consume(self._record, no_ack=True)
        return self

    async def __aexit__(self, *_: Any) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _record(self, message: AbstractIncomingMessage) -> None:
        self.events.append(EventEnvelope.from_json(message.body))

    def of_type(self, event_type: str, ticket_id: str | None = None) -> list[EventEnvelope]:
        return [
            e for e in self.events
            if e.type == event_type and (ticket_id is None or e.ticket_id == ticket_id)
        ]

    async def wait_for(
        self, predicate: Callable[[list[EventEnvelope]], bool], timeout: float = 20, what: str = ""
    ) -> list[EventEnvelope]:
        async def check() -> list[EventEnvelope] | None:
            return self.events if predicate(self.events) else None

        return await eventually(check, timeout=timeout, what=what or "expected events")

    async def publish(self, envelope: EventEnvelope) -> None:
        await self.publish_raw(envelope.to_json(), envelope.type)

    async def publish_raw(self, body: bytes, routing_key: str) -> None:
        assert self._exchange is not None
        await self._exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=routing_key,
        )
