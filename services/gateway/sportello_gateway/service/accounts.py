"""Signing in and out, sessions with rotating refresh tokens, API keys, users, and the
audit log every command and admin change is written to."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sportello_contracts import utc_now
from sportello_contracts.enums import SupportLevel
from sportello_gateway.domain import accounts as rules
from sportello_gateway.domain.access import Principal, Role, Scope
from sportello_gateway.domain.accounts import AccountError, ApiKey, User
from sportello_gateway.service.metrics import GatewayMetrics
from sportello_gateway.store import GatewayStore
from sportello_gateway.tokens import AccessTokens, BadToken, OidcVerifier
from sportello_runtime.concurrency import retry_on_conflict

log = logging.getLogger(__name__)


class NotSignedIn(Exception):
    """401: no credentials, or credentials that do not hold."""


class Locked(Exception):
    """The account is locked after repeated failures."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"locked until {until.isoformat()}")
        self.until = until


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int


class Audit:
    """Append-only: who, when, from where, on what, before and after."""

    def __init__(self, store: GatewayStore) -> None:
        self._store = store

    async def record(self, *, actor: Principal | str | None, action: str, ip: str | None,
                     object_type: str, object_id: str | None, ticket: str | None = None,
                     before: Any = None, after: Any = None, outcome: str = "ok",
                     detail: str | None = None) -> None:
        who: str | None
        role: str | None
        via: str | None
        if isinstance(actor, Principal):
            who, role, via = actor.subject, actor.role.value, actor.via
        else:
            who, role, via = actor, None, None
        await self._store.audit({
            "_id": f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}", "at": utc_now(),
            "actor": who, "role": role, "via": via, "ip": ip, "action": action,
            "object_type": object_type, "object_id": object_id, "ticket": ticket,
            "before": before, "after": after, "outcome": outcome, "detail": detail,
        })


class Accounts:
    def __init__(self, store: GatewayStore, audit: Audit, metrics: GatewayMetrics, *,
                 tokens: AccessTokens, refresh_ttl: timedelta, lockout_threshold: int,
                 lockout: timedelta, password_min_length: int, session_check_s: float,
                 oidc: OidcVerifier | None) -> None:
        self.store = store
        self.audit = audit
        self.metrics = metrics
        self.tokens = tokens
        self.refresh_ttl = refresh_ttl
        self.lockout_threshold = lockout_threshold
        self.lockout = lockout
        self.password_min_length = password_min_length
        self.session_check_s = session_check_s
        self.oidc = oidc
        self._hasher = PasswordHasher()  # argon2id, the library's recommended parameters
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        self._sessions_ok: dict[str, float] = {}
        self._keys_ok: dict[str, tuple[float, ApiKey]] = {}

    # -- passwords (argon2id is slow on purpose: off the event loop) ------------------------

    async def hash_password(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def _password_matches(self, stored: str | None, password: str) -> bool:
        def verify() -> bool:
            try:
                return self._hasher.verify(stored or self._dummy_hash, password)
            except (VerificationError, InvalidHashError):
                return False
        return await asyncio.to_thread(verify) and stored is not None

    # -- signing in and out -----------------------------------------------------------------

    async def login(self, username: str, password: str, ip: str | None) -> Tokens:
        now = utc_now()
        user = await self.store.user(username)
        if user is not None and rules.is_locked(user, now):
            assert user.locked_until is not None
            self.metrics.logins.labels("locked").inc()
            await self.audit.record(actor=username, action="auth.login", ip=ip,
                                    object_type="user", object_id=username, outcome="locked")
            raise Locked(user.locked_until)
        # An unknown user costs the same hash as a known one: timing does not tell them apart.
        matches = await self._password_matches(user.password_hash if user else None, password)
        if user is None or not matches or user.disabled:
            if user is not None and not user.disabled:
                failures, until = rules.after_failure(user, now, threshold=self.lockout_threshold,
                                                      lockout=self.lockout)
                await self.store.record_login_failure(user.username, failures, until)
            self.metrics.logins.labels("refused").inc()
            await self.audit.record(actor=username, action="auth.login", ip=ip,
                                    object_type="user", object_id=username, outcome="refused")
            raise NotSignedIn("wrong username or password")
        await self.store.record_login(user.username)
        tokens = await self._open_session(user, via="password", ip=ip, now=now)
        self.metrics.logins.labels("ok").inc()
        await self.audit.record(actor=user.principal(via="password", session_id=None),
                                action="auth.login", ip=ip, object_type="user",
                                object_id=username)
        return tokens

    async def _open_session(self, user: User, *, via: str, ip: str | None,
                            now: datetime) -> Tokens:
        session_id = uuid.uuid4().hex
        refresh, secret_digest = rules.new_refresh_token(session_id)
        await self.store.add_session(session_id, user.username, secret_digest, via=via, now=now,
                                     expires_at=now + self.refresh_ttl, ip=ip)
        access = self.tokens.issue(user.principal(via=via, session_id=session_id), now)
        return Tokens(access, refresh, int(self.tokens.ttl.total_seconds()))

    async def refresh(self, token: str, ip: str | None) -> Tokens:
        """A new access token and a new refresh token; the old refresh token is spent. A
        spent one presented again means it was copied: the whole session is revoked."""
        parsed = rules.read_refresh_token(token)
        if parsed is None:
            raise NotSignedIn("not a refresh token")
        session_id, secret = parsed
        now = utc_now()
        session = await self.store.session(session_id)
        if session is None or session["revoked_at"] is not None or session["expires_at"] <= now:
            raise NotSignedIn("the session has ended; sign in again")
        if session["previous"] and rules.same_digest(secret, session["previous"]):
            await self.store.revoke_session(session_id, now)
            self._sessions_ok.pop(session_id, None)
            await self.audit.record(actor=session["username"], action="auth.refresh_reused",
                                    ip=ip, object_type="session", object_id=session_id,
                                    outcome="revoked")
            raise NotSignedIn("this refresh token was already used; the session is revoked")
        if not rules.same_digest(secret, session["secret"]):
            raise NotSignedIn("not a valid refresh token")
        user = await self.store.user(session["username"])
        if user is None or user.disabled:
            await self.store.revoke_session(session_id, now)
            raise NotSignedIn("the account is disabled")
        new_token, new_digest = rules.new_refresh_token(session_id)
        if not await self.store.rotate_session(session_id, session["secret"], new_digest,
                                               now=now, expires_at=now + self.refresh_ttl):
            raise NotSignedIn("the refresh token was used concurrently; sign in again")
        # Role, level and groups are read again: a change by an admin takes effect here.
        access = self.tokens.issue(user.principal(via=session["via"], session_id=session_id),
                                   now)
        return Tokens(access, new_token, int(self.tokens.ttl.total_seconds()))

    async def logout(self, principal: Principal, ip: str | None) -> None:
        if principal.session_id is None:
            return
        await self.store.revoke_session(principal.session_id, utc_now())
        self._sessions_ok.pop(principal.session_id, None)
        await self.audit.record(actor=principal, action="auth.logout", ip=ip,
                                object_type="session", object_id=principal.session_id)

    # -- who is calling ------------------------------------------------------------------

    async def authenticate(self, bearer: str | None, api_key: str | None) -> Principal:
        if api_key:
            return await self._by_api_key(api_key)
        if not bearer:
            raise NotSignedIn("sign in: Authorization: Bearer <access token>, or X-Api-Key")
        if self.oidc is not None and self.oidc.is_theirs(bearer):
            return await self._by_oidc(bearer)
        try:
            principal = self.tokens.read(bearer)
        except BadToken as exc:
            raise NotSignedIn(str(exc)) from exc
        await self._check_session(principal)
        return principal

    async def _check_session(self, principal: Principal) -> None:
        sid = principal.session_id
        assert sid is not None
        checked = self._sessions_ok.get(sid)
        if checked is not None and time.monotonic() - checked < self.session_check_s:
            return
        session = await self.store.session(sid)
        if session is None or session["revoked_at"] is not None:
            raise NotSignedIn("the session has ended; sign in again")
        if len(self._sessions_ok) > 50_000:
            self._sessions_ok.clear()
        self._sessions_ok[sid] = time.monotonic()

    async def _by_oidc(self, token: str) -> Principal:
        assert self.oidc is not None
        try:
            username = await self.oidc.username(token)
        except BadToken as exc:
            raise NotSignedIn(str(exc)) from exc
        user = await self.store.user(username)
        if user is None or user.disabled:
            raise NotSignedIn(f"{username} has no enabled account here")
        return user.principal(via="oidc", session_id=None)

    async def _by_api_key(self, presented: str) -> Principal:
        parsed = rules.read_api_key(presented)
        if parsed is None:
            raise NotSignedIn("not an API key")
        key_id, secret = parsed
        cached = self._keys_ok.get(key_id)
        if cached is not None and time.monotonic() - cached[0] < self.session_check_s:
            key: ApiKey | None = cached[1]
        else:
            key = await self.store.api_key(key_id)
            if key is not None and key.revoked_at is None:
                self._keys_ok[key_id] = (time.monotonic(), key)
                await self.store.key_used(key_id, utc_now())
        if key is None or key.revoked_at is not None or not rules.same_digest(
                secret, key.secret_digest):
            raise NotSignedIn("the API key is not valid or was revoked")
        return key.principal()

    # -- users -------------------------------------------------------------------------------

    async def seed_admin(self, password: str | None) -> None:
        """First start: with no users yet, an ``admin`` whose password the deployment gave."""
        if await self.store.has_users():
            return
        if not password:
            log.warning("no users yet and GATEWAY_ADMIN_PASSWORD is not set: nobody can sign "
                        "in until it is")
            return
        admin = User("admin", Role.ADMIN, "Administrator", await self.hash_password(password))
        if await self.store.add_user(admin):
            log.info("created the first admin account, 'admin'")
            await self.audit.record(actor="gateway", action="user.create", ip=None,
                                    object_type="user", object_id="admin",
                                    after=public_user(admin))

    async def create_user(self, *, username: str, role: Role, name: str, password: str | None,
                          level: SupportLevel | None, groups: tuple[str, ...],
                          email: str | None, language: str = "en") -> User:
        rules.check_profile(role, level, groups)
        if role is Role.VENDOR:
            level = SupportLevel.L4
        hashed = None
        if password is not None:
            rules.check_password(password, username=username,
                                 min_length=self.password_min_length)
            hashed = await self.hash_password(password)
        user = User(username, role, name, hashed, level, groups, email, language=language)
        if not await self.store.add_user(user):
            raise AccountError(f"{username} exists already", field="username")
        return user

    async def update_user(self, username: str, changes: dict[str, Any]) -> tuple[User, User]:
        """(before, after). A new role, level, groups or password, or disabling, ends the
        user's sessions: the next sign-in carries the new rights."""
        password = changes.pop("password", None)
        hashed = None
        if password is not None:
            rules.check_password(password, username=username,
                                 min_length=self.password_min_length)
            hashed = await self.hash_password(password)

        async def step() -> tuple[User, User]:
            current = await self.store.user(username)
            if current is None:
                raise LookupError(username)
            updated = replace(current, **changes)
            if hashed is not None:
                updated = replace(updated, password_hash=hashed)
            if updated.role is Role.VENDOR and updated.level is None:
                updated = replace(updated, level=SupportLevel.L4)
            rules.check_profile(updated.role, updated.level, updated.groups)
            await self.store.replace_user(updated, expected_version=current.version)
            return current, replace(updated, version=current.version + 1)

        before, after = await retry_on_conflict(step, what=f"user {username}")
        if hashed is not None or {"role", "level", "groups", "disabled"} & set(changes):
            await self.store.revoke_sessions_of(username, utc_now())
            self._sessions_ok.clear()
        return before, after

    async def unlock(self, username: str) -> None:
        await self.store.record_login(username)

    # -- API keys ----------------------------------------------------------------------------

    async def create_api_key(self, *, name: str, role: Role, scopes: tuple[Scope, ...],
                             groups: tuple[str, ...], created_by: str) -> tuple[ApiKey, str]:
        rules.check_api_key(role, groups)
        key_id, shown, secret_digest = rules.new_api_key()
        key = ApiKey(key_id, name, role, scopes, groups, created_by, utc_now(), secret_digest)
        await self.store.add_api_key(key)
        return key, shown

    async def revoke_api_key(self, key_id: str) -> bool:
        revoked = await self.store.revoke_api_key(key_id, utc_now())
        self._keys_ok.pop(key_id, None)
        return revoked


def public_user(u: User) -> dict[str, Any]:
    """A user as the audit log and the admin API show it: never the password hash."""
    return {"username": u.username, "role": u.role.value, "name": u.name,
            "level": u.level.value if u.level else None, "groups": list(u.groups),
            "email": u.email, "disabled": u.disabled, "language": u.language, "sign_in": (
                "password" if u.password_hash else "oidc"),
            "locked_until": u.locked_until.isoformat() if u.locked_until else None}
