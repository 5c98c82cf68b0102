"""Outgoing webhooks: subscriptions, signed deliveries retried with backoff, a record of
every attempt, replays from a chosen time, and subscriptions disabled (admins told) when
their receiver keeps failing."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from sportello_contracts import EventEnvelope, utc_now
from sportello_gateway.domain import webhooks as rules
from sportello_gateway.domain.webhooks import WebhookError
from sportello_gateway.service.accounts import Audit
from sportello_gateway.service.metrics import GatewayMetrics
from sportello_gateway.store import GatewayStore
from sportello_runtime.store import Document

log = logging.getLogger(__name__)

SUBSCRIPTIONS_MAX_AGE_S = 1.0
"""How long a replica uses the subscriptions it read for the events it takes: every event
passes here, and a change made on another replica is seen within this time."""
LEASE = timedelta(seconds=60)
"""How long a replica holds a delivery it is making (longer than the receiver's timeout)."""
BATCH = 20


class Webhooks:
    def __init__(self, store: GatewayStore, audit: Audit, metrics: GatewayMetrics, *,
                 allowed_networks: list[str], timeout_s: float, retry_base_s: float,
                 retry_max_s: float, max_attempts: int, disable_after: int) -> None:
        rules.check_networks(allowed_networks)
        self.store = store
        self.audit = audit
        self.metrics = metrics
        self.allowed_networks = allowed_networks
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.max_attempts = max_attempts
        self.disable_after = disable_after
        # No redirects: a receiver must not bounce a signed delivery somewhere else.
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._subscriptions: list[Document] = []
        self._read_at = float("-inf")

    async def subscriptions(self) -> list[Document]:
        """Every subscription, disabled ones too, as read at most a second ago."""
        if time.monotonic() - self._read_at > SUBSCRIPTIONS_MAX_AGE_S:
            self._subscriptions = await self.store.webhooks()
            self._read_at = time.monotonic()
        return self._subscriptions

    def forget_subscriptions(self) -> None:
        """After an admin's change on this replica: read them again for the next event."""
        self._read_at = float("-inf")

    async def close(self) -> None:
        await self._client.aclose()

    # -- where deliveries may go ---------------------------------------------------------

    async def check_url(self, url: str) -> None:
        """http(s), a host, and every address it resolves to allowed (checked again on
        every delivery, so a name that later points inside is refused then too)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookError("an http or https URL with a host", field="url")
        if parts.username or parts.password:
            raise WebhookError("no credentials in the URL; use the secret", field="url")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                type=socket.SOCK_STREAM)
        except OSError as exc:
            raise WebhookError(f"{parts.hostname} does not resolve", field="url") from exc
        for info in infos:
            address = str(info[4][0])
            if not rules.allowed_address(address, self.allowed_networks):
                raise WebhookError(
                    f"{parts.hostname} resolves to {address}, a private or loopback address "
                    "that WEBHOOK_ALLOWED_NETWORKS does not allow", field="url")

    # -- events in -----------------------------------------------------------------------

    async def on_event(self, envelope: EventEnvelope) -> int:
        """When a subscription takes the event's type: keep the event (a replay reaches back
        to it, also for a subscription disabled meanwhile) and queue one delivery per
        active subscription. No subscription for it: nothing is written. A redelivered
        event adds nothing."""
        taking = [w for w in await self.subscriptions()
                  if rules.takes(w["event_types"], envelope.type)]
        if not taking:
            return 0
        body = envelope.to_json().decode()
        now = utc_now()
        await self.store.remember_event(str(envelope.event_id), envelope.type,
                                        envelope.occurred_at, body, now)
        return await self.store.add_deliveries([
            _delivery(w["_id"], str(envelope.event_id), envelope.type, body, now, run="live")
            for w in taking if w["active"]])

    async def replay(self, webhook_id: str, since: datetime, until: datetime | None) -> int:
        """Deliver again every kept event of the subscription's types from ``since``."""
        webhook = await self.store.webhook(webhook_id)
        if webhook is None:
            raise LookupError(webhook_id)
        run = f"replay-{uuid.uuid4().hex[:8]}"
        now = utc_now()
        events = await self.store.events_since(since, until, limit=10_000)
        return await self.store.add_deliveries([
            _delivery(webhook_id, e["_id"], e["type"], e["body"], now, run=run)
            for e in events if rules.takes(webhook["event_types"], e["type"])])

    # -- deliveries out -------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Make the deliveries that are due, a few at a time, concurrently."""
        made = 0
        while True:
            now = utc_now()
            claimed = []
            for _ in range(BATCH):
                delivery = await self.store.claim_delivery(now, LEASE)
                if delivery is None:
                    break
                claimed.append(delivery)
            if not claimed:
                return made
            await asyncio.gather(*(self._deliver(d) for d in claimed))
            made += len(claimed)

    async def _deliver(self, delivery: Document) -> None:
        webhook = await self.store.webhook(delivery["webhook_id"])
        if webhook is None or not webhook["active"]:
            await self.store.finish_delivery(delivery["_id"], {
                "status": "skipped", "last_error": "the subscription is disabled or gone"})
            return
        attempts = int(delivery["attempts"]) + 1
        body = delivery["body"].encode()
        stamp = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "Sportello-Webhooks/1",
                   rules.EVENT_HEADER: delivery["event_type"],
                   rules.DELIVERY_HEADER: delivery["_id"],
                   rules.TIMESTAMP_HEADER: str(stamp),
                   rules.SIGNATURE_HEADER: rules.sign(webhook["secret"], stamp, body)}
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            await self.check_url(webhook["url"])
            response = await self._client.post(webhook["url"], content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"answered {status_code}"
        except WebhookError as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        elapsed = time.perf_counter() - started
        self.metrics.webhook_delivery_seconds.observe(elapsed)
        now = utc_now()
        record: Document = {"attempts": attempts, "last_status_code": status_code,
                            "last_error": error, "response_ms": round(elapsed * 1000, 1),
                            "last_attempt_at": now}
        if error is None:
            self.metrics.webhook_deliveries.labels("delivered").inc()
            await self.store.finish_delivery(delivery["_id"], {
                **record, "status": "delivered", "delivered_at": now})
            await self.store.webhook_succeeded(webhook["_id"])
            return
        self.metrics.webhook_deliveries.labels("failed").inc()
        if attempts >= self.max_attempts:
            await self.store.finish_delivery(delivery["_id"], {**record, "status": "failed"})
        else:
            wait = rules.next_try_in(attempts, base_s=self.retry_base_s,
                                     max_s=self.retry_max_s)
            await self.store.finish_delivery(delivery["_id"], {
                **record, "status": "pending", "next_at": now + wait})
        in_a_row = await self.store.webhook_failed(webhook["_id"])
        if in_a_row >= self.disable_after and webhook["active"]:
            await self._disable(webhook, error, in_a_row)

    async def _disable(self, webhook: Document, error: str, in_a_row: int) -> None:
        updated = await self.store.update_webhook(webhook["_id"], {
            "active": False, "disabled_at": utc_now(),
            "disabled_reason": f"{in_a_row} failed deliveries in a row; last: {error}"})
        if updated is None:
            return
        log.warning("webhook %s to %s disabled after %s failures in a row", webhook["_id"],
                    webhook["url"], in_a_row)
        await self.store.add_notice({
            "_id": uuid.uuid4().hex, "at": utc_now(), "kind": "webhook_disabled",
            "webhook_id": webhook["_id"], "url": webhook["url"],
            "message": f"Webhook {webhook['name']} to {webhook['url']} was disabled after "
                       f"{in_a_row} failed deliveries in a row (last: {error}). Fix the "
                       "receiver, then enable it again and replay from when it failed."})
        await self.audit.record(actor="gateway", action="webhook.disable", ip=None,
                                object_type="webhook", object_id=webhook["_id"],
                                before={"active": True}, after={"active": False},
                                detail=error)


def _delivery(webhook_id: str, event_id: str, event_type: str, body: str, now: datetime, *,
              run: str) -> dict[str, Any]:
    return {"_id": f"{webhook_id}:{event_id}:{run}", "webhook_id": webhook_id,
            "event_id": event_id, "event_type": event_type, "body": body, "run": run,
            "status": "pending", "attempts": 0, "next_at": now, "created_at": now}
