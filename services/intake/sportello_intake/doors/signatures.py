"""The HMAC scheme channels sign with, both ways: ``X-Sportello-Signature: t=<unix>,v1=<hex>``,
HMAC-SHA256 over ``<t>.<body>``. The timestamp bounds replays."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Sportello-Signature"


class BadSignature(ValueError):
    """Why a signed request is refused (malformed, too old, or not ours)."""


def _digest(secret: str, stamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, now: float | None = None) -> str:
    stamp = str(int(now if now is not None else time.time()))
    return f"t={stamp},v1={_digest(secret, stamp, body)}"


def matches(secret: str, header: str, body: bytes, *, tolerance_s: int,
            now: float | None = None) -> bool:
    """Whether ``secret`` signed ``body``; raises ``BadSignature`` for a malformed or stale one."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    stamp, given = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or not given:
        raise BadSignature(f"{HEADER} must be t=<unix seconds>,v1=<hex>")
    if abs((now if now is not None else time.time()) - int(stamp)) > tolerance_s:
        raise BadSignature("the signature is too old or from the future (replay?)")
    return hmac.compare_digest(_digest(secret, stamp, body), given)
