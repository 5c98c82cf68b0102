"""Access tokens: our own short-lived JWTs (HS256), and an OpenID Connect provider's
tokens checked against its published keys (JWKS) when one is configured."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt

from sportello_contracts.enums import SupportLevel
from sportello_gateway.domain.access import Principal, Role

log = logging.getLogger(__name__)

ISSUER = "sportello-gateway"
AUDIENCE = "sportello"


class BadToken(Exception):
    """Expired, forged, malformed or from an unknown issuer: the caller is not signed in."""


@dataclass(frozen=True)
class AccessTokens:
    secret: str
    ttl: timedelta

    def issue(self, principal: Principal, now: datetime) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": principal.subject, "sid": principal.session_id,
            "role": principal.role.value, "name": principal.name, "grp": sorted(principal.groups),
            "lvl": principal.level.value if principal.level else None, "via": principal.via,
            "iat": int(now.timestamp()), "exp": int((now + self.ttl).timestamp()),
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def read(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], audience=AUDIENCE,
                                issuer=ISSUER, options={"require": ["exp", "sub", "sid"]})
            return Principal(
                subject=str(claims["sub"]), role=Role(claims["role"]),
                name=str(claims.get("name", "")),
                level=SupportLevel(claims["lvl"]) if claims.get("lvl") else None,
                groups=frozenset(str(g) for g in claims.get("grp", [])),
                via=str(claims.get("via", "password")), session_id=str(claims["sid"]))
        except jwt.ExpiredSignatureError as exc:
            raise BadToken("the access token has expired") from exc
        except (jwt.InvalidTokenError, ValueError, KeyError) as exc:
            raise BadToken("the access token is not valid") from exc


class OidcVerifier:
    """Checks a provider's token: signature by a key from its JWKS (fetched, cached, and
    fetched again when a token names a key not seen yet), issuer, audience, expiry."""

    def __init__(self, *, issuer: str, audience: str | None, jwks_url: str,
                 username_claim: str, algorithms: list[str], timeout_s: float = 5.0,
                 refetch_after_s: float = 300.0) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.username_claim = username_claim
        self.algorithms = algorithms
        self._timeout_s = timeout_s
        self._refetch_after_s = refetch_after_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    def is_theirs(self, token: str) -> bool:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return False
        return claims.get("iss") == self.issuer

    async def username(self, token: str) -> str:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise BadToken("the token is not valid") from exc
        key = await self._key(str(header.get("kid", "")))
        try:
            claims = jwt.decode(token, key.key, algorithms=self.algorithms,
                                audience=self.audience, issuer=self.issuer,
                                options={"require": ["exp", "iss"],
                                         "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError as exc:
            raise BadToken("the provider's token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise BadToken("the provider's token is not valid") from exc
        name = claims.get(self.username_claim)
        if not isinstance(name, str) or not name:
            raise BadToken(f"the provider's token has no {self.username_claim}")
        return name

    async def _key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None and time.monotonic() - self._fetched_at < self._refetch_after_s:
            return key
        async with self._lock:
            # A key not seen yet may be a new one the provider rotated in: fetch again, but
            # not more than every few seconds, so forged kids cannot make us hammer it.
            if kid not in self._keys or time.monotonic() - self._fetched_at > 5:
                await self._fetch()
        key = self._keys.get(kid)
        if key is None:
            raise BadToken("the token is signed by a key the provider does not publish")
        return key

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                response = await client.get(self.jwks_url)
                response.raise_for_status()
                keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
            log.warning("could not read the provider's keys at %s: %s", self.jwks_url, exc)
            raise BadToken("the provider's keys cannot be read now") from exc
        self._keys = {str(k.key_id): k for k in keys}
        self._fetched_at = time.monotonic()
