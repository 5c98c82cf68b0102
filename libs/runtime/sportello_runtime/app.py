"""The app factory: one place that gives every service the same doors and the same lifecycle.

A service describes itself with a ``ServiceWiring`` (its routers, its
consumers, indexes, outbox collections, background loops) built from the
shared ``Service`` components; the factory adds health, metrics, tracing,
logs, error bodies, body-size limits and a graceful shutdown. Every service's
``app.py`` has the same three steps, in this order: its store on
``service.store``, its use cases with their ``XMetrics.registered_on(service.metrics)``,
its consumers and routers; then ``create_service_app(settings, wire, ...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo import IndexModel
from starlette.types import Scope

from sportello_runtime.bus import EventBus, Handler, Subscription, Topology
from sportello_runtime.http import (
    BodySizeLimit,
    HttpMetrics,
    LoadShedding,
    LoopLag,
    document_errors,
    install_error_handlers,
    service_token_guard,
)
from sportello_runtime.logs import configure_logging
from sportello_runtime.metrics import ServiceMetrics
from sportello_runtime.outbox import OUTBOX_INDEX, OutboxRelay
from sportello_runtime.settings import ServiceSettings
from sportello_runtime.store import MongoStore, ProcessedEvents
from sportello_runtime.tracing import configure_tracing

log = logging.getLogger(__name__)


@dataclass
class Service:
    """The shared components a service wires its own parts onto."""

    settings: ServiceSettings
    metrics: ServiceMetrics
    store: MongoStore
    bus: EventBus
    relay: OutboxRelay
    processed: ProcessedEvents
    loop_lag: LoopLag = field(default_factory=LoopLag)
    """How late this process's event loop runs: one timer for whoever asks (LoadShedding
    with ``MAX_LOOP_LAG_MS``, intake's admission); each starts it, stopped at shutdown."""


class Consumers(Protocol):
    """A service's event handlers (its ``consumers.py``): what it subscribes to, and what
    an earlier version subscribed to that must now be unbound."""

    def subscriptions(self) -> Mapping[str, Handler | Subscription]: ...

    def unsubscribed(self) -> Sequence[str]: ...


class NoConsumers:
    """For a service that takes no events."""

    def subscriptions(self) -> Mapping[str, Handler | Subscription]:
        return {}

    def unsubscribed(self) -> Sequence[str]:
        return ()


@dataclass
class ServiceWiring:
    """What a service adds: see each service's ``app.py``."""

    internal_routers: Sequence[APIRouter] = ()
    """Routes for other services and the gateway: behind the service token."""
    public_routers: Sequence[APIRouter] = ()
    """Routes that authenticate their callers themselves (channels, requesters)."""
    consumers: Consumers = field(default_factory=NoConsumers)
    indexes: Mapping[str, Sequence[IndexModel]] = field(default_factory=dict)
    outbox_collections: Sequence[str] = ()
    on_startup: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    on_shutdown: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    """Run after consuming stopped and the background loops ended (close clients)."""
    state: Mapping[str, Any] = field(default_factory=dict)
    body_limits: Mapping[str, int] = field(default_factory=dict)
    """Path prefix -> body limit above MAX_BODY_BYTES, for doors that carry files."""
    refused_early: Callable[[Scope], str | None] | None = None
    """Why a request is refused (503, Retry-After) before it is even read: a door the
    service knows it would refuse now, cheaply (see ``LoadShedding``)."""


def build_service(settings: ServiceSettings) -> Service:
    metrics = ServiceMetrics(settings.service_name)
    store = MongoStore(
        settings.mongo_url,
        settings.mongo_database,
        app_name=settings.service_name,
        timeout_ms=settings.mongo_timeout_ms,
    )
    processed = ProcessedEvents(store)
    bus = EventBus(
        amqp_url=settings.amqp_url,
        topology=Topology(
            namespace=settings.bus_namespace,
            service=settings.service_name,
            retry_delays_ms=tuple(settings.bus_retry_delays_ms),
            delivery_limit=settings.bus_delivery_limit,
        ),
        metrics=metrics,
        processed=processed,
        prefetch=settings.bus_prefetch,
        ack_linger_s=settings.bus_ack_linger_ms / 1000,
        max_attempts=settings.bus_max_attempts,
        publish_timeout_s=settings.bus_publish_timeout_s,
        reconnect_interval_s=settings.bus_reconnect_interval_s,
    )
    relay = OutboxRelay(
        bus,
        metrics,
        sweep_interval_s=settings.outbox_sweep_interval_s,
        stale_after_s=settings.outbox_stale_after_s,
        clear_linger_s=settings.outbox_clear_linger_s,
    )
    return Service(settings, metrics, store, bus, relay, processed)


def create_service_app(
    settings: ServiceSettings,
    wire: Callable[[Service], ServiceWiring],
    *,
    title: str,
    description: str,
    version: str = "0.1.0",
) -> FastAPI:
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    provider = configure_tracing(settings.service_name, settings.otel_exporter_otlp_endpoint)
    service = build_service(settings)
    wiring = wire(service)
    for event_type, handler in wiring.consumers.subscriptions().items():
        service.bus.subscribe(event_type, handler)
    for event_type in wiring.consumers.unsubscribed():
        service.bus.unsubscribe(event_type)
    for name in wiring.outbox_collections:
        service.relay.watch(service.store.collection(name))
    service.bus.on_connected(service.relay.wake)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        indexes: dict[str, list[IndexModel]] = {
            name: list(models) for name, models in wiring.indexes.items()
        }
        for name in wiring.outbox_collections:
            indexes.setdefault(name, []).append(OUTBOX_INDEX)
        await service.store.ensure_indexes({**service.processed.indexes(), **indexes})
        for hook in wiring.on_startup:
            await hook()
        service.bus.start(consume=True)
        service.relay.start()
        loops = [asyncio.create_task(loop()) for loop in wiring.background]
        log.info("%s started on port %s", settings.service_name, settings.service_port)
        try:
            yield
        finally:
            log.info("%s stopping", settings.service_name)
            started = time.monotonic()
            try:
                await _shut_down(service, wiring, loops, settings.shutdown_grace_s)
            except TimeoutError:
                log.warning("%s still busy %.1f s after stopping began (SHUTDOWN_GRACE_S): "
                            "leaving what is unfinished to redelivery and the outbox sweep",
                            settings.service_name, time.monotonic() - started)
            log.info("%s stopped", settings.service_name)

    app = FastAPI(
        title=title, description=description, version=version, lifespan=lifespan,
        # FastAPI's own OpenTelemetry tracing: one server span per request, named by the
        # route FastAPI matched. The contrib FastAPIInstrumentor found that route again by
        # matching the path against every route of the app on each request.
        telemetry={"tracer_provider": provider, "metrics": False, "logs": False,
                   "operation_spans": False, "exclude": _untraced},
    )
    app.state.service = service
    for key, value in wiring.state.items():
        setattr(app.state, key, value)

    token = settings.service_token.get_secret_value() if settings.service_token else None
    guard = Depends(service_token_guard(token))
    for router in wiring.internal_routers:
        app.include_router(router, dependencies=[guard])
    for router in wiring.public_routers:
        app.include_router(router)
    app.include_router(_operations_router(service))

    install_error_handlers(app)
    document_errors(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes,
                       larger=wiring.body_limits)
    if settings.max_in_flight_requests or settings.max_loop_lag_ms or wiring.refused_early:
        app.add_middleware(LoadShedding, max_in_flight=settings.max_in_flight_requests,
                           max_loop_lag_s=settings.max_loop_lag_ms / 1000,
                           refused_early=wiring.refused_early, lag=service.loop_lag)
    app.add_middleware(HttpMetrics, metrics=service.metrics)
    return app


async def _shut_down(service: Service, wiring: ServiceWiring, loops: list[asyncio.Task[None]],
                     grace_s: float) -> None:
    """Stop consuming and let in-flight handlers finish, stop the loops, flush the outbox,
    close connections: all of it within ``grace_s`` together (TimeoutError past it).
    Nothing is lost by stopping short: an unacked event is redelivered, an unpublished
    outbox entry is swept up by the next replica or start."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s

    def left() -> float:
        return max(0.0, deadline - loop.time())

    try:
        async with asyncio.timeout_at(deadline):
            await service.bus.stop_consuming(left())
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            for hook in wiring.on_shutdown:
                try:
                    await hook()
                except Exception:
                    log.exception("shutdown hook failed")
            await service.relay.stop(left())
            await service.bus.close()
    finally:  # the database client closes even when time ran out above
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.store.close(), timeout=max(left(), 1.0))


UNTRACED_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    """Probes and scrapes: many a minute, none of them part of a ticket's story."""
    return scope.get("path") in UNTRACED_PATHS


def _operations_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        """The process answers: restart it if this fails."""
        return {"status": "ok"}

    @router.get("/health/ready")
    async def ready() -> JSONResponse:
        """Broker and database reachable: send traffic only when this is 200."""
        database = await service.store.ping()
        broker = service.bus.is_connected
        ok = database and broker
        return JSONResponse(
            status_code=200 if ok else 503,
            content={
                "status": "ready" if ok else "not_ready",
                "checks": {"database": database, "broker": broker},
            },
        )

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
