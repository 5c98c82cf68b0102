"""Sportello's shared contracts: enums, the event envelope, event payloads and API models."""

from sportello_contracts.envelope import EventEnvelope, utc_now
from sportello_contracts.events import (
    EVENT_PAYLOADS,
    EventPayload,
    UnknownEventType,
    new_event,
    parse_payload,
)

__all__ = [
    "EVENT_PAYLOADS",
    "EventEnvelope",
    "EventPayload",
    "UnknownEventType",
    "new_event",
    "parse_payload",
    "utc_now",
]
