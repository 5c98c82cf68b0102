"""A token bucket per caller, for every door that a stranger can knock on."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """A token bucket per caller (user, API key, client address), in this replica's
    memory: with N replicas behind a balancer a caller gets up to N times the rate, which
    is the price of not asking a shared store on every request."""

    per_minute: int
    burst: int
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, who: str, now: float) -> float | None:
        """None when the request may go; else the seconds until it could."""
        rate = self.per_minute / 60.0
        tokens, last = self.buckets.get(who, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * rate)
        if tokens < 1.0:
            self.buckets[who] = (tokens, now)
            return (1.0 - tokens) / rate
        if len(self.buckets) > 100_000:
            self.buckets.clear()
        self.buckets[who] = (tokens - 1.0, now)
        return None
