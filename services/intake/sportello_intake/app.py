"""Intake's wiring: its store, doors (HTTP, SMTP), handlers and loops on the shared runtime."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.types import Scope

from sportello_intake import api
from sportello_intake.consumers import IntakeConsumers
from sportello_intake.doors.smtp import SupportMailbox, serve_smtp
from sportello_intake.requester.notifier import NoticeMetrics, Notifier
from sportello_intake.requester.outbound import Outbound
from sportello_intake.service import Desk, DeskMetrics
from sportello_intake.settings import IntakeSettings
from sportello_intake.store import INDEXES, TICKETS, NoticeStore, TicketStore
from sportello_runtime.app import Service, ServiceWiring, create_service_app
from sportello_runtime.http import LoopLag
from sportello_runtime.periodic import every

log = logging.getLogger(__name__)


def at_a_channel_door(scope: Scope) -> bool:
    """Where tickets come in: ``POST /tickets`` (only ever a new one) and the mail, chat and
    phone doors (replies too, refused alike while the desk is behind)."""
    path: str = scope["path"]
    return scope["method"] == "POST" and (path == "/tickets" or path.startswith("/channels/"))


def started(lag: LoopLag) -> Callable[[], Coroutine[Any, Any, None]]:
    """The lateness is measured on the running loop, which exists from the app's start."""

    async def start() -> None:
        lag.start()
    return start


def wire(service: Service) -> ServiceWiring:
    settings = service.settings
    assert isinstance(settings, IntakeSettings)
    m = service.metrics
    tickets = TicketStore(service.store, service.relay, recent_capacity=settings.recent_tickets,
                          numbers_ahead_s=settings.ticket_numbers_ahead_s)
    loop_lag = service.loop_lag  # measured while the app runs: started and stopped with it
    desk = Desk(tickets, settings, DeskMetrics.registered_on(m), loop_lag)
    if settings.status_token_secret is not None:
        token_secret = settings.status_token_secret.get_secret_value()
    else:
        token_secret = secrets.token_urlsafe(32)
        log.warning("STATUS_TOKEN_SECRET is not set: requester links die with this process")
    http = httpx.AsyncClient()
    outbound = Outbound(settings, http)
    notices = NoticeStore(service.store, stale_sending_s=settings.notice_stale_sending_s)
    notifier = Notifier(tickets, notices, outbound, settings, NoticeMetrics.registered_on(m),
                        token_secret)
    consumers = IntakeConsumers(desk, notifier)

    def channels_refused(scope: Scope) -> str | None:
        """What the channel doors bring is refused before it is read, authenticated and
        validated: under overload that is most of what comes in, and a refusal that cost
        as much as an acceptance would come as late."""
        if at_a_channel_door(scope) and desk.refuses_more():
            return "more is coming in than the help desk assigns in time"
        return None

    background: list[Callable[[], Coroutine[Any, Any, None]]] = [
        every(settings.auto_close_interval_s, desk.close_quiet_tickets, what="auto-close sweep",
              at_start=True)]
    if notifier.enabled:  # acknowledgements that waited for SLA too long; abandoned claims
        background.append(every(settings.ack_sweep_interval_s, notifier.sweep_overdue,
                                what="acknowledgement sweep"))
    if settings.smtp_listen_port:
        mailbox = SupportMailbox(
            desk, api.mail_limits(settings), settings.support_addresses,
            m.counter("mail_refused_total", "Inbound mail refused, by the part at fault",
                      ["field"]),
        )

        async def smtp_listener() -> None:
            await serve_smtp(mailbox, settings.smtp_listen_host, settings.smtp_listen_port,
                             settings.mail_max_bytes)

        background.append(smtp_listener)
    return ServiceWiring(
        public_routers=[api.channels, api.public],
        internal_routers=[api.internal, api.requesters],
        consumers=consumers,
        indexes=INDEXES,
        outbox_collections=[TICKETS],
        background=background,
        on_startup=[started(loop_lag)],
        on_shutdown=[loop_lag.stop, outbound.close],
        refused_early=channels_refused,
        body_limits={"/tickets": settings.max_upload_bytes,
                     "/requesters/": settings.max_upload_bytes,
                     "/channels/": max(settings.max_upload_bytes, settings.mail_max_bytes)},
        state={"desk": desk, "tickets": tickets, "outbound": outbound,
               "token_secret": token_secret, "notifier": notifier},
    )


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or IntakeSettings(),
        wire,
        title="Sportello intake",
        description="Collects tickets from every channel; owns the ticket record and its "
        "conversation; keeps the requester informed.",
    )
