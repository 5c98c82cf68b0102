"""The bus's failure paths against a real RabbitMQ and MongoDB: retry tiers, the DLQ, dedupe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import aio_pika
import pytest
from opentelemetry.trace import SpanKind, StatusCode
from pymongo.errors import AutoReconnect

from sportello_contracts import EventEnvelope, new_event
from sportello_contracts.events import TicketRated, TicketReopened
from sportello_runtime.bus import (
    ATTEMPT_HEADER,
    REASON_HEADER,
    ROUTING_KEY_HEADER,
    BusNotConnected,
    EventBus,
    Outcome,
    Subscription,
    Topology,
)
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.store import MongoStore, ProcessedEvents
from support.dlq import dead_letters
from support.proxy import TcpProxy, through
from support.system import delete_namespace
from support.tracing import in_memory_exporter
from support.wait import eventually

pytestmark = pytest.mark.e2e

DELAYS = (100, 200)


def consumed(metrics: ServiceMetrics, event_type: str, outcome: str) -> float:
    """The bus's ``events_consumed_total`` for this type and outcome, as /metrics shows it."""
    value = metrics.registry.get_sample_value(
        "events_consumed_total", {"type": event_type, "outcome": outcome})
    return value or 0.0


@dataclass
class Harness:
    bus: EventBus
    metrics: ServiceMetrics
    topology: Topology
    amqp_url: str


@pytest.fixture
async def harness(amqp_url: str, mongo_url: str) -> AsyncIterator[Harness]:
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    topology = Topology(namespace, "flaky", DELAYS, delivery_limit=5)
    metrics = ServiceMetrics("flaky")
    store = MongoStore(mongo_url, f"{namespace.replace('-', '_')}_flaky", app_name="test")
    bus = EventBus(
        amqp_url=amqp_url, topology=topology, metrics=metrics,
        processed=ProcessedEvents(store), max_attempts=3, reconnect_interval_s=0.5,
    )
    yield Harness(bus, metrics, topology, amqp_url)
    await bus.close()
    await store.client.drop_database(store.db.name)
    await store.close()
    await _delete_queues(amqp_url, topology)
    await delete_namespace(amqp_url, namespace, [])  # the exchange


async def _delete_queues(amqp_url: str, topology: Topology) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for queue in topology.queue_names():
            await channel.queue_delete(queue)
    finally:
        await connection.close()


def rated(ticket_id: str) -> EventEnvelope:
    return new_event(TicketRated(ticket_id=ticket_id, number="HD-1", score=2),
                     producer="test", correlation_id=ticket_id)


async def publish_raw(harness: Harness, body: bytes, routing_key: str) -> None:
    """Straight to the exchange, whatever the body."""
    connection = await aio_pika.connect(harness.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(harness.topology.exchange)
        await exchange.publish(aio_pika.Message(body), routing_key=routing_key)
    finally:
        await connection.close()


async def publish_under(harness: Harness, envelope: EventEnvelope, routing_key: str) -> None:
    """Straight to the exchange, under a key other than the envelope's type."""
    await publish_raw(harness, envelope.to_json(), routing_key)


async def test_a_handler_that_always_fails_is_retried_then_parked_and_others_flow(
    harness: Harness,
) -> None:
    attempts: list[str] = []
    handled: list[EventEnvelope] = []

    async def printer_on_fire(envelope: EventEnvelope) -> None:
        attempts.append(str(envelope.event_id))
        raise RuntimeError("printer on fire")

    async def works(envelope: EventEnvelope) -> None:
        handled.append(envelope)

    harness.bus.subscribe("ticket.rated", printer_on_fire)
    harness.bus.subscribe("ticket.reopened", works)
    harness.bus.start()
    await harness.bus.wait_connected(10)

    doomed = rated("t-doomed")
    await harness.bus.publish(doomed)
    fine = new_event(TicketReopened(ticket_id="t-fine", number="HD-2"), producer="test",
                     correlation_id="t-fine")
    await harness.bus.publish(fine)

    async def fine_handled() -> bool:
        return any(e.event_id == fine.event_id for e in handled)

    await eventually(fine_handled, what="the healthy event handled")
    parked = await dead_letters(harness.amqp_url, harness.topology.dead_letter_queue, expected=1)
    assert len(parked) == 1
    message = parked[0]
    assert EventEnvelope.from_json(message.body).event_id == doomed.event_id
    assert message.headers[ATTEMPT_HEADER] == 3
    reason = str(message.headers[REASON_HEADER])
    assert "failed 3 times" in reason
    assert "printer on fire" in reason
    assert message.headers[ROUTING_KEY_HEADER] == "ticket.rated"
    assert attempts == [str(doomed.event_id)] * 3

    assert consumed(harness.metrics, "ticket.rated", "retried") == 2
    assert consumed(harness.metrics, "ticket.rated", "dead_lettered") == 1
    assert consumed(harness.metrics, "ticket.reopened", "ok") == 1


async def test_failed_handlers_and_parked_events_show_as_errors_in_the_trace(
    harness: Harness,
) -> None:
    spans = in_memory_exporter()

    async def printer_on_fire(envelope: EventEnvelope) -> None:
        raise RuntimeError("printer on fire")

    harness.bus.subscribe("ticket.rated", printer_on_fire)
    harness.bus.start()
    await harness.bus.wait_connected(10)
    doomed = rated("t-traced")
    await harness.bus.publish(doomed)
    await publish_raw(harness, b"{not json", "ticket.rated")
    await dead_letters(harness.amqp_url, harness.topology.dead_letter_queue, expected=2)

    finished = spans.get_finished_spans()
    publish = next(s for s in finished if s.name == "publish ticket.rated"
                   and (s.attributes or {}).get("messaging.message.id") == str(doomed.event_id))
    handled = [s for s in finished if s.name == "handle ticket.rated"
               and (s.attributes or {}).get("sportello.event_id") == str(doomed.event_id)]
    assert len(handled) == 3  # the first attempt and the two retries
    for attempt in handled:
        assert attempt.kind == SpanKind.CONSUMER
        assert attempt.parent is not None
        assert attempt.parent.span_id == publish.context.span_id  # retries keep the context
        assert attempt.status.status_code == StatusCode.ERROR
        assert "printer on fire" in (attempt.status.description or "")
        assert [e.name for e in attempt.events] == ["exception"]
    parked = [s for s in finished if s.name == "park ticket.rated"
              and (s.attributes or {}).get("sportello.service") == harness.topology.service]
    assert len(parked) == 1
    assert parked[0].status.status_code == StatusCode.ERROR
    assert "JSON" in (parked[0].status.description or "")


async def test_a_handler_that_fails_once_succeeds_on_retry_and_is_not_repeated(
    harness: Harness,
) -> None:
    calls: list[int] = []

    async def flaky(envelope: EventEnvelope) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database hiccup")

    harness.bus.subscribe("ticket.rated", flaky)
    harness.bus.start()
    await harness.bus.wait_connected(10)
    event = rated("t-flaky")
    await harness.bus.publish(event)
    await harness.bus.publish(event)  # and a redelivery of the same event

    async def settled() -> bool:
        return (consumed(harness.metrics, "ticket.rated", "ok")
                + consumed(harness.metrics, "ticket.rated", "duplicate")) == 2

    await eventually(settled, what="first success and the duplicate")
    # One failure, one success; the duplicate was recognised by its event_id and not handled.
    assert len(calls) == 2
    assert consumed(harness.metrics, "ticket.rated", "retried") == 1


async def test_unknown_event_types_are_parked_not_dropped(harness: Harness) -> None:
    async def ignore(_: EventEnvelope) -> None:
        return None

    harness.bus.subscribe("ticket.rated", ignore)
    harness.bus.start()
    await harness.bus.wait_connected(10)
    mislabelled = EventEnvelope(type="ticket.teleported", producer="test", correlation_id="x")

    # Sent with a key the queue is bound to, but an envelope type nobody handles.
    await publish_under(harness, mislabelled, "ticket.rated")
    parked = await dead_letters(harness.amqp_url, harness.topology.dead_letter_queue, expected=1)
    assert "no handler for 'ticket.teleported'" in str(parked[0].headers[REASON_HEADER])


async def test_an_idempotent_handler_keeps_no_dedupe_records_and_reports_its_copies(
    harness: Harness, mongo_url: str,
) -> None:
    """Its own write refuses the copy; the bus counts what the handler says."""
    seen: set[str] = set()

    async def unique_write(envelope: EventEnvelope) -> Outcome:
        if envelope.ticket_id in seen:
            return Outcome.DUPLICATE
        seen.add(str(envelope.ticket_id))
        return Outcome.OK

    harness.bus.subscribe("ticket.rated", Subscription(unique_write, idempotent=True))
    harness.bus.start()
    await harness.bus.wait_connected(10)
    event = rated("t-unique")
    await harness.bus.publish(event)
    await harness.bus.publish(event)

    async def both() -> bool:
        return (consumed(harness.metrics, "ticket.rated", "ok") == 1
                and consumed(harness.metrics, "ticket.rated", "duplicate") == 1)

    await eventually(both, what="one handled, one duplicate")
    records = harness.bus._processed._collection  # type: ignore[union-attr]
    assert await records.count_documents({}) == 0


async def test_events_a_subscription_does_not_want_are_acked_untouched(
    harness: Harness,
) -> None:
    handled: list[str] = []

    async def on_rated(envelope: EventEnvelope) -> None:
        handled.append(str(envelope.ticket_id))

    def bad_scores(envelope: EventEnvelope) -> bool:
        return int(envelope.payload["score"]) <= 2

    harness.bus.subscribe("ticket.rated", Subscription(on_rated, wants=bad_scores))
    harness.bus.start()
    await harness.bus.wait_connected(10)
    await harness.bus.publish(new_event(TicketRated(ticket_id="t-happy", number="HD-3", score=5),
                                        producer="test", correlation_id="t-happy"))
    await harness.bus.publish(rated("t-unhappy"))

    async def both() -> bool:
        return (consumed(harness.metrics, "ticket.rated", "ignored") == 1
                and consumed(harness.metrics, "ticket.rated", "ok") == 1)

    await eventually(both, what="one ignored, one handled")
    assert handled == ["t-unhappy"]
    records = harness.bus._processed._collection  # type: ignore[union-attr]
    assert await records.count_documents({}) == 1  # only the handled one


@asynccontextmanager
async def mandatory_publisher(
    amqp_url: str, topology: Topology
) -> AsyncIterator[Callable[[EventEnvelope], Awaitable[None]]]:
    """Publishes that fail with ``DeliveryError`` when no queue is bound to the type."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(on_return_raises=True)
        exchange = await channel.get_exchange(topology.exchange)

        async def publish(envelope: EventEnvelope) -> None:
            await exchange.publish(aio_pika.Message(envelope.to_json()),
                                   routing_key=envelope.type, mandatory=True)

        yield publish
    finally:
        await connection.close()


def reopened(ticket_id: str) -> EventEnvelope:
    return new_event(TicketReopened(ticket_id=ticket_id, number="HD-4"), producer="test",
                     correlation_id=ticket_id)


async def ignore(_: EventEnvelope) -> None:
    return None


async def test_a_type_the_service_unsubscribed_is_no_longer_routed_to_it(
    harness: Harness,
) -> None:
    """Bindings live in the broker: the previous version's binding must not keep sending
    events the new one said it no longer takes."""
    previous = EventBus(amqp_url=harness.amqp_url, topology=harness.topology,
                        metrics=ServiceMetrics("flaky_before"), processed=None)
    previous.subscribe("ticket.rated", ignore)
    previous.subscribe("ticket.reopened", ignore)
    previous.start()
    await previous.wait_connected(10)
    await previous.close()

    harness.bus.subscribe("ticket.rated", ignore)
    harness.bus.unsubscribe("ticket.reopened")
    harness.bus.start()
    await harness.bus.wait_connected(10)

    async with mandatory_publisher(harness.amqp_url, harness.topology) as publish:
        await publish(rated("t-still-wanted"))  # routed: no error
        with pytest.raises(aio_pika.exceptions.DeliveryError):  # returned: no queue bound
            await publish(reopened("t-old"))


async def test_copies_of_an_unsubscribed_type_still_queued_are_acked_as_ignored(
    harness: Harness,
) -> None:
    harness.bus.subscribe("ticket.rated", ignore)
    harness.bus.unsubscribe("ticket.reopened")
    harness.bus.start()
    await harness.bus.wait_connected(10)
    # Queued before the binding went: it arrives under a key the queue still has.
    leftover = reopened("t-leftover")
    await publish_under(harness, leftover, "ticket.rated")

    async def ignored() -> bool:
        return consumed(harness.metrics, "ticket.reopened", "ignored") == 1

    await eventually(ignored, what="the leftover acked as ignored")
    assert consumed(harness.metrics, "ticket.reopened", "retried") == 0


async def test_an_older_replica_starting_during_an_upgrade_keeps_the_newer_ones_bindings(
    harness: Harness,
) -> None:
    """An exchange drops an event no queue is bound to: a replica of the old version,
    restarted while the new one runs beside it, must not unbind what it does not know."""
    harness.bus.subscribe("ticket.rated", ignore)
    harness.bus.subscribe("ticket.reopened", ignore)  # new in this version
    harness.bus.start()
    await harness.bus.wait_connected(10)

    older = EventBus(amqp_url=harness.amqp_url, topology=harness.topology,
                     metrics=ServiceMetrics("flaky_older"), processed=None)
    older.subscribe("ticket.rated", ignore)
    older.start(consume=False)
    try:
        await older.wait_connected(10)
        async with mandatory_publisher(harness.amqp_url, harness.topology) as publish:
            await publish(reopened("t-new-kind"))  # DeliveryError if the binding was cut
    finally:
        await older.close()


async def test_an_event_this_version_has_no_handler_for_is_retried_for_one_that_has(
    harness: Harness,
) -> None:
    """During an upgrade an old replica may take an event only the new version handles:
    retried through the tiers, the new replica gets it instead of the DLQ."""
    newer = EventBus(amqp_url=harness.amqp_url, topology=harness.topology,
                     metrics=ServiceMetrics("flaky_newer"), processed=None)
    newer.subscribe("ticket.rated", ignore)
    newer.subscribe("ticket.reopened", ignore)
    newer.start(consume=False)  # a newer replica's bindings, before the event comes
    await newer.wait_connected(10)
    await newer.close()

    older_metrics = ServiceMetrics("flaky_older")
    older = EventBus(amqp_url=harness.amqp_url, topology=harness.topology,
                     metrics=older_metrics, processed=None, max_attempts=3)
    older.subscribe("ticket.rated", ignore)
    older.start()
    try:
        await older.wait_connected(10)
        event = reopened("t-upgrade")
        await older.publish(event)

        async def retried_once() -> bool:
            return consumed(older_metrics, "ticket.reopened", "retried") >= 1

        await eventually(retried_once, what="the older replica sending it to a retry tier")
        await older.stop_consuming(grace_s=5)
    finally:
        await older.close()

    handled: list[EventEnvelope] = []

    async def on_reopened(envelope: EventEnvelope) -> None:
        handled.append(envelope)

    harness.bus.subscribe("ticket.rated", ignore)
    harness.bus.subscribe("ticket.reopened", on_reopened)
    harness.bus.start()

    async def handled_by_the_newer() -> bool:
        return [e.event_id for e in handled] == [event.event_id]

    await eventually(handled_by_the_newer, what="the newer replica handling it")
    assert consumed(older_metrics, "ticket.reopened", "dead_lettered") == 0


async def test_an_event_no_version_handles_is_parked_after_its_retries(
    harness: Harness,
) -> None:
    harness.bus.subscribe("ticket.rated", ignore)
    harness.bus.start()
    await harness.bus.wait_connected(10)
    orphan = reopened("t-orphan")
    await publish_under(harness, orphan, "ticket.rated")
    parked = await dead_letters(harness.amqp_url, harness.topology.dead_letter_queue, expected=1)
    assert parked[0].headers[ATTEMPT_HEADER] == 3
    assert "no handler for 'ticket.reopened' in this version" in str(
        parked[0].headers[REASON_HEADER])


async def test_a_publish_awaiting_its_confirm_fails_at_once_when_the_connection_drops(
    amqp_url: str,
) -> None:
    """Why a long BUS_PUBLISH_TIMEOUT_S is safe: a publish waiting for a confirm does not
    wait out the timeout when its channel is lost, so its outbox entry is kept for the
    sweeper right away."""
    target = urlsplit(amqp_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    proxy.start()
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    bus = EventBus(amqp_url=through(proxy, amqp_url),
                   topology=Topology(namespace, "silent", DELAYS, 5),
                   metrics=ServiceMetrics("silent"), processed=None,
                   publish_timeout_s=600, reconnect_interval_s=60)
    try:
        bus.start()
        await bus.wait_connected(10)
        proxy.hold()
        publishing = asyncio.create_task(bus.publish(rated("t-held")))
        await asyncio.sleep(0.5)  # the frames are on their way; no confirm can come back
        assert not publishing.done()
        proxy.cut()
        with pytest.raises(BusNotConnected, match="lost the broker while publishing"):
            await asyncio.wait_for(publishing, timeout=30)  # far below the publish timeout
    finally:
        await bus.close()
        proxy.close()
        await delete_namespace(amqp_url, namespace, [])


async def test_a_message_whose_consumer_dies_mid_handler_comes_back_to_another(
    amqp_url: str, mongo_url: str,
) -> None:
    """Protections: the ack comes after the handler, never on receipt; and a handler is
    not cut mid-way by its channel closing. The first consumer's handler is held at a
    gate and its connection cut (as when its process dies); the broker must hand the same
    message to the other consumer of the queue (acked on receipt, it would be gone with
    the first consumer). Released, the first handler runs to its end (cancelled with
    the channel, it would stop between two writes: ``_on_message`` shields it)."""
    target = urlsplit(amqp_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    proxy.start()
    namespace = f"t-{uuid.uuid4().hex[:12]}"
    topology = Topology(namespace, "held", DELAYS, delivery_limit=5)
    store = MongoStore(mongo_url, f"{namespace.replace('-', '_')}_held", app_name="test")
    gate, entered = asyncio.Event(), asyncio.Event()
    taken_over: list[EventEnvelope] = []

    completed: list[EventEnvelope] = []

    async def held(envelope: EventEnvelope) -> None:
        entered.set()
        await gate.wait()  # mid-way, between two of its writes
        completed.append(envelope)

    async def survivor_handles(envelope: EventEnvelope) -> None:
        taken_over.append(envelope)

    def consumer(url: str, name: str) -> EventBus:
        return EventBus(amqp_url=url, topology=topology, metrics=ServiceMetrics(name),
                        processed=ProcessedEvents(store), max_attempts=3,
                        reconnect_interval_s=60)

    dying = consumer(through(proxy, amqp_url), "dying")
    survivor = consumer(amqp_url, "survivor")
    try:
        dying.subscribe("ticket.rated", held)
        dying.start()
        await dying.wait_connected(10)
        event = rated("t-held-mid-way")
        await dying.publish(event)
        await asyncio.wait_for(entered.wait(), timeout=10)

        survivor.subscribe("ticket.rated", survivor_handles)
        survivor.start()
        await survivor.wait_connected(10)
        assert taken_over == []  # the message is the dying consumer's, unacked
        proxy.cut()

        async def came_back() -> bool:
            return [e.event_id for e in taken_over] == [event.event_id]

        await eventually(came_back, what="the message redelivered to the survivor")
        gate.set()

        async def ran_to_its_end() -> bool:
            return [e.event_id for e in completed] == [event.event_id]

        await eventually(ran_to_its_end, what="the cut-off handler finished its work")
    finally:
        gate.set()
        await dying.close()
        await survivor.close()
        proxy.close()
        await store.client.drop_database(store.db.name)
        await store.close()
        await _delete_queues(amqp_url, topology)
        await delete_namespace(amqp_url, namespace, [])


async def test_a_database_outage_is_retried_past_the_attempt_limit_never_parked(
    harness: Harness,
) -> None:
    """An unreachable database is no fault of the event: the handler is tried again for as
    long as the outage lasts (here twice the limit of three attempts), then succeeds."""
    calls: list[int] = []

    async def database_away(envelope: EventEnvelope) -> None:
        calls.append(1)
        if len(calls) <= 6:
            raise AutoReconnect("connection refused")

    harness.bus.subscribe("ticket.rated", database_away)
    harness.bus.start()
    await harness.bus.wait_connected(10)
    await harness.bus.publish(rated("t-outage"))

    async def handled() -> bool:
        return consumed(harness.metrics, "ticket.rated", "ok") == 1

    await eventually(handled, timeout=30, what="handled once the database is back")
    assert len(calls) == 7
    assert consumed(harness.metrics, "ticket.rated", "retried") == 6
    assert consumed(harness.metrics, "ticket.rated", "dead_lettered") == 0
