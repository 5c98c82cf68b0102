"""Who may call what, generated from the gateway's OpenAPI: every route x every kind of
caller (anonymous, each role, a read-only API key, another group's agent, a vendor on
another vendor's ticket) gets the allow or deny this table expects. A route the table
does not know fails the test, and the gateway refuses it to everyone meanwhile."""

from __future__ import annotations

import httpx
import pytest

from support.gateway import add_user, admin_token, login, workspace
from support.system import System
from support.tickets import ticket_body, wait_assigned

pytestmark = pytest.mark.e2e

SIGNED_IN = {"agent", "vendor", "coordinator", "admin", "sre", "key"}
WORKERS = {"agent", "vendor", "coordinator", "admin"}
READERS = WORKERS | {"key"}  # the key is a coordinator's, read-only
COORDINATION = {"coordinator", "admin"}
ADMIN = {"admin"}
OPS = {"sre", "admin"}
ANYONE = SIGNED_IN | {"anonymous"}

EXPECTED: dict[str, set[str]] = {
    "POST /api/auth/login": ANYONE,
    "POST /api/auth/refresh": ANYONE,
    "POST /api/auth/console/login": ANYONE,
    # Renewed only from a console session's cookies (and its CSRF header): none here.
    "POST /api/auth/console/refresh": set(),
    "PUT /api/me/language": SIGNED_IN - {"key"},
    "POST /api/auth/logout": SIGNED_IN - {"key"},  # a key has no session to end
    "GET /api/me": SIGNED_IN,
    "PUT /api/me/availability": WORKERS,
    "GET /api/tickets": READERS,
    "GET /api/tickets/{number}": READERS,
    "GET /api/tickets/{number}/attachments/{attachment_id}": READERS,
    "POST /api/tickets/{number}/take": WORKERS,
    "POST /api/tickets/{number}/assign": COORDINATION,
    "POST /api/tickets/{number}/replies": WORKERS,
    "POST /api/tickets/{number}/notes": WORKERS,
    "POST /api/tickets/{number}/status": WORKERS,
    "POST /api/tickets/{number}/escalate": WORKERS,
    "POST /api/tickets/{number}/hand-back": WORKERS,
    "POST /api/tickets/{number}/priority": COORDINATION,
    "POST /api/tickets/{number}/category": COORDINATION,
    "POST /api/tickets/{number}/calls": WORKERS,
    "POST /api/tickets/{number}/articles": WORKERS,
    "GET /api/stream": READERS,
    "GET /api/staff/groups": COORDINATION | {"key"},
    "GET /api/staff/agents": COORDINATION | {"key"},
    "PUT /api/staff/agents/{agent_id}/availability": COORDINATION,
    "GET /api/admin/users": ADMIN,
    "POST /api/admin/users": ADMIN,
    "GET /api/admin/users/{username}": ADMIN,
    "PATCH /api/admin/users/{username}": ADMIN,
    "DELETE /api/admin/users/{username}": ADMIN,
    "POST /api/admin/users/{username}/unlock": ADMIN,
    "PUT /api/admin/groups/{group_id}": ADMIN,
    "DELETE /api/admin/groups/{group_id}": ADMIN,
    "PUT /api/admin/agents/{agent_id}": ADMIN,
    "PUT /api/admin/agents/{agent_id}/availability": ADMIN,
    "GET /api/admin/triage/policy": ADMIN,
    "PUT /api/admin/triage/policy": ADMIN,
    "POST /api/admin/triage/preview": ADMIN,
    "GET /api/admin/triage/models": ADMIN,
    "POST /api/admin/triage/model/rollback": ADMIN,
    "GET /api/admin/sla/policy": ADMIN,
    "PUT /api/admin/sla/policy": ADMIN,
    "GET /api/admin/api-keys": ADMIN,
    "POST /api/admin/api-keys": ADMIN,
    "DELETE /api/admin/api-keys/{key_id}": ADMIN,
    "GET /api/admin/webhooks": ADMIN,
    "POST /api/admin/webhooks": ADMIN,
    "GET /api/admin/webhooks/{webhook_id}": ADMIN,
    "PATCH /api/admin/webhooks/{webhook_id}": ADMIN,
    "DELETE /api/admin/webhooks/{webhook_id}": ADMIN,
    "GET /api/admin/webhooks/{webhook_id}/deliveries": ADMIN,
    "POST /api/admin/webhooks/{webhook_id}/replay": ADMIN,
    "GET /api/admin/notices": ADMIN,
    "GET /api/admin/audit": ADMIN,
    "GET /api/admin/audit/export": ADMIN,
    "GET /api/ops/services": OPS,
    "GET /api/ops/dead-letters": OPS,
}

SERVICE_ROUTES = {"GET /health/live", "GET /health/ready"}
"""The probes every service has: public by design, no ticket content."""


def fill(path: str, number: str) -> str:
    """Harmless targets: nobody and nothing that exists is deleted or changed."""
    return (path.replace("{number}", number).replace("{attachment_id}", "no-such-file")
            .replace("{username}", "nobody-here").replace("{group_id}", "zz-no-group")
            .replace("{agent_id}", "nobody-here").replace("{key_id}", "0" * 16)
            .replace("{webhook_id}", "0" * 32))


async def call(client: httpx.AsyncClient, method: str, path: str) -> int:
    if path == "/api/stream":
        async with client.stream("GET", path) as response:
            return response.status_code
    body: dict[str, str] | None = None if method in ("GET", "DELETE") else {}
    return (await client.request(method, path, json=body)).status_code


async def test_every_route_allows_exactly_the_roles_it_should(system: System) -> None:
    await system.start("sla")
    await system.start("routing")
    await system.start("intake")
    gateway = await system.start("gateway")
    async with system.gateway(await admin_token(system)) as admin:
        spec = (await admin.get("/openapi.json")).json()
        routes = {f"{method.upper()} {path}" for path, item in spec["paths"].items()
                  for method in item}
        unknown = routes - set(EXPECTED) - SERVICE_ROUTES
        assert not unknown, f"routes without an expected rule: {sorted(unknown)}"
        assert not set(EXPECTED) - routes, "the table names routes that no longer exist"

        await add_user(admin, "anna", "agent", level="L1", groups=("service-desk",))
        await add_user(admin, "olga", "agent", level="L2", groups=("l2-software",))
        await add_user(admin, "vito", "vendor", groups=("l4-vendor",))
        put = await admin.put("/api/admin/groups/l4-acme", json={
            "name": "Acme (vendor)", "level": "L4", "vendor_contact": "support@acme.example"})
        assert put.status_code in (200, 201), put.text
        await add_user(admin, "vera", "vendor", groups=("l4-acme",))
        await add_user(admin, "carla", "coordinator")
        await add_user(admin, "sam", "sre")
        key = (await admin.post("/api/admin/api-keys", json={
            "name": "reporting", "role": "coordinator", "scopes": ["read"]})).json()["key"]

    # Two tickets: one at the first line, one handed over to the vendor l4-vendor.
    async with system.channel_client() as channel:
        first = (await channel.post("/tickets", json=ticket_body(1))).json()
        second = (await channel.post("/tickets", json=ticket_body(2))).json()
    async with system.client("intake") as intake:
        await wait_assigned(intake, first["number"])
        await wait_assigned(intake, second["number"])
    async with system.client("routing") as routing:
        for group in ("l3-experts", "l4-vendor"):
            moved = await routing.post(f"/assignments/{second['id']}/escalate",
                                       json={"reason": "test setup", "to_group": group})
            assert moved.status_code == 200, moved.text

    tokens = {role: await login(system, name) for role, name in (
        ("agent", "anna"), ("vendor", "vito"), ("coordinator", "carla"), ("sre", "sam"),
        ("admin", "admin"), ("other_agent", "olga"), ("other_vendor", "vera"))
        if name != "admin"}
    tokens["admin"] = await admin_token(system)
    headers: dict[str, dict[str, str]] = {
        **{role: {"Authorization": f"Bearer {t}"} for role, t in tokens.items()},
        "key": {"X-Api-Key": key}, "anonymous": {}}

    def ticket_for(role: str) -> str:
        return str(second["number"] if role == "vendor" else first["number"])

    wrong: list[str] = []
    # Log out last: it ends the session the rest of the calls use.
    ordered = sorted(EXPECTED, key=lambda r: r == "POST /api/auth/logout")
    for role in ("anonymous", "agent", "vendor", "coordinator", "admin", "sre", "key"):
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers[role],
                                     timeout=10) as client:
            for route in ordered:
                method, path = route.split(" ", 1)
                status = await call(client, method, fill(path, ticket_for(role)))
                allowed = role in EXPECTED[route]
                denied = status in (401, 403)
                if allowed == denied:
                    wrong.append(f"{role} {route}: {status}")
    assert not wrong, "\n".join(wrong)

    # The matrix logged everyone out: sessions ended, so sign in again.
    for role, name in (("agent", "anna"), ("vendor", "vito")):
        headers[role] = {"Authorization": f"Bearer {await login(system, name)}"}

    # Scope within a role: another group's agent, another vendor, see nothing of a ticket.
    for role, number in (("other_agent", first["number"]), ("other_vendor", second["number"]),
                         ("agent", second["number"]), ("vendor", first["number"])):
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers[role],
                                     timeout=10) as client:
            seen = await client.get(f"/api/tickets/{number}")
            noted = await client.post(f"/api/tickets/{number}/notes", json={"body": "x"},
                                      headers={"If-Match": '"1.1"'})
            listed = (await client.get("/api/tickets", params={"view": "all"})).json()
        assert seen.status_code == 404, (role, seen.text)
        assert noted.status_code == 404, (role, noted.text)
        assert number not in {i["number"] for i in listed["items"]}, role
    # ... while the right agent and vendor do.
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers["vendor"],
                                 timeout=10) as vendor:
        ws, etag = await workspace(vendor, second["number"])
        noted = await vendor.post(f"/api/tickets/{second['number']}/notes",
                                  json={"body": "Part ordered"}, headers={"If-Match": etag})
    assert ws["assignment"]["group_id"] == "l4-vendor"
    assert noted.status_code == 200, noted.text
