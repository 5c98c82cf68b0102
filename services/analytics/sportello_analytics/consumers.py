"""Analytics' event handlers: every event of every service, kept and counted."""

from __future__ import annotations

from sportello_analytics.service import Ledger, event_of
from sportello_contracts import EVENT_PAYLOADS, EventEnvelope, parse_payload
from sportello_runtime.bus import Handler, Subscription


class AnalyticsConsumers:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def subscriptions(self) -> dict[str, Handler | Subscription]:
        # Keeping is once per event id and the facts are recomputed from what is kept: a
        # copy changes nothing, so no dedupe records are needed.
        return {event_type: Subscription(self.on_event, idempotent=True)
                for event_type in EVENT_PAYLOADS}

    def unsubscribed(self) -> list[str]:
        return []

    async def on_event(self, envelope: EventEnvelope) -> None:
        parse_payload(envelope)  # an invalid payload is parked with the reason, not kept
        await self._ledger.record(event_of(envelope))
