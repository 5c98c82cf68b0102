"""Who may do what: roles, permissions, the rule of every route, and which tickets a
person sees. The API and the console apply these same rules; no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from sportello_contracts.enums import SupportLevel


class Role(StrEnum):
    AGENT = "agent"
    VENDOR = "vendor"
    COORDINATOR = "coordinator"
    ADMIN = "admin"
    SRE = "sre"


class Permission(StrEnum):
    SELF = "self"
    """Anyone signed in: who am I, log out."""
    TICKETS_READ = "tickets.read"
    """Queues, the workspace, attachments, the live stream (of the tickets one may see)."""
    TICKETS_WORK = "tickets.work"
    """Take, reply, note, status, escalate, hand back, log a call, link an article."""
    TICKETS_ASSIGN = "tickets.assign"
    """Give a ticket to someone else."""
    TICKETS_PRIORITY = "tickets.priority"
    """Override the priority, or correct the category, with a reason."""
    STAFF_READ = "staff.read"
    """Groups, agents and their loads."""
    ADMIN = "admin"
    """Users, groups, agents, triage rules, SLA policies, API keys, webhooks."""
    AUDIT_READ = "audit.read"
    OPS_READ = "ops.read"
    """Health of every service, dead letters: never ticket content."""


PUBLIC = "public"
"""Routes that need no one signed in (login, refresh, the service's own probes)."""

_WORKER = {Permission.SELF, Permission.TICKETS_READ, Permission.TICKETS_WORK}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.AGENT: frozenset(_WORKER),
    Role.VENDOR: frozenset(_WORKER),
    Role.COORDINATOR: frozenset(_WORKER | {Permission.TICKETS_ASSIGN,
                                           Permission.TICKETS_PRIORITY, Permission.STAFF_READ}),
    Role.ADMIN: frozenset(Permission),
    Role.SRE: frozenset({Permission.SELF, Permission.OPS_READ}),
}

SCOPED_ROLES = frozenset({Role.AGENT, Role.VENDOR})
"""Roles that see only the tickets of their own groups."""


class Scope(StrEnum):
    """What an API key may do on top of its role's rules."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the token or key says: checked on every request."""

    subject: str
    """The username (an agent's username is its agent id in routing), or ``key:<id>``."""
    role: Role
    name: str = ""
    level: SupportLevel | None = None
    groups: frozenset[str] = frozenset()
    via: str = "password"
    """password, oidc or api_key."""
    session_id: str | None = None
    scopes: frozenset[Scope] = field(default_factory=lambda: frozenset(Scope))

    @property
    def sees_every_ticket(self) -> bool:
        return self.role not in SCOPED_ROLES


def may(principal: Principal, permission: Permission, *, writes: bool) -> bool:
    """The role allows it, and an API key's scopes allow a change when it is one."""
    if permission not in ROLE_PERMISSIONS[principal.role]:
        return False
    needed = Scope.WRITE if writes else Scope.READ
    return needed in principal.scopes


def sees_ticket(principal: Principal, group_ids: Iterable[str | None]) -> bool:
    """Coordinators and admins see every ticket; an agent or a vendor those held (or owned,
    after a hand-back) by one of its groups; an SRE none."""
    if principal.role is Role.SRE:
        return False
    if principal.sees_every_ticket:
        return True
    return any(g in principal.groups for g in group_ids if g)


def visible_groups(principal: Principal) -> frozenset[str] | None:
    """The groups whose tickets a queue may list; ``None``: all of them."""
    return None if principal.sees_every_ticket else principal.groups


# --- every route's rule -----------------------------------------------------------------
# A route missing here is refused to everyone (see api/deps.py), and the authorization
# matrix test fails: a new route cannot go out without a decision about who may call it.

ROUTES: dict[str, Permission | str] = {
    "POST /api/auth/login": PUBLIC,
    "POST /api/auth/refresh": PUBLIC,
    "POST /api/auth/console/login": PUBLIC,
    "POST /api/auth/console/refresh": PUBLIC,
    "POST /api/auth/logout": Permission.SELF,
    "GET /api/me": Permission.SELF,
    "PUT /api/me/language": Permission.SELF,
    "PUT /api/me/availability": Permission.TICKETS_WORK,
    "GET /api/tickets": Permission.TICKETS_READ,
    "GET /api/tickets/{number}": Permission.TICKETS_READ,
    "GET /api/tickets/{number}/attachments/{attachment_id}": Permission.TICKETS_READ,
    "POST /api/tickets/{number}/take": Permission.TICKETS_WORK,
    "POST /api/tickets/{number}/assign": Permission.TICKETS_ASSIGN,
    "POST /api/tickets/{number}/replies": Permission.TICKETS_WORK,
    "POST /api/tickets/{number}/notes": Permission.TICKETS_WORK,
    "POST /api/tickets/{number}/status": Permission.TICKETS_WORK,
    "POST /api/tickets/{number}/escalate": Permission.TICKETS_WORK,
    "POST /api/tickets/{number}/hand-back": Permission.TICKETS_WORK,
    "POST /api/tickets/{number}/priority": Permission.TICKETS_PRIORITY,
    "POST /api/tickets/{number}/category": Permission.TICKETS_PRIORITY,
    "POST /api/tickets/{number}/calls": Permission.TICKETS_WORK,
    "POST /api/tickets/{number}/articles": Permission.TICKETS_WORK,
    "GET /api/stream": Permission.TICKETS_READ,
    "GET /api/staff/groups": Permission.STAFF_READ,
    "GET /api/staff/agents": Permission.STAFF_READ,
    "PUT /api/staff/agents/{agent_id}/availability": Permission.TICKETS_ASSIGN,
    "GET /api/admin/users": Permission.ADMIN,
    "POST /api/admin/users": Permission.ADMIN,
    "GET /api/admin/users/{username}": Permission.ADMIN,
    "PATCH /api/admin/users/{username}": Permission.ADMIN,
    "DELETE /api/admin/users/{username}": Permission.ADMIN,
    "POST /api/admin/users/{username}/unlock": Permission.ADMIN,
    "PUT /api/admin/groups/{group_id}": Permission.ADMIN,
    "DELETE /api/admin/groups/{group_id}": Permission.ADMIN,
    "PUT /api/admin/agents/{agent_id}": Permission.ADMIN,
    "PUT /api/admin/agents/{agent_id}/availability": Permission.ADMIN,
    "GET /api/admin/triage/policy": Permission.ADMIN,
    "PUT /api/admin/triage/policy": Permission.ADMIN,
    "POST /api/admin/triage/preview": Permission.ADMIN,
    "GET /api/admin/triage/models": Permission.ADMIN,
    "POST /api/admin/triage/model/rollback": Permission.ADMIN,
    "GET /api/admin/sla/policy": Permission.ADMIN,
    "PUT /api/admin/sla/policy": Permission.ADMIN,
    "GET /api/admin/api-keys": Permission.ADMIN,
    "POST /api/admin/api-keys": Permission.ADMIN,
    "DELETE /api/admin/api-keys/{key_id}": Permission.ADMIN,
    "GET /api/admin/webhooks": Permission.ADMIN,
    "POST /api/admin/webhooks": Permission.ADMIN,
    "GET /api/admin/webhooks/{webhook_id}": Permission.ADMIN,
    "PATCH /api/admin/webhooks/{webhook_id}": Permission.ADMIN,
    "DELETE /api/admin/webhooks/{webhook_id}": Permission.ADMIN,
    "GET /api/admin/webhooks/{webhook_id}/deliveries": Permission.ADMIN,
    "POST /api/admin/webhooks/{webhook_id}/replay": Permission.ADMIN,
    "GET /api/admin/notices": Permission.ADMIN,
    "GET /api/admin/audit": Permission.AUDIT_READ,
    "GET /api/admin/audit/export": Permission.AUDIT_READ,
    "GET /api/ops/services": Permission.OPS_READ,
    "GET /api/ops/dead-letters": Permission.OPS_READ,
}


def rule_of(method: str, path: str) -> Permission | str | None:
    return ROUTES.get(f"{method} {path}")
