"""Redis-backed rate limits from the seed: 100 requests / 15 min per IP, 1,000 / 15 min per
authenticated user, admins unlimited. Fixed windows (INCR + EXPIRE in one round trip).

Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`
(seconds) and `RateLimit-Policy`; a 429 adds `Retry-After` and the seed's error body.
Redis down → requests pass (fail open) and `api_redis_up` says so; /health, /ready, /metrics are
never limited.
"""

from __future__ import annotations

import dataclasses
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from api.metrics import Metrics

EXEMPT = ("/health", "/ready", "/metrics")


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    window_s: int

    def headers(self) -> dict[str, str]:
        h = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.limit};w={self.window_s}",
        }
        if not self.allowed:
            h["Retry-After"] = str(self.reset_s)
        return h


def window(now: float, window_s: int) -> tuple[int, int]:
    """(window index, seconds until it resets) — pure."""
    idx = int(now // window_s)
    return idx, max(1, int((idx + 1) * window_s - now))


class RateLimiter:
    def __init__(
        self,
        client: aioredis.Redis | None,
        namespace: str,
        window_s: int,
        per_ip: int,
        per_user: int,
        metrics: Metrics,
        enabled: bool = True,
    ) -> None:
        self.client = client
        self.ns = namespace
        self.window_s = window_s
        self.per_ip = per_ip
        self.per_user = per_user
        self.metrics = metrics
        self.enabled = enabled and client is not None

    async def check(self, ip: str, user: str | None) -> Verdict | None:
        """None = unlimited (disabled, or Redis unreachable)."""
        if not self.enabled or self.client is None:
            return None
        limit = self.per_user if user else self.per_ip
        ident = f"u:{user}" if user else f"ip:{ip}"
        idx, reset = window(time.time(), self.window_s)
        key = f"{self.ns}rl:{ident}:{idx}"
        try:
            count = int(await self.client.incr(key))
            if count == 1:  # first request of the window sets its expiry (one round trip otherwise)
                await self.client.expire(key, self.window_s + 1)
        except (RedisError, OSError):
            self.metrics.redis_up.set(0)
            return None
        allowed = count <= limit
        if not allowed:
            self.metrics.rate_limited.inc()
        return Verdict(allowed, limit, max(0, limit - count), reset, self.window_s)
