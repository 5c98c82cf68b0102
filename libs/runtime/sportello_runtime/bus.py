"""The event bus on RabbitMQ (aio-pika).

Topology, per service, under a namespace (default ``sportello``)::

    {ns}.events                topic exchange, durable; routing key = event type
    {ns}.{service}             quorum queue bound to the types the service handles;
                               x-delivery-limit dead-letters messages that keep
                               crashing the consumer into the DLQ (at-least-once)
    {ns}.{service}.retry.Nms   classic TTL queues; expired messages go back to
                               {ns}.{service} through the default exchange
    {ns}.{service}.dlq         quorum queue of parked messages, with the reason
                               in the headers

A handler's exception sends the message to the next retry tier; after
``max_attempts`` it is parked in the DLQ, unless the failure was the database, or a
dependency the handler names (``DependencyAway``), not answering: an outage is no fault
of the message, so it stays on the last tier, tried again at that pace until it is back.
A message that can never succeed (bad JSON, a type no contract names, payload failing
validation, ``PermanentFailure``) is parked at once. Messages are acked only after the
handler's write and the dedupe record, so a crash means redelivery, never loss.

Replicas of two versions share a queue during a rolling upgrade, so a replica
never removes a binding it merely does not know (the other version may need it)
and retries, rather than parks, an event another version handles. Only a type
the service ``unsubscribe``-s is unbound, and copies still queued are acked as
ignored.

Tracing: a publish is a PRODUCER span whose context travels in the message's
``traceparent`` header; the handler's span is the CONSUMER span under it. The bus
does this itself rather than through the contrib aio-pika instrumentation, which
added a third span per hop and 0.1-0.35 ms of CPU per event in wrappers and copies
of the message properties (``bench/bus_bench.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from pamqp.commands import Basic
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from sportello_contracts import EVENT_PAYLOADS, EventEnvelope, UnknownEventType, utc_now
from sportello_runtime.acks import Acks
from sportello_runtime.logs import log_context
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.store import ProcessedEvents

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """What a handler made of an event, as counted in ``events_consumed_total``."""

    OK = "ok"
    DUPLICATE = "duplicate"
    """A copy of an event already handled (only idempotent handlers say so themselves)."""
    IGNORED = "ignored"
    """Refused by the subscription's ``wants``, or of a type the service unsubscribed:
    nothing to do for this service."""


Handler = Callable[[EventEnvelope], Awaitable[Outcome | None]]


@dataclass(frozen=True)
class Subscription:
    """How a service takes one event type: by default every event is checked against, and
    then added to, the consumer's dedupe records (two database round trips per event)."""

    handler: Handler
    idempotent: bool = False
    """The handler's own write already ignores a second copy (a unique key, a sequence
    number kept in the aggregate) and returns ``Outcome.DUPLICATE`` for it: the dedupe
    records would only repeat that check."""
    wants: Callable[[EventEnvelope], bool] | None = None
    """A test on the event alone, never on stored state: events it refuses are acked as
    ``ignored`` with no dedupe, e.g. status changes a service does not act on."""

ATTEMPT_HEADER = "x-sportello-attempt"
REASON_HEADER = "x-sportello-reason"
ERROR_HEADER = "x-sportello-error"
ROUTING_KEY_HEADER = "x-sportello-original-routing-key"
"""Retries come back through the default exchange, so the event's own key travels here."""
MAX_HEADER_CHARS = 2_000


class PermanentFailure(Exception):
    """Raised by a handler for a message that no retry can fix: parked in the DLQ at once."""


class BusNotConnected(RuntimeError):
    pass


class NoHandlerHere(Exception):
    """A known event type this replica has no handler for: another version sharing the
    queue during a rolling upgrade may have one, so it is retried like a failure."""


@dataclass(frozen=True)
class Topology:
    namespace: str
    service: str
    retry_delays_ms: tuple[int, ...]
    delivery_limit: int

    @property
    def exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def work_queue(self) -> str:
        return f"{self.namespace}.{self.service}"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.{self.service}.dlq"

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.namespace}.{self.service}.retry.{delay_ms}ms"

    def retry_queue_for(self, attempt: int) -> str:
        """Attempt 1 failed -> first tier; later attempts climb the tiers and stay on the last."""
        index = min(max(attempt, 1), len(self.retry_delays_ms)) - 1
        return self.retry_queue(self.retry_delays_ms[index])

    def queue_names(self) -> list[str]:
        return [
            self.work_queue,
            self.dead_letter_queue,
            *(self.retry_queue(d) for d in self.retry_delays_ms),
        ]


class DependencyAway(Exception):
    """What the handler needs (a mail relay, a chat platform) is unreachable or asks to be
    tried later: no fault of the event, so it is retried as a database outage is."""


OUTAGES: tuple[type[Exception], ...] = (ConnectionFailure, DependencyAway)
"""Failures of what the handler depends on, not of the event: retried without a limit
(pymongo's ``ConnectionFailure`` covers an unreachable server, a timeout and a failover)."""


class EventBus:
    """One robust connection per process: a confirming publish channel and a consume channel."""

    def __init__(
        self,
        *,
        amqp_url: str,
        topology: Topology,
        metrics: ServiceMetrics,
        processed: ProcessedEvents | None,
        prefetch: int = 32,
        ack_linger_s: float = 0.0,
        max_attempts: int = 6,
        publish_timeout_s: float = 30.0,
        reconnect_interval_s: float = 1.0,
    ) -> None:
        self.topology = topology
        self._url = amqp_url
        self._metrics = metrics
        self._processed = processed
        self._prefetch = prefetch
        self._acks = Acks(ack_linger_s, flush_at=max(1, prefetch // 2))
        self._max_attempts = max_attempts
        self._publish_timeout = publish_timeout_s
        self._reconnect_interval = reconnect_interval_s
        self._handlers: dict[str, Subscription] = {}
        self._unsubscribed: set[str] = set()
        self._tracer = trace.get_tracer("sportello.bus")

        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None
        self._consume_channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._default_exchange: AbstractExchange | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._want_consuming = False
        self._in_flight = 0
        self._working: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._connected_listeners: list[Callable[[], None]] = []

    # -- wiring ---------------------------------------------------------------

    def subscribe(self, event_type: str, handler: Handler | Subscription) -> None:
        if event_type in self._handlers:
            raise ValueError(f"{event_type} already has a handler in {self.topology.service}")
        if not isinstance(handler, Subscription):
            handler = Subscription(handler)
        if event_type in self._unsubscribed:
            raise ValueError(f"{event_type} is unsubscribed in {self.topology.service}")
        self._handlers[event_type] = handler

    def unsubscribe(self, event_type: str) -> None:
        """Stop receiving ``event_type``, which an earlier version (or another
        configuration) of this service handled: its binding is removed on start. Removing
        every binding the code does not know instead would cut a newer replica's during a
        rolling upgrade, and an event with no binding is dropped by the exchange."""
        if event_type in self._handlers:
            raise ValueError(f"{event_type} has a handler in {self.topology.service}")
        self._unsubscribed.add(event_type)

    def on_connected(self, listener: Callable[[], None]) -> None:
        """Called after the first connection and after every reconnection."""
        self._connected_listeners.append(listener)

    @property
    def is_connected(self) -> bool:
        connection = self._connection
        return (
            connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
            and self._exchange is not None
        )

    # -- lifecycle ------------------------------------------------------------

    def start(self, *, consume: bool = True) -> None:
        """Connect in the background: the service starts (and accepts work) with the broker down."""
        self._want_consuming = consume and bool(self._handlers)
        if self._connect_task is None:
            self._connect_task = asyncio.create_task(self._connect_forever(), name="bus-connect")

    async def wait_connected(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.is_connected:
            if time.monotonic() > deadline:
                raise BusNotConnected(f"not connected to the broker after {timeout_s}s")
            await asyncio.sleep(0.05)

    async def _connect_forever(self) -> None:
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.2, max=self._reconnect_interval * 5),
            retry=retry_if_exception_type((OSError, aio_pika.exceptions.AMQPError)),
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    log.warning("broker unreachable, retrying (attempt %s)",
                                attempt.retry_state.attempt_number)
                await self._connect()

    async def _connect(self) -> None:
        connection = await aio_pika.connect_robust(
            self._url,
            reconnect_interval=self._reconnect_interval,
            client_properties={"connection_name": self.topology.service},
        )
        try:
            publish_channel = await connection.channel(publisher_confirms=True)
            consume_channel = await connection.channel()
            await consume_channel.set_qos(prefetch_count=self._prefetch)
            exchange = await publish_channel.declare_exchange(
                self.topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await self._declare_queues(consume_channel)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._publish_channel = publish_channel
        self._consume_channel = consume_channel
        self._exchange = exchange
        self._default_exchange = publish_channel.default_exchange
        self._queue = queue
        connection.reconnect_callbacks.add(self._notify_connected)
        if self._want_consuming and queue is not None:
            self._consumer_tag = await queue.consume(self._on_message)
        log.info("connected to the broker; consuming=%s", self._consumer_tag is not None)
        self._notify_connected()

    def _notify_connected(self, *_: Any) -> None:
        for listener in self._connected_listeners:
            try:
                listener()
            except Exception:
                log.exception("connected listener failed")

    async def _declare_queues(self, channel: AbstractRobustChannel) -> AbstractQueue | None:
        if not self._handlers:
            return None
        t = self.topology
        await channel.declare_exchange(t.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.declare_queue(
            t.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        queue = await channel.declare_queue(
            t.work_queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": t.delivery_limit,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": t.dead_letter_queue,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        for delay in t.retry_delays_ms:
            await channel.declare_queue(
                t.retry_queue(delay),
                durable=True,
                arguments={
                    "x-message-ttl": delay,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": t.work_queue,
                },
            )
        for event_type in sorted(self._handlers):
            await queue.bind(t.exchange, routing_key=event_type)
        for event_type in sorted(self._unsubscribed):
            await queue.unbind(t.exchange, routing_key=event_type)
        return queue

    async def stop_consuming(self, grace_s: float) -> None:
        """Stop taking messages and let the in-flight handlers finish (graceful shutdown)."""
        self._want_consuming = False
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await asyncio.wait_for(self._queue.cancel(self._consumer_tag), timeout=2)
            except Exception:
                log.warning("could not cancel the consumer cleanly", exc_info=True)
            self._consumer_tag = None
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=grace_s)
        except TimeoutError:
            log.warning("%s handlers still running after %ss", self._in_flight, grace_s)
        await self._settled()

    async def _settled(self) -> None:
        """The acks of what finished are written before the channel closes."""
        try:
            await asyncio.wait_for(self._acks.drained(), timeout=2)
        except TimeoutError:
            log.warning("acks not written in time: those messages come again")

    async def close(self) -> None:
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
            await asyncio.gather(self._connect_task, return_exceptions=True)
        if self._connection is not None:
            await self._settled()
            await self._connection.close()
        self._connection = None
        self._exchange = None

    # -- publishing -------------------------------------------------------------

    async def publish(self, envelope: EventEnvelope) -> None:
        """Publish with a broker confirm; raises when the broker did not take it."""
        exchange = self._exchange
        if exchange is None or not self.is_connected:
            self._metrics.events_published.labels(envelope.type, "failed").inc()
            raise BusNotConnected("not connected to the broker")
        event_id = str(envelope.event_id)
        # Under the current context: the request's, or the one the outbox stored with
        # the change that caused the event.
        span = self._tracer.start_span(
            f"publish {envelope.type}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "send",
                "messaging.destination.name": self.topology.exchange,
                "messaging.rabbitmq.destination.routing_key": envelope.type,
                "messaging.message.id": event_id,
                "sportello.ticket_id": envelope.ticket_id or "",
            },
        )
        headers: dict[str, Any] = {}
        propagate.inject(headers, context=trace.set_span_in_context(span))
        message = aio_pika.Message(
            envelope.to_json(),
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
            message_id=event_id,
            correlation_id=envelope.correlation_id,
            type=envelope.type,
            app_id=envelope.producer,
            timestamp=envelope.occurred_at,
        )
        try:
            # asyncio.timeout, not wait_for: no extra task per publish on this hot path.
            async with asyncio.timeout(self._publish_timeout):
                confirmation = await exchange.publish(
                    message, routing_key=envelope.type, mandatory=False)
            if not isinstance(confirmation, Basic.Ack):
                raise BusNotConnected(f"broker did not confirm {envelope.type}: {confirmation!r}")
        except (aio_pika.exceptions.AMQPError, aio_pika.exceptions.ChannelInvalidStateError,
                ConnectionError) as exc:
            # The connection or channel went away while the confirm was awaited: aiormq
            # fails pending confirms at once, and for the caller that is "not connected".
            self._metrics.events_published.labels(envelope.type, "failed").inc()
            span.set_status(Status(StatusCode.ERROR, "lost the broker"))
            raise BusNotConnected(f"lost the broker while publishing {envelope.type}: "
                                  f"{exc!r}") from exc
        except BaseException as exc:
            self._metrics.events_published.labels(envelope.type, "failed").inc()
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()
        self._metrics.events_published.labels(envelope.type, "ok").inc()

    async def _publish_to_queue(self, queue_name: str, message: aio_pika.Message) -> None:
        exchange = self._default_exchange
        if exchange is None:
            raise BusNotConnected("not connected to the broker")
        confirmation = await asyncio.wait_for(
            exchange.publish(message, routing_key=queue_name, mandatory=True),
            timeout=self._publish_timeout,
        )
        if not isinstance(confirmation, Basic.Ack):
            raise BusNotConnected(f"{queue_name} did not take the message: {confirmation!r}")

    # -- consuming --------------------------------------------------------------

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        """Handle the message in a task of its own, shielded from the consumer's: a channel
        closing under the consumer cancels its callbacks, and a handler cut between two
        of its writes (a notice claimed and not yet sent, or sent and not yet recorded)
        leaves what no redelivery can mend. Run to its end instead, its ack fails with
        the channel, and the message comes again to find the work done."""
        self._acks.taken(message)
        self._in_flight += 1
        self._idle.clear()
        work = asyncio.create_task(self._process(message))
        self._working.add(work)
        work.add_done_callback(self._finished)
        await asyncio.shield(work)

    def _finished(self, work: asyncio.Task[None]) -> None:
        self._working.discard(work)
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()
        if not work.cancelled() and work.exception() is not None:
            # Also raised to the consumer, unless the channel's close cancelled it: then
            # the message is not settled and comes again, which is all there is to say.
            log.debug("message not settled: %s", work.exception())

    async def _process(self, message: AbstractIncomingMessage) -> None:
        routing_key = message.routing_key or "unknown"
        try:
            envelope = EventEnvelope.from_json(message.body)
            subscription = self._handlers.get(envelope.type)
            if subscription is None and envelope.type not in EVENT_PAYLOADS:
                raise UnknownEventType(
                    f"{self.topology.service} has no handler for {envelope.type!r}"
                )
            wanted = subscription is not None and (
                subscription.wants is None or subscription.wants(envelope))
        except (ValidationError, UnknownEventType, ValueError) as exc:
            # No handler span to fail: the trace still shows where the event ended.
            with self._tracer.start_as_current_span(
                f"park {routing_key}",
                context=propagate.extract(message.headers or {}),
                kind=SpanKind.CONSUMER,
                attributes={"messaging.system": "rabbitmq",
                            "messaging.destination.name": self.topology.work_queue,
                            "sportello.service": self.topology.service},
            ) as span:
                _failed(span, exc)
                await self._park(message, routing_key, f"invalid event: {_describe(exc)}", exc)
            return

        if subscription is None:
            if envelope.type in self._unsubscribed:
                self._acks.finished(message)
                self._metrics.events_consumed.labels(envelope.type, Outcome.IGNORED.value).inc()
            else:
                await self._retry_or_park(message, envelope.type, NoHandlerHere(
                    f"{self.topology.service} has no handler for {envelope.type!r} "
                    "in this version"))
            return
        if not wanted:
            self._acks.finished(message)
            self._metrics.events_consumed.labels(envelope.type, Outcome.IGNORED.value).inc()
            return
        dedupe = None if subscription.idempotent else self._processed
        event_id = str(envelope.event_id)
        with (
            log_context(
                ticket_id=envelope.ticket_id,
                event_id=event_id,
                correlation_id=envelope.correlation_id,
            ),
            self._tracer.start_as_current_span(
                f"handle {envelope.type}",
                # A child of the publish span, whose context came in the headers.
                context=propagate.extract(message.headers or {}),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "rabbitmq",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": self.topology.work_queue,
                    "messaging.message.id": event_id,
                    "sportello.service": self.topology.service,
                    "sportello.event_type": envelope.type,
                    "sportello.event_id": event_id,
                    "sportello.ticket_id": envelope.ticket_id or "",
                },
            ) as span,
        ):
            started = time.perf_counter()
            try:
                if dedupe is not None and await dedupe.seen(self.topology.service, event_id):
                    outcome: Outcome | None = Outcome.DUPLICATE
                else:
                    outcome = await subscription.handler(envelope)
                    if dedupe is not None:
                        await dedupe.remember(self.topology.service, event_id)
            except (PermanentFailure, ValidationError, UnknownEventType) as exc:
                _failed(span, exc)
                await self._park(message, envelope.type, _describe(exc), exc)
                return
            except Exception as exc:
                _failed(span, exc)
                await self._retry_or_park(message, envelope.type, exc)
                return
            finally:
                self._metrics.handler_duration.labels(envelope.type).observe(
                    time.perf_counter() - started
                )
            self._acks.finished(message)
            outcome = outcome or Outcome.OK
            self._metrics.events_consumed.labels(envelope.type, outcome.value).inc()
            # At DEBUG: a ticket's journey is a dozen deliveries, each counted in
            # events_consumed_total and traced; an INFO line for each cost the services a
            # tenth of their CPU (issue 14). Handlers log what they did that matters.
            if outcome is Outcome.DUPLICATE:
                log.debug("duplicate %s ignored", envelope.type)
            else:
                log.debug("handled %s", envelope.type)

    async def _retry_or_park(
        self, message: AbstractIncomingMessage, event_type: str, exc: Exception
    ) -> None:
        attempt = _attempt_of(message) + 1
        if attempt >= self._max_attempts and not isinstance(exc, OUTAGES):
            await self._park(
                message, event_type, f"failed {attempt} times, last: {_describe(exc)}", exc
            )
            return
        retry_queue = self.topology.retry_queue_for(attempt)
        log.warning("%s failed (attempt %s), retrying via %s: %s",
                    event_type, attempt, retry_queue, _describe(exc))
        headers = dict(message.headers or {})
        headers[ATTEMPT_HEADER] = attempt
        headers[ERROR_HEADER] = _describe(exc)
        headers.setdefault(ROUTING_KEY_HEADER, message.routing_key or "")
        await self._forward(message, retry_queue, headers, event_type, "retried")

    async def _park(
        self,
        message: AbstractIncomingMessage,
        event_type: str,
        reason: str,
        exc: BaseException | None,
    ) -> None:
        log.error("%s parked in %s: %s", event_type, self.topology.dead_letter_queue, reason)
        headers = dict(message.headers or {})
        headers.update(
            {
                REASON_HEADER: reason[:MAX_HEADER_CHARS],
                ATTEMPT_HEADER: _attempt_of(message) + 1,
                "x-sportello-consumer": self.topology.service,
                "x-sportello-failed-at": utc_now().isoformat(),
            }
        )
        headers.setdefault(ROUTING_KEY_HEADER, message.routing_key or "")
        if exc is not None:
            headers[ERROR_HEADER] = "".join(
                traceback.format_exception_only(type(exc), exc)
            )[-MAX_HEADER_CHARS:]
        await self._forward(
            message, self.topology.dead_letter_queue, headers, event_type, "dead_lettered"
        )

    async def _forward(
        self,
        message: AbstractIncomingMessage,
        queue_name: str,
        headers: dict[str, Any],
        event_type: str,
        outcome: str,
    ) -> None:
        """Copy to another queue, then ack: a crash in between means a duplicate, not a loss."""
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type=message.content_type,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            app_id=message.app_id,
            timestamp=message.timestamp,
        )
        try:
            await self._publish_to_queue(queue_name, copy)
        except Exception:
            log.exception("could not move %s to %s; requeueing", event_type, queue_name)
            await message.nack(requeue=True)
            self._acks.forget(message)  # after the nack is written: no ack batch covers it
            return
        self._acks.finished(message)
        self._metrics.events_consumed.labels(event_type, outcome).inc()


def _failed(span: Span, exc: BaseException) -> None:
    """The handler's exception is caught (to retry or park), so the span is told here."""
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, _describe(exc)))


def _attempt_of(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(ATTEMPT_HEADER, 0)
    return value if isinstance(value, int) else 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors()[:10]
        )
        return f"validation failed: {problems}"[:MAX_HEADER_CHARS]
    return f"{type(exc).__name__}: {exc}"[:MAX_HEADER_CHARS]
