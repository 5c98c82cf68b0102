"""Admin and staff views: users and roles, groups and agents (routing's), triage rules
(routing's), SLA policies and calendars (SLA's), API keys, webhooks, notices, the audit
log. Every change is written to the audit log with before and after."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator

from sportello_contracts import utc_now
from sportello_contracts.enums import SupportLevel
from sportello_gateway.api.deps import (
    AccountsDep,
    DeskDep,
    PrincipalDep,
    WebhooksDep,
    client_ip,
    from_services,
    guard,
)
from sportello_gateway.domain.access import Role, Scope
from sportello_gateway.domain.accounts import USERNAME, AccountError
from sportello_gateway.domain.webhooks import WebhookError
from sportello_gateway.service.accounts import public_user
from sportello_runtime.http import ApiError

admin = APIRouter(tags=["admin"], dependencies=[Depends(guard)])
staff = APIRouter(tags=["staff"], dependencies=[Depends(guard)])

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
Slug = Annotated[str, Path(pattern=SLUG)]
Username = Annotated[str, Path(pattern=USERNAME)]
PassThrough = dict[str, Any]
"""A body for an owning service (routing, SLA), which validates it and refuses unknown fields;
the gateway only forwards it."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def refused(exc: AccountError | WebhookError) -> ApiError:
    return ApiError(422, "invalid", str(exc), field=exc.field)


# --- staff views (coordinators and admins) -----------------------------------------------


@staff.get("/api/staff/groups")
async def groups(desk: DeskDep) -> Any:
    with from_services():
        return await desk.backends["routing"].call("GET", "/groups")


@staff.get("/api/staff/agents")
async def agents(desk: DeskDep, group: Annotated[str | None, Query(pattern=SLUG)] = None
                 ) -> Any:
    """Agents with their level, groups, capacity, availability and open tickets now."""
    with from_services():
        return await desk.backends["routing"].call(
            "GET", "/agents", params={"group_id": group} if group else None)


class AvailabilityIn(Model):
    available: bool


@staff.put("/api/staff/agents/{agent_id}/availability")
async def set_agent_availability(agent_id: Slug, body: AvailabilityIn, request: Request,
                                 principal: PrincipalDep, desk: DeskDep) -> Any:
    """A coordinator puts an agent on or off shift (on shift takes waiting tickets)."""
    return await _forward(request, principal, desk, service="routing", method="PUT",
                          path=f"/agents/{agent_id}/availability",
                          body=body.model_dump(), action="agent.availability",
                          object_type="agent", object_id=agent_id)


# --- users -----------------------------------------------------------------------------


class AgentProfile(Model):
    skills: list[Annotated[str, Field(pattern=SLUG)]] = Field(default=[], max_length=50)
    capacity: int = Field(default=5, ge=0, le=200)
    available: bool = True


class UserIn(Model):
    username: str = Field(pattern=USERNAME)
    name: str = Field(min_length=1, max_length=100)
    role: Role
    password: str | None = Field(default=None, min_length=1, max_length=1_000,
                                 description="None: signs in through the OIDC provider only")
    level: SupportLevel | None = None
    groups: list[Annotated[str, Field(pattern=SLUG)]] = Field(default=[], max_length=20)
    email: EmailStr | None = None
    agent: AgentProfile | None = Field(default=None,
                                       description="For agents and vendors: routing's profile")
    language: Literal["en", "it"] = "en"


class UserPatch(Model):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    role: Role | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1_000)
    level: SupportLevel | None = None
    groups: list[Annotated[str, Field(pattern=SLUG)]] | None = Field(default=None,
                                                                     max_length=20)
    email: EmailStr | None = None
    disabled: bool | None = None
    language: Literal["en", "it"] | None = None

    @field_validator("name", "role", "password", "groups", "disabled", "language",
                     mode="before")
    @classmethod
    def not_null(cls, value: object) -> object:
        """Only ``level`` and ``email`` can be cleared; a null elsewhere is a mistake (it
        was a 500, found by fuzzing), not "keep it": leaving the field out keeps it."""
        if value is None:
            raise ValueError("may not be null: leave the field out to keep it")
        return value


async def _put_agent(desk: DeskDep, username: str, name: str, level: SupportLevel | None,
                     groups: list[str], profile: AgentProfile) -> Any:
    with from_services():
        return await desk.backends["routing"].call("PUT", f"/agents/{username}", json={
            "name": name, "level": (level or SupportLevel.L4).value, "groups": groups,
            "skills": profile.skills, "capacity": profile.capacity,
            "available": profile.available})


@admin.get("/api/admin/users")
async def list_users(accounts: AccountsDep) -> list[dict[str, Any]]:
    return [public_user(u) for u in await accounts.store.users()]


@admin.post("/api/admin/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserIn, request: Request, principal: PrincipalDep,
                      accounts: AccountsDep, desk: DeskDep) -> dict[str, Any]:
    """An account; an agent's or a vendor's profile is written to routing too (its agent id
    is the username), so that tickets can be given to them."""
    try:
        user = await accounts.create_user(
            username=body.username, role=body.role, name=body.name, password=body.password,
            level=body.level, groups=tuple(body.groups), email=str(body.email) if body.email
            else None, language=body.language)
    except AccountError as exc:
        raise refused(exc) from exc
    if user.role in (Role.AGENT, Role.VENDOR):
        try:
            await _put_agent(desk, user.username, user.name, user.level, list(user.groups),
                             body.agent or AgentProfile())
        except ApiError:
            await accounts.store.delete_user(user.username)  # nothing half-made is left
            raise
    await accounts.audit.record(actor=principal, action="user.create", ip=client_ip(request),
                                object_type="user", object_id=user.username,
                                after=public_user(user))
    return public_user(user)


async def _user_or_404(accounts: AccountsDep, username: str) -> Any:
    user = await accounts.store.user(username)
    if user is None:
        raise ApiError(404, "not_found", f"no user {username}")
    return user


@admin.get("/api/admin/users/{username}")
async def get_user(username: Username, accounts: AccountsDep) -> dict[str, Any]:
    return public_user(await _user_or_404(accounts, username))


@admin.patch("/api/admin/users/{username}")
async def update_user(username: Username, body: UserPatch, request: Request,
                      principal: PrincipalDep, accounts: AccountsDep, desk: DeskDep
                      ) -> dict[str, Any]:
    """Role, level, groups, password, disabling: the user's sessions end, so the next
    sign-in carries the new rights."""
    await _user_or_404(accounts, username)
    changes = body.model_dump(exclude_unset=True)
    if "groups" in changes:
        changes["groups"] = tuple(changes["groups"])
    try:
        before, after = await accounts.update_user(username, changes)
    except AccountError as exc:
        raise refused(exc) from exc
    if after.role in (Role.AGENT, Role.VENDOR) and (
            (before.level, before.groups, before.name) != (after.level, after.groups,
                                                           after.name)):
        with from_services():
            current = await desk.backends["routing"].call("GET", f"/agents/{username}")
        await _put_agent(desk, username, after.name, after.level, list(after.groups),
                         AgentProfile(skills=current["skills"], capacity=current["capacity"],
                                      available=current["available"]))
    await accounts.audit.record(actor=principal, action="user.update", ip=client_ip(request),
                                object_type="user", object_id=username,
                                before=public_user(before), after=public_user(after))
    return public_user(after)


@admin.delete("/api/admin/users/{username}", status_code=204)
async def delete_user(username: Username, request: Request, principal: PrincipalDep,
                      accounts: AccountsDep) -> None:
    """Deleting ends every session of the user. (Routing's agent stays until its open
    tickets are handed over: remove it through /api/admin/agents then.)"""
    user = await _user_or_404(accounts, username)
    if username == principal.subject:
        raise ApiError(409, "refused", "you cannot delete your own account", field="username")
    await accounts.store.delete_user(username)
    await accounts.store.revoke_sessions_of(username, utc_now())
    await accounts.audit.record(actor=principal, action="user.delete", ip=client_ip(request),
                                object_type="user", object_id=username,
                                before=public_user(user))


@admin.post("/api/admin/users/{username}/unlock", status_code=204)
async def unlock_user(username: Username, request: Request, principal: PrincipalDep,
                      accounts: AccountsDep) -> None:
    await _user_or_404(accounts, username)
    await accounts.unlock(username)
    await accounts.audit.record(actor=principal, action="user.unlock", ip=client_ip(request),
                                object_type="user", object_id=username)


# --- routing's and SLA's setup, through their APIs -------------------------------------


async def _forward(request: Request, principal: PrincipalDep, desk: DeskDep, *, service: str,
                   method: str, path: str, action: str, object_type: str, object_id: str,
                   body: Any = None, read_before: str | None = None) -> Any:
    backend = desk.backends[service]
    before = None
    with from_services():
        if read_before is not None:
            try:
                before = await backend.call("GET", read_before)
            except Exception:
                before = None
        answer = await backend.call(method, path, json=body)
    await desk.audit.record(actor=principal, action=action, ip=client_ip(request),
                            object_type=object_type, object_id=object_id, before=before,
                            after=answer if method != "DELETE" else None)
    return answer


@admin.put("/api/admin/groups/{group_id}")
async def put_group(group_id: Slug, body: PassThrough, request: Request,
                    principal: PrincipalDep, desk: DeskDep) -> Any:
    """Routing's group: name, level, categories, escalation target, vendor contact."""
    return await _forward(request, principal, desk, service="routing", method="PUT",
                          path=f"/groups/{group_id}", body=body, action="group.put",
                          object_type="group", object_id=group_id)


@admin.delete("/api/admin/groups/{group_id}", status_code=204)
async def delete_group(group_id: Slug, request: Request, principal: PrincipalDep,
                       desk: DeskDep) -> None:
    await _forward(request, principal, desk, service="routing", method="DELETE",
                   path=f"/groups/{group_id}", action="group.delete", object_type="group",
                   object_id=group_id)


@admin.put("/api/admin/agents/{agent_id}")
async def put_agent(agent_id: Slug, body: PassThrough, request: Request,
                    principal: PrincipalDep, desk: DeskDep) -> Any:
    """Routing's agent profile: level, groups, skills, capacity, availability."""
    return await _forward(request, principal, desk, service="routing", method="PUT",
                          path=f"/agents/{agent_id}", body=body, action="agent.put",
                          object_type="agent", object_id=agent_id,
                          read_before=f"/agents/{agent_id}")


@admin.put("/api/admin/agents/{agent_id}/availability")
async def put_availability(agent_id: Slug, body: PassThrough, request: Request,
                           principal: PrincipalDep, desk: DeskDep) -> Any:
    return await _forward(request, principal, desk, service="routing", method="PUT",
                          path=f"/agents/{agent_id}/availability", body=body,
                          action="agent.availability", object_type="agent",
                          object_id=agent_id)


@admin.get("/api/admin/triage/policy")
async def get_triage(desk: DeskDep) -> Any:
    with from_services():
        return await desk.backends["routing"].call("GET", "/triage/policy")


@admin.put("/api/admin/triage/policy", status_code=201)
async def put_triage(body: PassThrough, request: Request, principal: PrincipalDep,
                     desk: DeskDep) -> Any:
    """A new version of the triage rules (routing keeps every version)."""
    return await _forward(request, principal, desk, service="routing", method="PUT",
                          path="/triage/policy", body=body, action="triage.put",
                          object_type="triage_policy", object_id="current",
                          read_before="/triage/policy")


@admin.post("/api/admin/triage/preview")
async def preview_triage(body: PassThrough, desk: DeskDep) -> Any:
    """What the rules would make of a ticket: category, priority, matched rules."""
    with from_services():
        return await desk.backends["routing"].call("POST", "/triage/preview", json=body)


@admin.get("/api/admin/triage/models")
async def triage_models(desk: DeskDep) -> Any:
    """The learned triage's models: quality on the held-back tickets, which is in use."""
    with from_services():
        return await desk.backends["routing"].call("GET", "/triage/models")


@admin.post("/api/admin/triage/model/rollback")
async def roll_back_triage_model(body: PassThrough, request: Request,
                                 principal: PrincipalDep, desk: DeskDep) -> Any:
    """Back to the model used before the current one; every routing replica switches."""
    return await _forward(request, principal, desk, service="routing", method="POST",
                          path="/triage/model/rollback",
                          body={**(body or {}), "actor": principal.subject},
                          action="triage.model.rollback", object_type="triage_model",
                          object_id="current", read_before="/triage/models")


@admin.get("/api/admin/sla/policy")
async def get_sla(desk: DeskDep) -> Any:
    with from_services():
        return await desk.backends["sla"].call("GET", "/policy")


@admin.put("/api/admin/sla/policy", status_code=201)
async def put_sla(body: PassThrough, request: Request, principal: PrincipalDep,
                  desk: DeskDep) -> Any:
    """A new version of the SLA policy: targets, time boxes, calendars and holidays."""
    return await _forward(request, principal, desk, service="sla", method="PUT",
                          path="/policy", body=body, action="sla_policy.put",
                          object_type="sla_policy", object_id="current",
                          read_before="/policy")


# --- API keys ----------------------------------------------------------------------------


class ApiKeyIn(Model):
    name: str = Field(min_length=1, max_length=100)
    role: Role
    scopes: list[Scope] = Field(default=[Scope.READ], min_length=1)
    groups: list[Annotated[str, Field(pattern=SLUG)]] = Field(default=[], max_length=20)


def _key_view(key: Any) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "role": key.role.value,
            "scopes": [s.value for s in key.scopes], "groups": list(key.groups),
            "created_by": key.created_by, "created_at": key.created_at.isoformat(),
            "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
            "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None}


@admin.get("/api/admin/api-keys")
async def list_api_keys(accounts: AccountsDep) -> list[dict[str, Any]]:
    return [_key_view(k) for k in await accounts.store.api_keys()]


@admin.post("/api/admin/api-keys", status_code=201)
async def create_api_key(body: ApiKeyIn, request: Request, principal: PrincipalDep,
                         accounts: AccountsDep) -> dict[str, Any]:
    """The key is in this answer only (`key`): it is stored hashed. Send it as
    `X-Api-Key`."""
    try:
        key, shown = await accounts.create_api_key(
            name=body.name, role=body.role, scopes=tuple(dict.fromkeys(body.scopes)),
            groups=tuple(body.groups), created_by=principal.subject)
    except AccountError as exc:
        raise refused(exc) from exc
    view = _key_view(key)
    await accounts.audit.record(actor=principal, action="api_key.create",
                                ip=client_ip(request), object_type="api_key",
                                object_id=key.id, after=view)
    return {**view, "key": shown}


@admin.delete("/api/admin/api-keys/{key_id}", status_code=204)
async def revoke_api_key(key_id: Annotated[str, Path(pattern=r"^[a-f0-9]{16}$")],
                         request: Request, principal: PrincipalDep,
                         accounts: AccountsDep) -> None:
    if not await accounts.revoke_api_key(key_id):
        raise ApiError(404, "not_found", f"no active API key {key_id}")
    await accounts.audit.record(actor=principal, action="api_key.revoke",
                                ip=client_ip(request), object_type="api_key", object_id=key_id)


# --- webhooks -------------------------------------------------------------------------------

EventPattern = Annotated[str, Field(pattern=r"^(\*|[a-z]+\.(\*|[a-z_]+))$")]
WebhookId = Annotated[str, Path(pattern=r"^[a-f0-9]{32}$")]


class WebhookIn(Model):
    name: str = Field(min_length=1, max_length=100)
    url: str = Field(min_length=8, max_length=500)
    event_types: list[EventPattern] = Field(min_length=1, max_length=50)
    secret: str = Field(min_length=16, max_length=200,
                        description="Signs every delivery (HMAC-SHA256); never shown again")
    active: bool = True


class WebhookPatch(Model):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    url: str | None = Field(default=None, min_length=8, max_length=500)
    event_types: list[EventPattern] | None = Field(default=None, min_length=1, max_length=50)
    secret: str | None = Field(default=None, min_length=16, max_length=200)
    active: bool | None = None


def _webhook_view(doc: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in doc.items() if k not in ("_id", "secret")}
    view["id"] = doc["_id"]
    return _json_ready(view)


def _json_ready(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in doc.items()}


@admin.get("/api/admin/webhooks")
async def list_webhooks(webhooks: WebhooksDep) -> list[dict[str, Any]]:
    return [_webhook_view(w) for w in await webhooks.store.webhooks()]


@admin.post("/api/admin/webhooks", status_code=201)
async def create_webhook(body: WebhookIn, request: Request, principal: PrincipalDep,
                         webhooks: WebhooksDep) -> dict[str, Any]:
    """Deliveries are POSTs signed with `X-Sportello-Signature: t=<unix time>,v1=<hex
    HMAC-SHA256 of "<t>.<body>" with the secret>`, retried with backoff, recorded."""
    try:
        await webhooks.check_url(body.url)
    except WebhookError as exc:
        raise refused(exc) from exc
    doc = {"_id": uuid.uuid4().hex, "name": body.name, "url": body.url,
           "event_types": body.event_types, "secret": body.secret, "active": body.active,
           "failures_in_a_row": 0, "created_by": principal.subject, "created_at": utc_now()}
    await webhooks.store.add_webhook(doc)
    webhooks.forget_subscriptions()
    view = _webhook_view(doc)
    await webhooks.audit.record(actor=principal, action="webhook.create",
                                ip=client_ip(request), object_type="webhook",
                                object_id=str(doc["_id"]), after=view)
    return view


async def _webhook_or_404(webhooks: WebhooksDep, webhook_id: str) -> dict[str, Any]:
    doc = await webhooks.store.webhook(webhook_id)
    if doc is None:
        raise ApiError(404, "not_found", f"no webhook {webhook_id}")
    return doc


@admin.get("/api/admin/webhooks/{webhook_id}")
async def get_webhook(webhook_id: WebhookId, webhooks: WebhooksDep) -> dict[str, Any]:
    return _webhook_view(await _webhook_or_404(webhooks, webhook_id))


@admin.patch("/api/admin/webhooks/{webhook_id}")
async def update_webhook(webhook_id: WebhookId, body: WebhookPatch, request: Request,
                         principal: PrincipalDep, webhooks: WebhooksDep) -> dict[str, Any]:
    """Enabling a disabled subscription starts its failure count again."""
    before = await _webhook_or_404(webhooks, webhook_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "url" in changes:
        try:
            await webhooks.check_url(changes["url"])
        except WebhookError as exc:
            raise refused(exc) from exc
    if changes.get("active") is True:
        changes.update({"failures_in_a_row": 0, "disabled_at": None, "disabled_reason": None})
    after = await webhooks.store.update_webhook(webhook_id, changes)
    assert after is not None
    webhooks.forget_subscriptions()
    await webhooks.audit.record(actor=principal, action="webhook.update",
                                ip=client_ip(request), object_type="webhook",
                                object_id=webhook_id, before=_webhook_view(before),
                                after=_webhook_view(after))
    return _webhook_view(after)


@admin.delete("/api/admin/webhooks/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: WebhookId, request: Request, principal: PrincipalDep,
                         webhooks: WebhooksDep) -> None:
    before = await _webhook_or_404(webhooks, webhook_id)
    await webhooks.store.delete_webhook(webhook_id)
    webhooks.forget_subscriptions()
    await webhooks.audit.record(actor=principal, action="webhook.delete",
                                ip=client_ip(request), object_type="webhook",
                                object_id=webhook_id, before=_webhook_view(before))


@admin.get("/api/admin/webhooks/{webhook_id}/deliveries")
async def webhook_deliveries(webhook_id: WebhookId, webhooks: WebhooksDep,
                             limit: Annotated[int, Query(ge=1, le=500)] = 100
                             ) -> list[dict[str, Any]]:
    """Newest first: status, attempts, last answer, response time."""
    await _webhook_or_404(webhooks, webhook_id)
    return [_json_ready({**{k: v for k, v in d.items() if k != "_id"}, "id": d["_id"]})
            for d in await webhooks.store.deliveries(webhook_id, limit)]


class ReplayIn(Model):
    since: AwareDatetime
    until: AwareDatetime | None = None


@admin.post("/api/admin/webhooks/{webhook_id}/replay", status_code=202)
async def replay_webhook(webhook_id: WebhookId, body: ReplayIn, request: Request,
                         principal: PrincipalDep, webhooks: WebhooksDep) -> dict[str, int]:
    """Deliver again every event of the subscription's types from `since` (events are
    kept EVENT_RETENTION_DAYS)."""
    await _webhook_or_404(webhooks, webhook_id)
    queued = await webhooks.replay(webhook_id, body.since, body.until)
    await webhooks.audit.record(actor=principal, action="webhook.replay",
                                ip=client_ip(request), object_type="webhook",
                                object_id=webhook_id, detail=f"since {body.since.isoformat()}",
                                after={"queued": queued})
    return {"queued": queued}


@admin.get("/api/admin/notices")
async def notices(webhooks: WebhooksDep,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict[str, Any]]:
    """What admins must know: a webhook disabled, and why."""
    return [_json_ready({**{k: v for k, v in n.items() if k != "_id"}, "id": n["_id"]})
            for n in await webhooks.store.notices(limit)]


# --- the audit log ------------------------------------------------------------------------

AUDIT_COLUMNS = ("at", "actor", "role", "via", "ip", "action", "object_type", "object_id",
                 "ticket", "outcome", "detail", "before", "after")


class AuditFilter(Model):
    actor: str | None = None
    action: str | None = None
    ticket: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def _audit_page(accounts: AccountsDep, f: AuditFilter, before: tuple[datetime, str] | None,
                      limit: int) -> list[dict[str, Any]]:
    return await accounts.store.audit_entries(actor=f.actor, action=f.action, ticket=f.ticket,
                                              since=f.since, until=f.until, before=before,
                                              limit=limit)


AuditText = Annotated[str | None, Query(max_length=100, pattern=r"^[\w.:@-]+$")]


@admin.get("/api/admin/audit")
async def audit_log(
    accounts: AccountsDep,
    actor: AuditText = None, action: AuditText = None, ticket: AuditText = None,
    since: AwareDatetime | None = None, until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    next: Annotated[str | None, Query(max_length=100, pattern=r"^[\w.:+-]+\|[\w-]+$")] = None,
) -> dict[str, Any]:
    """Newest first; `next` pages on."""
    before = None
    if next:
        at, entry_id = next.split("|", 1)
        try:
            before = (datetime.fromisoformat(at), entry_id)
        except ValueError as exc:
            raise ApiError(400, "bad_cursor", "not a cursor this API gave", field="next") \
                from exc
    f = AuditFilter(actor=actor, action=action, ticket=ticket, since=since, until=until)
    entries = await _audit_page(accounts, f, before, limit + 1)
    page = entries[:limit]
    cursor = (f"{page[-1]['at'].isoformat()}|{page[-1]['_id']}"
              if len(entries) > limit else None)
    return {"items": [_audit_view(e) for e in page], "next": cursor}


@admin.get("/api/admin/audit/export", responses={200: {
    "description": "The matching entries, one a line (NDJSON) or as CSV",
    "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}}}}})
async def export_audit(
    request: Request, principal: PrincipalDep, accounts: AccountsDep,
    format: Literal["ndjson", "csv"] = "ndjson",
    actor: AuditText = None, action: AuditText = None, ticket: AuditText = None,
    since: AwareDatetime | None = None, until: AwareDatetime | None = None,
) -> Response:
    """The whole matching log, streamed: NDJSON (one entry a line) or CSV."""
    f = AuditFilter(actor=actor, action=action, ticket=ticket, since=since, until=until)
    await accounts.audit.record(actor=principal, action="audit.export", ip=client_ip(request),
                                object_type="audit", object_id=None,
                                detail=json.dumps(f.model_dump(mode="json")))

    async def rows() -> AsyncIterator[bytes]:
        before = None
        if format == "csv":
            yield (",".join(AUDIT_COLUMNS) + "\r\n").encode()
        while True:
            entries = await _audit_page(accounts, f, before, 500)
            for entry in entries:
                view = _audit_view(entry)
                if format == "ndjson":
                    yield (json.dumps(view, default=str) + "\n").encode()
                else:
                    out = io.StringIO()
                    csv.writer(out).writerow([
                        json.dumps(view.get(c), default=str)
                        if isinstance(view.get(c), dict | list) else view.get(c) or ""
                        for c in AUDIT_COLUMNS])
                    yield out.getvalue().encode()
            if len(entries) < 500:
                return
            before = (entries[-1]["at"], entries[-1]["_id"])

    media = "application/x-ndjson" if format == "ndjson" else "text/csv"
    return StreamingResponse(rows(), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="sportello-audit.{format}"'})


def _audit_view(entry: dict[str, Any]) -> dict[str, Any]:
    view = _json_ready({k: v for k, v in entry.items() if k != "_id"})
    view["id"] = entry["_id"]
    return view
