"""Outgoing webhooks: which events a subscription takes, how a delivery is signed, when it
is tried again, and where deliveries may go. No I/O (the service resolves addresses)."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from datetime import timedelta

SIGNATURE_HEADER = "X-Sportello-Signature"
TIMESTAMP_HEADER = "X-Sportello-Timestamp"
EVENT_HEADER = "X-Sportello-Event"
DELIVERY_HEADER = "X-Sportello-Delivery"


class WebhookError(Exception):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def takes(patterns: Iterable[str], event_type: str) -> bool:
    """``ticket.created``, ``ticket.*`` or ``*``."""
    return any(fnmatch.fnmatchcase(event_type, p) for p in patterns)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """As Stripe and GitHub do: HMAC-SHA256 over ``<timestamp>.<body>``, so a receiver can
    refuse both forged bodies and old deliveries replayed by someone else."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does (and our tests do): the signature matches and is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def next_try_in(attempts: int, *, base_s: float, max_s: float) -> timedelta:
    """Exponential backoff: base, 2 base, 4 base... capped."""
    return timedelta(seconds=min(max_s, base_s * 2 ** max(0, attempts - 1)))


def allowed_address(address: str, allowed_networks: Iterable[str]) -> bool:
    """Public addresses always; private, loopback, link-local and reserved ones only inside a
    network the deployment allows (a webhook must not reach into the cluster uninvited)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for network in allowed_networks:
        if ip in ipaddress.ip_network(network, strict=False):
            return True
    return ip.is_global and not ip.is_multicast


def check_networks(networks: Iterable[str]) -> None:
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError as exc:
            raise WebhookError(f"{network!r} is not a network", field="networks") from exc
