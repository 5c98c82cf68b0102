"""The gateway's wiring: its store, accounts and audit, the services behind it, the desk,
webhooks, the live stream, its routes and handlers."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from fastapi import FastAPI

from sportello_gateway.api.admin import admin, staff
from sportello_gateway.api.auth import auth
from sportello_gateway.api.console import console
from sportello_gateway.api.ops import ops
from sportello_gateway.api.portal import portal
from sportello_gateway.api.tickets import tickets
from sportello_gateway.backends import Backends
from sportello_gateway.consumers import GatewayConsumers
from sportello_gateway.service.accounts import Accounts, Audit
from sportello_gateway.service.desk import Desk
from sportello_gateway.service.live import LiveFeed, LiveHub
from sportello_gateway.service.metrics import GatewayMetrics
from sportello_gateway.service.portal import Portal
from sportello_gateway.service.webhooks import Webhooks
from sportello_gateway.settings import GatewaySettings
from sportello_gateway.store import GatewayStore, PortalStore, indexes
from sportello_gateway.tokens import AccessTokens, OidcVerifier
from sportello_runtime.app import Service, ServiceWiring, create_service_app
from sportello_runtime.periodic import every
from sportello_runtime.ratelimit import RateLimiter

log = logging.getLogger(__name__)


def wire(service: Service) -> ServiceWiring:
    settings = service.settings
    assert isinstance(settings, GatewaySettings)
    store = GatewayStore(service.store)
    metrics = GatewayMetrics.registered_on(service.metrics)
    audit = Audit(store)
    if settings.jwt_secret is None:
        log.warning("JWT_SECRET is not set: access tokens are signed with a key of this "
                    "process only, and die with it")
    secret = (settings.jwt_secret.get_secret_value() if settings.jwt_secret
              else secrets.token_urlsafe(48))
    oidc = None
    if settings.oidc_issuer and settings.oidc_jwks_url:
        oidc = OidcVerifier(issuer=settings.oidc_issuer, audience=settings.oidc_audience,
                            jwks_url=settings.oidc_jwks_url,
                            username_claim=settings.oidc_username_claim,
                            algorithms=settings.oidc_algorithms)
    accounts = Accounts(
        store, audit, metrics,
        tokens=AccessTokens(secret, timedelta(seconds=settings.access_token_ttl_s)),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_s),
        lockout_threshold=settings.lockout_threshold,
        lockout=timedelta(seconds=settings.lockout_s),
        password_min_length=settings.password_min_length,
        session_check_s=settings.session_check_s, oidc=oidc)
    token = settings.service_token.get_secret_value() if settings.service_token else None
    backends = Backends({"intake": settings.intake_url, "routing": settings.routing_url,
                         "sla": settings.sla_url, "knowledge": settings.knowledge_url,
                         "analytics": settings.analytics_url},
                        token, settings.backend_timeout_s)
    desk = Desk(store, backends, audit, metrics, queue_max_age_s=settings.queue_max_age_s)
    webhooks = Webhooks(store, audit, metrics,
                        allowed_networks=settings.webhook_allowed_networks,
                        timeout_s=settings.webhook_timeout_s,
                        retry_base_s=settings.webhook_retry_base_s,
                        retry_max_s=settings.webhook_retry_max_s,
                        max_attempts=settings.webhook_max_attempts,
                        disable_after=settings.webhook_disable_after)
    requester_portal = Portal(PortalStore(service.store), backends, metrics, settings)
    if not settings.smtp_relay_url:
        log.warning("SMTP_RELAY_URL is not set: the requester portal cannot mail sign-in links")
    hub = LiveHub(metrics, settings.live_queue_size)
    feed = LiveFeed(settings.amqp_url, service.bus.topology.exchange, hub, store.line,
                    desk.project)

    async def seed() -> None:
        password = settings.gateway_admin_password
        await accounts.seed_admin(password.get_secret_value() if password else None)

    async def close() -> None:
        await feed.close()
        await webhooks.close()
        await backends.close()

    return ServiceWiring(
        public_routers=[auth, tickets, staff, admin, ops, console, portal],
        consumers=GatewayConsumers(desk, webhooks),
        indexes=indexes(timedelta(days=settings.event_retention_days)),
        on_startup=[seed],
        background=[every(settings.webhook_poll_interval_s, webhooks.deliver_due,
                          what="webhook deliveries"),
                    feed.run],
        on_shutdown=[close],
        body_limits={"/portal/": settings.portal_max_upload_bytes},
        state={"accounts": accounts, "desk": desk, "webhooks": webhooks, "hub": hub,
               "metrics": metrics, "portal": requester_portal,
               "portal_limiter": RateLimiter(settings.portal_rate_per_minute,
                                             max(10, settings.portal_rate_per_minute // 4)),
               "limiter": RateLimiter(settings.rate_limit_per_minute,
                                      settings.rate_limit_burst)},
    )


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    return create_service_app(
        settings or GatewaySettings(),
        wire,
        title="Sportello gateway",
        description="The operators' door: sign-in, roles by level, queues, the ticket "
                    "workspace, commands, the live stream, admin, the audit log, webhooks.",
    )
