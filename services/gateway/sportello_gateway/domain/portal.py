"""The requester portal's rules, without I/O: one-time sign-in links, sessions, the
language a page speaks, how often a link may be asked for, and the plain words a
requester picks for impact and urgency.

A requester has no password. Proving they read their mailbox is the sign-in: a link with
a random secret, mailed, good once and for a short time. Only the secret's digest is
stored, so a copy of the database opens nothing."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sportello_contracts.enums import Impact, Urgency

LANGUAGES = ("it", "en")
DEFAULT_LANGUAGE = "en"


def new_secret() -> str:
    """A secret for a link, a session or a form: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What is stored in place of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same(presented: str | None, expected: str | None) -> bool:
    """A CSRF or session comparison that takes as long whatever the input."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def address_key(email: str) -> str:
    """One requester whatever the capitals of the address."""
    return email.strip().casefold()


# --- one-time links --------------------------------------------------------------------


class LinkRefused(StrEnum):
    """Why a sign-in link does not sign in (said to the requester in plain words)."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True)
class SignInLink:
    email: str
    language: str
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


def link_refusal(link: SignInLink | None, now: datetime) -> LinkRefused | None:
    """``None`` when the link signs in now."""
    if link is None:
        return LinkRefused.UNKNOWN
    if link.used_at is not None:
        return LinkRefused.USED
    if now >= link.expires_at:
        return LinkRefused.EXPIRED
    return None


@dataclass(frozen=True)
class LinkQuota:
    """How many links may be asked for within a window, per address and per client: a
    mailbox is not flooded, and nobody learns much by asking for many addresses."""

    per_address: int
    per_client: int
    window: timedelta


def window_start(now: datetime, window: timedelta) -> datetime:
    """The fixed window ``now`` falls in (counters are kept per window)."""
    seconds = int(window.total_seconds())
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=now.tzinfo)


def in_the_last_window(current: int, previous: int, now: datetime,
                       window: timedelta) -> float:
    """Requests within the last ``window`` before ``now``, estimated from the counts of the
    current fixed window and the one before (weighted by how much of it still falls
    within): a burst at the turn of a window does not get twice the quota."""
    elapsed = (now - window_start(now, window)) / window
    return current + previous * (1.0 - elapsed)


def within_quota(asked_by_address: float, asked_by_client: float, quota: LinkQuota) -> bool:
    """The counts include this request."""
    return asked_by_address <= quota.per_address and asked_by_client <= quota.per_client


# --- sessions --------------------------------------------------------------------------


@dataclass(frozen=True)
class PortalSession:
    email: str
    csrf: str
    language: str
    expires_at: datetime


def session_valid(session: PortalSession | None, now: datetime) -> bool:
    return session is not None and now < session.expires_at


# --- language ---------------------------------------------------------------------------

_RANGE = re.compile(r"^\s*([a-zA-Z]{1,8})(?:-[a-zA-Z0-9]{1,8})*\s*"
                    r"(?:;\s*q\s*=\s*([01](?:\.\d{0,3})?))?\s*$")


def language_of(chosen: str | None, accept_language: str | None) -> str:
    """What the requester chose (kept in a cookie), else the browser's first language we
    speak, else English."""
    if chosen in LANGUAGES:
        return chosen
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")[:20]):
        found = _RANGE.match(part)
        if not found:
            continue
        quality = float(found.group(2)) if found.group(2) else 1.0
        ranked.append((-quality, position, found.group(1).lower()))
    for _, _, language in sorted(ranked):
        if language in LANGUAGES:
            return language
    return DEFAULT_LANGUAGE


# --- what a requester says about their problem ----------------------------------------


class Reach(StrEnum):
    """Impact in a requester's words: who is affected."""

    ME = "me"
    TEAM = "team"
    EVERYONE = "everyone"


class Hurry(StrEnum):
    """Urgency in a requester's words: can they work meanwhile."""

    CAN_WAIT = "can_wait"
    SLOWED = "slowed"
    BLOCKED = "blocked"


IMPACT_OF: dict[Reach, Impact] = {Reach.ME: Impact.LOW, Reach.TEAM: Impact.MEDIUM,
                                  Reach.EVERYONE: Impact.HIGH}
URGENCY_OF: dict[Hurry, Urgency] = {Hurry.CAN_WAIT: Urgency.LOW, Hurry.SLOWED: Urgency.MEDIUM,
                                    Hurry.BLOCKED: Urgency.HIGH}


def snippet_parts(snippet: str) -> list[tuple[str, bool]]:
    """Knowledge's snippet (escaped text, matched words in ``<b>``) as (text, bold) parts,
    so a page builds it as text and never as markup."""
    parts: list[tuple[str, bool]] = []
    for index, piece in enumerate(re.split(r"</?b>", snippet)):
        if piece:
            text = (piece.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
                    .replace("&#x27;", "'").replace("&#39;", "'").replace("&amp;", "&"))
            parts.append((text, index % 2 == 1))
    return parts
