from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field, SecretStr

from sportello_runtime.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    service_port: int = 8001
    mongo_database: str = "sportello_intake"
    ticket_prefix: str = Field(default="HD", pattern=r"^[A-Z]{1,6}$")

    # --- channels: who may post
    channel_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='CHANNEL_KEYS, JSON {"web": "<key>", "api": "<key>", ...}: one API key per '
        "channel; a request authenticated with a channel's key may only post for that channel",
    )
    channel_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='CHANNEL_SECRETS, JSON {"chat": "<secret>", ...}: HMAC-SHA256 secrets for '
        "channels that sign their requests (X-Sportello-Signature: t=<unix>,v1=<hex>)",
    )
    signature_tolerance_s: int = Field(default=300, ge=1,
                                       description="How old a signed request may be (replays)")
    max_upload_bytes: int = Field(
        default=12 * 1024 * 1024, ge=1024,
        description="Body limit of the channel doors that carry attachments and raw mail",
    )
    max_attachment_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    max_attachments: int = Field(default=10, ge=0)

    # --- e-mail
    smtp_listen_host: str = "127.0.0.1"
    smtp_listen_port: int = Field(default=2525, ge=0, le=65535,
                                  description="Inbound SMTP listener; 0 turns it off")
    support_addresses: list[str] = Field(
        default=["help@sportello.localhost"], min_length=1,
        description="The addresses the listener accepts mail for (it is not a relay)",
    )
    mail_from: str = "Sportello <help@sportello.localhost>"
    smtp_relay_url: str | None = Field(
        default=None, description="Where notifications go, e.g. smtp://127.0.0.1:1025; none: "
        "mail notifications are recorded as failed")
    smtp_relay_connections: int = Field(
        default=4, ge=1, le=100,
        description="Connections to the relay kept open between notices (sends at once)")
    mail_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    # --- chat
    chat_callback_url: str | None = Field(
        default=None, description="The chat platform's endpoint for our replies (signed with "
        "the chat channel's secret when it has one)")
    chat_callback_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a reply posted to the chat platform may "
        "take before it is tried again later")

    # --- keeping the requester informed
    public_url: str = Field(default="http://127.0.0.1:8001",
                            description="Base of the links in notifications")
    status_token_secret: SecretStr | None = Field(
        default=None, min_length=32,
        description="Signs status-page and rating links; every replica needs the same one. "
        "Unset: a random one per process (links die with it)")
    status_token_ttl_s: int = Field(default=60 * 24 * 3600, ge=60)
    sla_url: str | None = Field(
        default=None, description="SLA service: set where one runs. The acknowledgement then "
        "waits for the time limit SLA announces; the status page asks it for the current one")
    sla_wait_s: float = Field(
        default=3.0, ge=0, description="How long the acknowledgement waits for SLA's time "
        "limit before it goes out with the default (SLA down or slow)")
    ack_sweep_interval_s: float = Field(
        default=1.0, gt=0, description="How often acknowledgements that waited SLA_WAIT_S for "
        "SLA, and notices a stopped process abandoned, are looked for")
    notice_stale_sending_s: float = Field(
        default=60.0, gt=0, description="A notice claimed this long ago and not recorded "
        "was abandoned by a process that died: another handler, or the sweep, sends it")
    default_time_limit_s: int = Field(
        default=8 * 3600, ge=60,
        description="Time limit told to requesters while no SLA service answers")
    display_timezone: str = "Europe/Rome"
    portal_url: str | None = Field(
        default=None, description="The requester portal (the gateway): the status page links "
        "there, signing the requester in with the page's own signed token")
    ack_limit_per_hour: int = Field(
        default=10, ge=1, description="Acknowledgements of tickets opened by mail, to one "
        "address per hour, at most: the last guard against mail loops with autoresponders "
        "that do not say they are one")

    # --- admission: past what the system sustains, refuse quickly rather than queue
    admission_target_s: float = Field(
        default=0.3, ge=0, description="The wait from acceptance to assignment intake steers "
        "to when more is offered than assigned: past it, what the channel doors bring is "
        "refused (503 with Retry-After, SMTP 451) before it is read. 0: nothing is refused "
        "for it (bench/overload_bench.py measures it)")
    admission_max_loop_lag_ms: int = Field(
        default=200, ge=0, description="While the admission steers (more offered than "
        "assigned) and intake's event loop runs more than this late, the channel doors "
        "refuse everything: intake itself is behind. 0: the lateness refuses nothing")
    admission_interval_s: float = Field(
        default=1.0, gt=0, description="How often the admission is steered: each interval "
        "takes as many new tickets as the one before assigned, scaled by the target over its "
        "shortest wait (see sportello_intake.admission)")

    recent_tickets: int = Field(
        default=2000, ge=0,
        description="Tickets this process opened last, kept in memory (as last written) as "
        "the starting point of their next change (checked by the version fence); a ticket "
        "read back is not kept; 0 reads every time")

    ticket_numbers_ahead_s: float = Field(
        default=0.25, ge=0, le=10,
        description="A busy replica reserves the ticket numbers it was asked for in this "
        "long, in the same counter update: one update per this long instead of one per "
        "ticket. A quiet replica reserves none. Reserved numbers not handed out before a "
        "restart are a gap; 0 reserves none ever")

    # --- lifecycle
    auto_close_after_s: float = Field(default=7 * 24 * 3600, gt=0,
                                      description="Quiet period after which resolved tickets close")
    auto_close_interval_s: float = Field(default=60.0, gt=0)

    @property
    def notifies(self) -> bool:
        """Whether requesters can be told anything (a relay, or a chat callback)."""
        return bool(self.smtp_relay_url or self.chat_callback_url)

    def acknowledgement_waits_until(self, created_at: datetime) -> datetime | None:
        """Until when a new ticket's acknowledgement waits for SLA's time limit; ``None``
        where nobody is told or no SLA service runs (it goes at once)."""
        if not (self.notifies and self.sla_url):
            return None
        return created_at + timedelta(seconds=self.sla_wait_s)
