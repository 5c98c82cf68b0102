from __future__ import annotations

from pydantic import Field, SecretStr

from sportello_runtime.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    service_port: int = 8000
    mongo_database: str = "sportello_gateway"

    intake_url: str = "http://127.0.0.1:8001"
    routing_url: str = "http://127.0.0.1:8002"
    sla_url: str = "http://127.0.0.1:8003"
    knowledge_url: str | None = Field(
        default=None, description="When set, the workspace carries knowledge suggestions")
    analytics_url: str | None = None
    backend_timeout_s: float = Field(
        default=2.0, gt=0, description="Time budget of each call to a service; the workspace "
        "marks a part unavailable past it instead of waiting")

    queue_max_age_s: float = Field(
        default=0.5, ge=0, description="Identical queue reads share one database read and "
        "its answer for this long (0: every read goes to the database)")

    jwt_secret: SecretStr | None = Field(
        default=None, description="Signs access tokens (HS256), shared by every replica. "
        "Unset: a random one per process, so tokens die with it (a warning says so)")
    access_token_ttl_s: int = Field(default=900, ge=30, le=24 * 3600)
    refresh_token_ttl_s: int = Field(default=14 * 24 * 3600, ge=60)
    session_check_s: float = Field(
        default=1.0, ge=0, description="How long a replica trusts that a session is not "
        "revoked: logging out ends the session's access tokens within this time everywhere")
    gateway_admin_password: SecretStr | None = Field(
        default=None, description="The first start's `admin` password (with no users yet)")
    password_min_length: int = Field(default=10, ge=8, le=128)
    lockout_threshold: int = Field(default=5, ge=1, description="Failed logins in a row that "
                                   "lock an account")
    lockout_s: float = Field(default=900.0, gt=0, description="How long a lock-out lasts")

    oidc_issuer: str | None = Field(default=None, description="Accept this provider's tokens")
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_username_claim: str = "preferred_username"
    oidc_algorithms: list[str] = Field(default=["RS256", "ES256"], min_length=1)

    rate_limit_per_minute: int = Field(default=1_200, ge=1,
                                       description="Requests a user or API key may make")
    rate_limit_burst: int = Field(default=200, ge=1)

    webhook_allowed_networks: list[str] = Field(
        default=[], description="Private or loopback networks webhooks may be delivered to "
        "(CIDRs, e.g. 127.0.0.1/32); public addresses are always allowed")
    webhook_poll_interval_s: float = Field(default=0.5, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_retry_base_s: float = Field(default=2.0, gt=0,
                                        description="First retry delay; doubles each time")
    webhook_retry_max_s: float = Field(default=3_600.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_disable_after: int = Field(
        default=20, ge=1, description="Failed attempts in a row that disable a subscription")
    event_retention_days: int = Field(default=30, ge=1,
                                      description="How far back webhook replays can reach")
    live_heartbeat_s: float = Field(default=15.0, gt=0)
    live_queue_size: int = Field(default=200, ge=1)

    # -- the requester portal (/portal) ---------------------------------------------------
    portal_url: str = Field(
        default="http://127.0.0.1:8000", description="Where requesters reach the gateway: "
        "the start of the sign-in links mailed to them. https:// makes the cookies Secure")
    smtp_relay_url: str | None = Field(
        default=None, description="Where sign-in links are mailed through (smtp://host:port); "
        "unset: the portal cannot sign anyone in by mail, and says so")
    mail_from: str = "Sportello <help@sportello.localhost>"
    channel_keys: dict[str, SecretStr] = Field(
        default={}, description="The channels' API keys (CHANNEL_KEYS, shared with intake): "
        "the portal opens tickets through intake's web door with the `web` key")
    portal_link_ttl_s: int = Field(default=900, ge=60, le=24 * 3600,
                                   description="How long a mailed sign-in link works (once)")
    portal_session_ttl_s: int = Field(default=7 * 24 * 3600, ge=300)
    portal_links_per_address: int = Field(default=5, ge=1,
                                          description="Sign-in links per address per hour")
    portal_links_per_client: int = Field(default=20, ge=1,
                                         description="Sign-in links per client address per hour")
    portal_rate_per_minute: int = Field(default=120, ge=1,
                                        description="Portal requests per requester or client")
    portal_organisation_contacts: dict[str, str] = Field(
        default={}, description="A business customer's contacts (JSON: address -> their "
        "organisation's mail domain) who may also read, not answer, that domain's requests")
    portal_max_upload_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024,
        description="A portal form's size, files included (intake takes them base64-encoded)")
    display_timezone: str = Field(default="Europe/Rome",
                                  description="The time zone the portal shows times in")
