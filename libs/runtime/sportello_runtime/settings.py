"""Settings every service shares, read once from environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Environment names are the field names upper-cased (``AMQP_URL``, ``MONGO_URL``...).

    A service subclasses this and sets ``service_name``, ``service_port`` and
    ``mongo_database`` defaults; everything else is common.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    service_name: str
    service_host: str = "127.0.0.1"
    service_port: int = Field(ge=0, le=65535)
    service_token: SecretStr | None = Field(
        default=None,
        description="When set, the service's internal API demands it as a bearer token"
    )

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    bus_namespace: str = Field(
        default="sportello",
        pattern=r"^[a-z0-9][a-z0-9._-]{0,60}$",
        description="Prefix of the exchange and queue names; tests use one per test",
    )
    bus_prefetch: int = Field(default=32, ge=1, le=1000)
    bus_ack_linger_ms: float = Field(
        default=30.0, ge=0, le=1000,
        description="Acks of messages finished within this long go out together (one frame, "
        "one entry in the quorum queue's log; half the prefetch window finished goes at once); "
        "a crash redelivers at most what finished in it. 30 covers the few events one ticket "
        "brings a service within its first tens of milliseconds (the broker's wake-ups a "
        "ticket fell a sixth from 5, bench/system_bench.py). 0: each message acked alone")
    bus_retry_delays_ms: list[int] = Field(default=[1_000, 5_000, 30_000, 120_000], min_length=1)
    bus_max_attempts: int = Field(default=6, ge=1, le=100)
    bus_delivery_limit: int = Field(default=10, ge=1)
    bus_publish_timeout_s: float = Field(
        default=30.0, gt=0,
        description="How long a publish waits for the broker's confirm. A lost channel fails "
        "its pending confirms at once, so this only bounds a broker that is connected but "
        "silent; under a burst a late confirm is still coming, and giving up on it early "
        "only made the outbox send the event again",
    )
    bus_reconnect_interval_s: float = Field(default=1.0, gt=0)

    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_database: str
    mongo_timeout_ms: int = Field(default=10_000, ge=100)

    outbox_sweep_interval_s: float = Field(default=1.0, gt=0)
    outbox_stale_after_s: float = Field(default=2.0, ge=0)
    outbox_clear_linger_s: float = Field(
        default=0.25, ge=0, lt=1.0,
        description="How long a sent entry waits to be taken out of its document, so that "
        "the clears of many documents (and of one ticket's successive events) go to MongoDB "
        "together. Nobody waits for a clear; shorter than OUTBOX_STALE_AFTER_S by far",
    )

    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    max_in_flight_requests: int = Field(
        default=64, ge=0, description="Requests served at once before more are refused "
        "with 503 and Retry-After (0: never); bench/overload_bench.py measured the default")
    max_loop_lag_ms: int = Field(
        default=0, ge=0, description="How late the event loop may run before requests are "
        "refused with 503 and Retry-After (0: never; bench/overload_bench.py uses 200). Off "
        "by default: it still refused a request right after one long computation in CI "
        "(analytics' KPIs over the whole ServiceNow log), with nothing else waiting")
    http_keep_alive_s: int = Field(
        default=75, ge=1,
        description="How long an idle HTTP connection stays open. Longer than the idle timeouts "
        "of the proxies and clients in front (60 s is common), so the service never closes "
        "a connection at the moment a client reuses it",
    )
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    gc_young_threshold: int = Field(
        default=5_000, ge=100,
        description="Allocations between two young garbage collections (Python's default is "
        "700). The startup heap is frozen out of the collector's sight as well (serve.py)",
    )
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="json: one JSON object a line (for log shippers); text: readable lines "
        "for a person at a terminal; auto: text when stderr is a terminal, else json. "
        "`make up` asks for text when it runs in a terminal",
    )
    otel_exporter_otlp_endpoint: str | None = None
