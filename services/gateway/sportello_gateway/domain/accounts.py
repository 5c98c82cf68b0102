"""Accounts, sessions and API keys: the rules of signing in, no I/O.

Passwords are hashed with argon2id by the service (it is slow on purpose); here are
the rules around them: lock-out, password policy, and the shapes of the secrets
handed out (refresh tokens and API keys carry their record's id, then a secret
that is stored only as a hash).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sportello_contracts.enums import SupportLevel
from sportello_gateway.domain.access import Principal, Role, Scope


class AccountError(Exception):
    """A request the rules refuse; ``field`` names the culprit when there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


USERNAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
LANGUAGES = ("en", "it")
"""An agent's username is its agent id in routing, so both follow routing's slug."""


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    name: str
    password_hash: str | None
    """None: signs in only through the OpenID Connect provider."""
    level: SupportLevel | None = None
    groups: tuple[str, ...] = ()
    email: str | None = None
    disabled: bool = False
    failed_logins: int = 0
    locked_until: datetime | None = None
    language: str = "en"
    """The console's language: en or it."""
    version: int = 1

    def principal(self, *, via: str, session_id: str | None) -> Principal:
        return Principal(subject=self.username, role=self.role, name=self.name,
                         level=self.level, groups=frozenset(self.groups), via=via,
                         session_id=session_id)


def check_profile(role: Role, level: SupportLevel | None, groups: tuple[str, ...]) -> None:
    """Agents need a level L1-L3 and groups; vendors are L4 with their vendor group(s);
    other roles have neither."""
    if role is Role.AGENT:
        if level not in (SupportLevel.L1, SupportLevel.L2, SupportLevel.L3):
            raise AccountError("an agent works at L1, L2 or L3", field="level")
        if not groups:
            raise AccountError("an agent belongs to at least one group", field="groups")
    elif role is Role.VENDOR:
        if level not in (None, SupportLevel.L4):
            raise AccountError("a vendor works at L4", field="level")
        if not groups:
            raise AccountError("a vendor acts for its vendor group", field="groups")
    elif level is not None or groups:
        raise AccountError(f"a {role.value} has no level or groups", field="groups")


def check_password(password: str, *, username: str, min_length: int) -> None:
    if len(password) < min_length:
        raise AccountError(f"at least {min_length} characters", field="password")
    if username.lower() in password.lower():
        raise AccountError("the password must not contain the username", field="password")
    if len(set(password)) < 5:
        raise AccountError("too few different characters", field="password")


def is_locked(user: User, now: datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


def after_failure(user: User, now: datetime, *, threshold: int,
                  lockout: timedelta) -> tuple[int, datetime | None]:
    """Failures in a row, and until when the account is locked once they reach the threshold
    (counting starts again after a lock)."""
    failures = user.failed_logins + 1
    if failures >= threshold:
        return 0, now + lockout
    return failures, user.locked_until


# --- secrets handed out -------------------------------------------------------------------


def digest(secret: str) -> str:
    """Refresh tokens and API keys are long random strings: a plain SHA-256 is enough to
    store them (a password hash's slowness protects guessable secrets only)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_digest(secret: str, stored: str) -> bool:
    return hmac.compare_digest(digest(secret), stored)


_REFRESH = re.compile(r"^rt_([a-f0-9]{32})\.([A-Za-z0-9_-]{43})$")
_API_KEY = re.compile(r"^sk_([a-f0-9]{16})_([A-Za-z0-9_-]{43})$")


def new_refresh_token(session_id: str) -> tuple[str, str]:
    """(token, digest of its secret)."""
    secret = secrets.token_urlsafe(32)
    return f"rt_{session_id}.{secret}", digest(secret)


def read_refresh_token(token: str) -> tuple[str, str] | None:
    """(session id, secret), or None when the token is not one of ours."""
    found = _REFRESH.match(token)
    return (found.group(1), found.group(2)) if found else None


def new_api_key() -> tuple[str, str, str]:
    """(key id, the key shown once, digest of its secret)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, f"sk_{key_id}_{secret}", digest(secret)


def read_api_key(key: str) -> tuple[str, str] | None:
    found = _API_KEY.match(key)
    return (found.group(1), found.group(2)) if found else None


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    role: Role
    scopes: tuple[Scope, ...]
    groups: tuple[str, ...]
    created_by: str
    created_at: datetime
    secret_digest: str
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def principal(self) -> Principal:
        return Principal(subject=f"key:{self.id}", role=self.role, name=self.name,
                         groups=frozenset(self.groups), via="api_key",
                         scopes=frozenset(self.scopes))


def check_api_key(role: Role, groups: tuple[str, ...]) -> None:
    if role is Role.ADMIN:
        raise AccountError("API keys do not carry the admin role", field="role")
    if role in (Role.AGENT, Role.VENDOR) and not groups:
        raise AccountError(f"a {role.value} key acts for at least one group", field="groups")
