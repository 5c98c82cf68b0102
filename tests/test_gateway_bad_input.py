"""Bad input at the operators' door: expired, forged and revoked tokens, refresh tokens
used twice, brute-force sign-ins, API keys revoked, tokens from an OpenID Connect provider
(good, forged, expired, unknown user), oversized bodies, unknown fields, injection in
filters. Each gets a clear 4xx and changes nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from support.gateway import PASSWORD, add_user, admin_token, login
from support.proxy import free_port
from support.system import ADMIN_PASSWORD, JWT_SECRET, System
from support.tickets import ticket_body
from support.wait import eventually

pytestmark = pytest.mark.e2e


def access_token(secret: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": "sportello-gateway", "aud": "sportello", "sub": "admin", "sid": "0" * 32,
            "role": "admin", "grp": [], "iat": now, "exp": now + 600, **claims}
    return jwt.encode(body, secret, algorithm="HS256")


async def test_tokens_that_do_not_hold_are_refused_and_sessions_end(system: System) -> None:
    await system.start("gateway")
    async with system.gateway() as anonymous:
        nobody = await anonymous.get("/api/me")
        expired = await anonymous.get("/api/me", headers={
            "Authorization": f"Bearer {access_token(JWT_SECRET, exp=int(time.time()) - 5)}"})
        forged = await anonymous.get("/api/me", headers={
            "Authorization": f"Bearer {access_token('not-our-secret-' * 4)}"})
        garbage = await anonymous.get("/api/me", headers={"Authorization": "Bearer abc.def"})
        no_alg = await anonymous.get("/api/me", headers={"Authorization": "Bearer " + jwt.encode(
            {"sub": "admin", "role": "admin"}, key="", algorithm="none")})
    for refused in (nobody, expired, forged, garbage, no_alg):
        assert refused.status_code == 401, refused.text
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "expired" in expired.json()["message"]

    async with system.gateway() as anonymous:
        signed_in = (await anonymous.post("/api/auth/login", json={
            "username": "admin", "password": ADMIN_PASSWORD})).json()
        refreshed = await anonymous.post("/api/auth/refresh",
                                         json={"refresh_token": signed_in["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        # The first refresh token is spent: shown again, it is a stolen copy, and the
        # whole session (the new tokens too) ends.
        reused = await anonymous.post("/api/auth/refresh",
                                      json={"refresh_token": signed_in["refresh_token"]})
        after_reuse = await anonymous.post(
            "/api/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]})
    assert reused.status_code == 401
    assert "already used" in reused.json()["message"]
    assert after_reuse.status_code == 401

    token = await admin_token(system)
    async with system.gateway(token) as admin:
        assert (await admin.get("/api/me")).status_code == 200
        assert (await admin.post("/api/auth/logout")).status_code == 204

        async def refused_now() -> bool:
            return (await admin.get("/api/me")).status_code == 401

        await eventually(refused_now, timeout=5, what="the logged-out token refused")


async def test_repeated_wrong_passwords_lock_the_account_even_for_the_right_one(
    system: System,
) -> None:
    await system.start("routing")
    await system.start("gateway", LOCKOUT_THRESHOLD="3")
    async with system.gateway(await admin_token(system)) as admin:
        await add_user(admin, "carla", "coordinator")
        async with system.gateway() as anonymous:
            answers = [await anonymous.post("/api/auth/login", json={
                "username": "carla", "password": f"guess-{n}-wrong"}) for n in range(3)]
            locked = await anonymous.post("/api/auth/login", json={
                "username": "carla", "password": PASSWORD})
            unknown = await anonymous.post("/api/auth/login", json={
                "username": "nobody", "password": "whatever-it-is"})
        assert [a.status_code for a in answers] == [401, 401, 401]
        assert locked.status_code == 423, locked.text
        assert int(locked.headers["Retry-After"]) > 0
        assert unknown.status_code == 401  # the same answer as a wrong password
        assert unknown.json()["message"] == answers[0].json()["message"]
        assert (await admin.post("/api/admin/users/carla/unlock")).status_code == 204
        assert await login(system, "carla")
        log = (await admin.get("/api/admin/audit", params={"actor": "carla"})).json()
    outcomes = [e["outcome"] for e in log["items"] if e["action"] == "auth.login"]
    assert outcomes.count("refused") == 3
    assert "locked" in outcomes
    assert "ok" in outcomes


async def test_api_keys_are_shown_once_scoped_and_revocable(system: System) -> None:
    await system.start("intake")
    await system.start("routing")
    await system.start("gateway")
    async with system.gateway(await admin_token(system)) as admin:
        created = (await admin.post("/api/admin/api-keys", json={
            "name": "wallboard", "role": "coordinator", "scopes": ["read"]})).json()
        listed = (await admin.get("/api/admin/api-keys")).json()
        assert "key" not in listed[0]
        assert created["key"] not in json.dumps(listed)
        async with system.gateway(**{"X-Api-Key": created["key"]}) as wallboard:
            assert (await wallboard.get("/api/tickets")).status_code == 200
            assert (await wallboard.post("/api/tickets/HD-2026-000001/notes", json={
                "body": "x"}, headers={"If-Match": '"1.1"'})).status_code == 403
            wrong_secret = created["key"][:-4] + "AAAA"
            async with system.gateway(**{"X-Api-Key": wrong_secret}) as forger:
                assert (await forger.get("/api/tickets")).status_code == 401
            assert (await admin.delete(f"/api/admin/api-keys/{created['id']}")).status_code \
                == 204

            async def refused_now() -> bool:
                return (await wallboard.get("/api/tickets")).status_code == 401

            await eventually(refused_now, timeout=5, what="the revoked key refused")


async def test_bodies_filters_and_cursors_that_are_not_ours_get_a_clear_4xx(
    system: System,
) -> None:
    await system.start("sla")
    await system.start("routing")
    await system.start("intake")
    await system.start("gateway")
    async with system.channel_client() as channel:
        ticket = (await channel.post("/tickets", json=ticket_body(7))).json()
    async with system.gateway(await admin_token(system)) as admin:
        big = await admin.post("/api/admin/users", content=b"{" + b" " * 300_000 + b"}",
                               headers={"Content-Type": "application/json"})
        unknown_field = await admin.post("/api/admin/users", json={
            "username": "mallory", "name": "M", "role": "admin", "password": PASSWORD,
            "is_superuser": True})
        bad_role = await admin.post("/api/admin/users", json={
            "username": "mallory", "name": "M", "role": "root", "password": PASSWORD})
        weak = await admin.post("/api/admin/users", json={
            "username": "mallory", "name": "M", "role": "sre", "password": "short"})
        operator_in_text = await admin.get("/api/tickets", params={"q": '{"$gt": ""}'})
        regex_in_text = await admin.get("/api/tickets", params={"q": ".*"})
        operator_in_field = await admin.get("/api/tickets", params={"requester": '{"$ne":1}'})
        bracket = await admin.get("/api/tickets", params={"group[$ne]": "x", "view": "all"})
        cursor = await admin.get("/api/tickets", params={"next": "eyJzIjoicHJpb3JpdHkiLCJ2Ijpb"
                                                                   "eyIkZ3QiOiIifV19"})
        bad_view = await admin.get("/api/tickets", params={"view": "everything"})
        not_a_number = await admin.get("/api/tickets/HD-1 OR 1=1")
        bad_etag = await admin.post(f"/api/tickets/{ticket['number']}/notes",
                                    json={"body": "x"}, headers={"If-Match": "*"})
        users = (await admin.get("/api/admin/users")).json()

    assert big.status_code == 413
    assert unknown_field.status_code == 422
    assert unknown_field.json()["detail"][0]["field"] == "is_superuser"
    assert bad_role.status_code == 422
    assert bad_role.json()["detail"][0]["field"] == "role"
    assert weak.status_code == 422
    assert weak.json()["field"] == "password"
    assert [u["username"] for u in users] == ["admin"]  # nothing was created
    # Text is matched literally: an operator or a pattern finds nothing, never everything.
    assert operator_in_text.status_code == 200
    assert operator_in_text.json()["items"] == []
    assert regex_in_text.status_code == 200
    assert regex_in_text.json()["items"] == []
    assert operator_in_field.status_code == 422
    assert operator_in_field.json()["detail"][0]["field"] == "requester"
    assert bracket.status_code == 200  # an unknown parameter is no filter at all
    assert cursor.status_code == 400
    assert cursor.json()["field"] == "next"
    assert bad_view.status_code == 422
    assert bad_view.json()["detail"][0]["field"] == "view"
    assert not_a_number.status_code == 422
    assert bad_etag.status_code == 400
    assert bad_etag.json()["field"] == "If-Match"


# --- tokens from an OpenID Connect provider ----------------------------------------------


class Provider:
    """A provider as far as the gateway sees one: its keys (JWKS) over HTTP, and tokens it
    signs for the test."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwks = json.dumps({"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(jwks.encode())

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def token(self, username: str, *, key: Any = None, kid: str = "k1",
              expires_in: int = 300, audience: str = "sportello-console") -> str:
        now = datetime.now(UTC)
        return jwt.encode({"iss": self.issuer, "aud": audience, "sub": f"id-{username}",
                           "preferred_username": username, "iat": now,
                           "exp": now + timedelta(seconds=expires_in)},
                          key or self.key, algorithm="RS256", headers={"kid": kid})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    serving = Provider()
    yield serving
    serving.close()


async def test_an_oidc_providers_tokens_are_checked_against_its_published_keys(
    system: System, provider: Provider,
) -> None:
    await system.start("gateway", OIDC_ISSUER=provider.issuer,
                       OIDC_JWKS_URL=f"{provider.issuer}/jwks.json",
                       OIDC_AUDIENCE="sportello-console")
    async with system.gateway(await admin_token(system)) as admin:
        await add_user(admin, "olivia", "coordinator", password=None)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "good": provider.token("olivia"),
        "forged": provider.token("olivia", key=other_key),
        "unknown key": provider.token("olivia", key=other_key, kid="k9"),
        "expired": provider.token("olivia", expires_in=-60),
        "other audience": provider.token("olivia", audience="someone-else"),
        "no account here": provider.token("mallory"),
    }
    answers = {}
    for name, token in cases.items():
        async with system.gateway(token) as client:
            answers[name] = await client.get("/api/me")
    assert answers["good"].status_code == 200, answers["good"].text
    assert answers["good"].json()["via"] == "oidc"
    assert answers["good"].json()["role"] == "coordinator"
    for name in cases.keys() - {"good"}:
        assert answers[name].status_code == 401, (name, answers[name].text)
    # Olivia has no password here: she cannot sign in with one.
    async with system.gateway() as anonymous:
        assert (await anonymous.post("/api/auth/login", json={
            "username": "olivia", "password": "anything-at-all"})).status_code == 401
