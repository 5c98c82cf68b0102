"""The desk's structure and its rules: levels, groups and the escalation chain, agents and
who takes a ticket. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sportello_contracts.enums import (
    Priority,
    SupportLevel,
)

PRODUCER = "routing"
GENERAL = "general"
LEVEL_ORDER = [SupportLevel.L0, SupportLevel.L1, SupportLevel.L2, SupportLevel.L3, SupportLevel.L4]
PRIORITY_ORDER = [Priority.P1, Priority.P2, Priority.P3, Priority.P4]


class RoutingError(Exception):
    """A request the rules refuse; ``field`` names what is wrong when one thing is."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidPolicy(RoutingError):
    pass


class IllegalMove(RoutingError):
    pass


def level_rank(level: SupportLevel) -> int:
    return LEVEL_ORDER.index(level)


# --- groups and agents ---------------------------------------------------------


@dataclass(frozen=True)
class Group:
    id: str
    name: str
    level: SupportLevel
    categories: tuple[str, ...] = ()
    escalates_to: str | None = None
    default_for_level: bool = False
    vendor_contact: str | None = None


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    level: SupportLevel
    groups: tuple[str, ...]
    skills: tuple[str, ...] = ()
    capacity: int = 5
    available: bool = True
    open_tickets: int = 0
    last_assigned_at: datetime | None = None

    @property
    def load(self) -> float:
        return self.open_tickets / self.capacity if self.capacity else float("inf")

    @property
    def has_room(self) -> bool:
        return self.available and self.open_tickets < self.capacity


def check_groups(groups: Sequence[Group]) -> None:
    """Escalation chains must point to existing groups at a higher level, and never loop."""
    by_id = {g.id: g for g in groups}
    for group in groups:
        seen = {group.id}
        current = group
        while current.escalates_to is not None:
            target = by_id.get(current.escalates_to)
            if target is None:
                raise InvalidPolicy(
                    f"group {current.id} escalates to unknown group {current.escalates_to}",
                    field="escalates_to",
                )
            if target.id in seen:
                raise InvalidPolicy(
                    f"escalation chain loops: {' -> '.join([*seen, target.id])}",
                    field="escalates_to",
                )
            if level_rank(target.level) <= level_rank(current.level):
                raise InvalidPolicy(
                    f"group {current.id} ({current.level.value}) may only escalate to a higher "
                    f"level, not to {target.id} ({target.level.value})",
                    field="escalates_to",
                )
            seen.add(target.id)
            current = target
    for group in groups:
        if group.level is SupportLevel.L4 and not group.vendor_contact:
            raise InvalidPolicy(f"vendor group {group.id} needs a vendor_contact",
                                field="vendor_contact")


def group_for(groups: Sequence[Group], level: SupportLevel, category: str) -> Group | None:
    """The group at ``level`` for ``category``, else that level's default group."""
    at_level = [g for g in groups if g.level is level]
    for group in at_level:
        if category in group.categories:
            return group
    for group in at_level:
        if group.default_for_level:
            return group
    return at_level[0] if at_level else None


def escalation_target(
    groups: Sequence[Group], current: Group, category: str
) -> Group | None:
    """Where a ticket goes when ``current`` cannot solve it: its chain, else the next level."""
    if current.escalates_to is not None:
        return next((g for g in groups if g.id == current.escalates_to), None)
    for level in LEVEL_ORDER[level_rank(current.level) + 1:]:
        target = group_for(groups, level, category)
        if target is not None:
            return target
    return None


def pick_agent(agents: Iterable[Agent], group_id: str, skill: str) -> Agent | None:
    """The available agent of the group with room, the needed skill and the lowest load.

    The skill is needed only when someone in the group has it (otherwise anyone
    may take the ticket). Ties go to whoever was assigned least recently, which
    makes equal loads round-robin.
    """
    members = [a for a in agents if group_id in a.groups]
    if any(skill in a.skills for a in members):
        members = [a for a in members if skill in a.skills]
    candidates = [a for a in members if a.has_room]
    if not candidates:
        return None
    never = datetime.min.replace(tzinfo=None)
    return min(
        candidates,
        key=lambda a: (
            a.load,
            a.last_assigned_at.replace(tzinfo=None) if a.last_assigned_at else never,
            a.id,
        ),
    )


