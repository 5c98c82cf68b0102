"""What every domain rule returns: the record after the change, and the events it causes.

A service's store writes both in one single-document update (the events go to the
record's outbox), so a change and its announcement are never half-written. Rules
are pure: they build a ``Change`` and leave the writing to the service layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sportello_contracts import EventEnvelope

R = TypeVar("R")


@dataclass(frozen=True)
class Change(Generic[R]):
    record: R
    """The record (ticket, assignment, clock) as the rule left it."""
    events: tuple[EventEnvelope, ...] = ()
    """What other services are told: published from the record's outbox after the write."""
