"""Signed links for requesters (status page, rating): JWTs bound to one ticket number.

A requester has no account; the link in the acknowledgement is the key to
their own ticket and nothing else. PyJWT does the signing and the expiry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import jwt

ALGORITHM = "HS256"
AUDIENCE = "sportello-requester"


class TokenRefused(Exception):
    """Why a requester's link does not open the ticket (expired, forged, another ticket)."""


def issue(secret: str, number: str, *, now: datetime, ttl: timedelta) -> str:
    claims = {"sub": number, "aud": AUDIENCE, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str, number: str) -> None:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=AUDIENCE,
                            options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError as exc:
        raise TokenRefused("the link has expired; ask the service desk for a new one") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenRefused(f"the link is not valid ({type(exc).__name__})") from exc
    if claims.get("sub") != number:
        raise TokenRefused("the link is for another ticket")
