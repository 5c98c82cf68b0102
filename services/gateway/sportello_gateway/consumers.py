"""The gateway's event handlers: every event keeps the desk's queue lines current and goes
to the webhooks that subscribed to it. (The live stream has its own broadcast queue per
replica: see service/live.py.)"""

from __future__ import annotations

from sportello_contracts import EventEnvelope
from sportello_contracts.events import EVENT_PAYLOADS, SlaClockStopped, TriageModelActivated
from sportello_gateway.service.desk import Desk
from sportello_gateway.service.webhooks import Webhooks
from sportello_runtime.bus import Handler, Outcome, Subscription

NOT_FOR_THE_DESK = frozenset({SlaClockStopped.event_type, TriageModelActivated.event_type})
"""Clock stops (three a ticket, for analytics' business times) and routing's model switches
(for its replicas): no queue line changes with them, and the gateway's work queue would
take them all (webhooks do not carry them)."""

class GatewayConsumers:
    def __init__(self, desk: Desk, webhooks: Webhooks) -> None:
        self._desk = desk
        self._webhooks = webhooks

    def subscriptions(self) -> dict[str, Handler | Subscription]:
        # Idempotent: a line update is fenced by the version or sequence it carries, the
        # kept event and its deliveries are keyed by the event id.
        return {event_type: Subscription(self.on_event, idempotent=True)
                for event_type in EVENT_PAYLOADS if event_type not in NOT_FOR_THE_DESK}

    def unsubscribed(self) -> list[str]:
        return []

    async def on_event(self, envelope: EventEnvelope) -> Outcome:
        await self._desk.project(envelope, tell_consoles=False)
        await self._webhooks.on_event(envelope)
        return Outcome.OK
