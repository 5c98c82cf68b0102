"""Sportello services as real uvicorn processes, isolated per test by bus namespace and DBs."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from pymongo import AsyncMongoClient

from sportello_runtime.settings import ServiceSettings
from support.proxy import free_port
from support.wait import eventually

MODULES = {"intake": "sportello_intake", "routing": "sportello_routing", "sla": "sportello_sla",
           "gateway": "sportello_gateway", "knowledge": "sportello_knowledge",
           "analytics": "sportello_analytics"}
RETRY_DELAYS_MS = [200, 400]
SERVICE_DEFAULT_RETRY_DELAYS_MS: list[int] = ServiceSettings.model_fields[
    "bus_retry_delays_ms"].default
SERVICE_TOKEN = secrets.token_urlsafe(24)
CHANNEL_KEYS = {channel: secrets.token_urlsafe(18) for channel in ("web", "email", "chat",
                                                                   "phone", "api")}
CHANNEL_SECRETS = {"chat": secrets.token_urlsafe(24), "email": secrets.token_urlsafe(24)}
STATUS_TOKEN_SECRET = secrets.token_urlsafe(32)
JWT_SECRET = secrets.token_urlsafe(48)
ADMIN_PASSWORD = secrets.token_urlsafe(18)

FAST_TEST_SETTINGS = {
    "BUS_RETRY_DELAYS_MS": json.dumps(RETRY_DELAYS_MS),
    "BUS_MAX_ATTEMPTS": "3",
    "BUS_RECONNECT_INTERVAL_S": "0.5",
    "OUTBOX_SWEEP_INTERVAL_S": "0.2",
    "OUTBOX_STALE_AFTER_S": "0.5",
    "SHUTDOWN_GRACE_S": "5",
    "LOG_LEVEL": "INFO",
    # Intake's admission refuses new tickets once they wait past 0.3 s to be assigned
    # while more come than are assigned: a slow minute of a CI machine, a test posting a
    # burst and asserting 201s. It is tested on its own (tests/test_admission.py) and
    # measured by bench/overload_bench.py; elsewhere it would only make tests flaky.
    "ADMISSION_TARGET_S": "0",
}


def new_namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def smtp_port(self) -> int:
        return int(self.env["SMTP_LISTEN_PORT"])

    def start(self) -> None:
        log = self.log_path.open("ab")
        log.write(f"--- start #{self.restarts} ---\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULES[self.name]],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.restarts += 1

    async def wait_ready(self, timeout: float = 30, broker: bool = True) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:

            async def ready() -> bool:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
                try:
                    path = "/health/ready" if broker else "/health/live"
                    return (await client.get(path)).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, timeout=timeout, what=f"{self.name} ready")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, in-flight work lost from memory."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: frozen where it stands, connections open, until ``resume``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 15) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class System:
    """One test's Sportello: its services, its namespace on the bus, its databases."""

    mongo_url: str
    amqp_url: str
    folder: Path
    namespace: str = field(default_factory=new_namespace)
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def env_for(self, name: str, **overrides: str) -> dict[str, str]:
        own: dict[str, str] = {}
        if name == "intake":
            own = {"SMTP_LISTEN_PORT": str(free_port()),
                   "CHANNEL_SECRETS": json.dumps(CHANNEL_SECRETS),
                   "STATUS_TOKEN_SECRET": STATUS_TOKEN_SECRET}
        if name == "analytics" and "knowledge" in self.services:
            own = {"KNOWLEDGE_URL": self.services["knowledge"].url}
        if name == "gateway":  # the services it fronts, as this test started them
            own = {"JWT_SECRET": JWT_SECRET, "GATEWAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
                   "WEBHOOK_ALLOWED_NETWORKS": json.dumps(["127.0.0.0/8"]),
                   "WEBHOOK_POLL_INTERVAL_S": "0.1", "WEBHOOK_RETRY_BASE_S": "0.2",
                   **{f"{other.upper()}_URL": self.services[other].url
                      for other in ("intake", "routing", "sla", "knowledge")
                      if other in self.services}}
        return {
            "AMQP_URL": self.amqp_url,
            "MONGO_URL": self.mongo_url,
            "MONGO_DATABASE": self.database(name),
            "BUS_NAMESPACE": self.namespace,
            "SERVICE_TOKEN": SERVICE_TOKEN,
            "CHANNEL_KEYS": json.dumps(CHANNEL_KEYS),
            **FAST_TEST_SETTINGS,
            **own,
            **overrides,
        }

    def database(self, name: str) -> str:
        return f"{self.namespace.replace('-', '_')}_{name}"

    async def start(self, name: str, *, replica: str | None = None, wait: bool = True,
                    **env: str) -> ServiceProcess:
        """Start a service; ``replica`` names a second (third...) process of the same service."""
        port = free_port()
        key = replica or name
        if name == "intake":  # the links in its notices point at itself
            env = {"PUBLIC_URL": f"http://127.0.0.1:{port}", **env}
        if name == "knowledge":  # each replica its own index, and its help pages' address
            env = {"INDEX_DIR": str(self.folder / f"{key}-index"),
                   "HELP_URL": f"http://127.0.0.1:{port}", **env}
        service = ServiceProcess(
            name,
            self.env_for(name, SERVICE_PORT=str(port), **env),
            port,
            self.folder / f"{key}.log",
        )
        self.services[key] = service
        service.start()
        if wait:
            await service.wait_ready()
        return service

    def client(self, name: str, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.services[name].url,
            headers={"Authorization": f"Bearer {SERVICE_TOKEN}", **headers},
            timeout=10,
        )

    def channel_client(self, channel: str = "web", **options: Any) -> httpx.AsyncClient:
        intake = self.services.get("intake") or self.services["intake-a"]
        return httpx.AsyncClient(
            headers={"X-Api-Key": CHANNEL_KEYS[channel]},
            **{"base_url": intake.url, "timeout": 10, **options},
        )

    def gateway(self, token: str | None = None, *, replica: str = "gateway",
                **headers: str) -> httpx.AsyncClient:
        """The operators' door, signed in with ``token`` when one is given."""
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.services[replica].url,
                                 headers={**auth, **headers}, timeout=10)

    def mongo(self) -> AsyncMongoClient[dict[str, Any]]:
        return AsyncMongoClient(self.mongo_url, tz_aware=True)

    async def shutdown(self, failed: bool) -> None:
        for service in self.services.values():
            service.stop()
            if failed:
                print(f"\n===== {service.log_path.stem} log (last lines) =====\n"
                      f"{service.log_tail(80)}")
        await delete_namespace(self.amqp_url, self.namespace, list(MODULES))
        client = self.mongo()
        try:
            for name in MODULES:
                await client.drop_database(self.database(name))
        finally:
            await client.close()


async def delete_namespace(amqp_url: str, namespace: str, services: list[str]) -> None:
    """Remove a test's queues and exchange so that runs leave nothing behind on the broker."""
    connection = await aio_pika.connect(amqp_url)
    # The tests' quick retry delays, and the defaults the benchmarks run with.
    delays = {*RETRY_DELAYS_MS, *SERVICE_DEFAULT_RETRY_DELAYS_MS}
    try:
        for service in services:
            names = [f"{namespace}.{service}", f"{namespace}.{service}.dlq",
                     *(f"{namespace}.{service}.retry.{d}ms" for d in sorted(delays))]
            for queue in names:
                channel = await connection.channel()
                try:
                    await channel.queue_delete(queue)
                except aio_pika.exceptions.AMQPError:
                    pass
                finally:
                    if not channel.is_closed:
                        await channel.close()
        channel = await connection.channel()
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await channel.exchange_delete(f"{namespace}.events")
    finally:
        await connection.close()
