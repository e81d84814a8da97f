"""Redis-backed rate limits from the seed: 100 requests / 15 min per IP, 1,000 / 15 min per
authenticated user, admins unlimited. Fixed windows (INCR + EXPIRE in one round trip).

One IP cannot multiply its budget with fresh wallets: a signed-in request counts against its user
AND against its IP's signed-in bucket (also `rate_limit_user`), and sign-ins (nonce, verify,
refresh) are limited per IP (`signin_rate_limit`). So per window one IP gets at most
`rate_limit_ip` anonymous plus `rate_limit_user` signed-in requests, and `signin_rate_limit`
sign-ins — whatever number of wallets it holds.

Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`
(seconds) and `RateLimit-Policy`; a 429 adds `Retry-After` and the seed's error body.
Redis down → requests pass (fail open) and `api_redis_up` says so, and Redis is skipped for the
back-off it shares with the cache (api/redis_health.py), so a stalled Redis does not add its timeout
to every request; /health, /ready, /metrics are never limited.
"""

from __future__ import annotations

import dataclasses
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from api.clientip import NETWORK_FACTOR, client_keys
from api.metrics import Metrics
from api.redis_health import RedisHealth

EXEMPT = ("/health", "/ready", "/metrics", "/")


def exempt(path: str) -> bool:
    """Probes, metrics and the reference page's static files are never counted."""
    return path in EXEMPT or path.startswith("/static/")


SIGNIN = ("/v1/auth/nonce", "/v1/auth/verify", "/v1/auth/refresh")


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


DENIED_MAX = 10_000  # clients remembered as over their limit in this window


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
        per_ip_signin: int = 10,
        health: RedisHealth | None = None,
    ) -> None:
        self.client = client
        self.ns = namespace
        self.window_s = window_s
        self.per_ip = per_ip
        self.per_user = per_user
        self.per_ip_signin = per_ip_signin
        self.metrics = metrics
        self.enabled = enabled and client is not None
        self.health = health if health is not None else RedisHealth(metrics, up=client is not None)
        # Buckets already over their limit in the current window -> that verdict: a client that keeps
        # sending after its 429 costs no Redis round trip until the window turns (bounded).
        self.denied: dict[str, tuple[int, Verdict]] = {}

    async def check(self, ip: str, user: str | None) -> Verdict | None:
        """None = unlimited (disabled, or Redis unreachable). `ip` counts by its address_key (an IPv6
        host by its /64, which it can rotate through) and an IPv6 client's /48 by NETWORK_FACTOR times
        that budget."""
        key, net = client_keys(ip)
        if user:
            buckets = [(f"u:{user}", self.per_user), (f"ipu:{key}", self.per_user)]
            if net:
                buckets.append((f"ipunet:{net}", self.per_user * NETWORK_FACTOR))
            return await self._count(*buckets)
        buckets = [(f"ip:{key}", self.per_ip)]
        if net:
            buckets.append((f"net:{net}", self.per_ip * NETWORK_FACTOR))
        return await self._count(*buckets)

    async def check_signin(self, ip: str) -> Verdict | None:
        """The sign-in budget of an IP (nonce, verify, refresh), on top of check()."""
        key, net = client_keys(ip)
        buckets = [(f"signin:{key}", self.per_ip_signin)]
        if net:
            buckets.append((f"signinnet:{net}", self.per_ip_signin * NETWORK_FACTOR))
        return await self._count(*buckets)

    async def _count(self, *buckets: tuple[str, int]) -> Verdict | None:
        """Counts one request in every bucket (one round trip); the verdict of the tightest."""
        if not self.enabled or self.client is None or not self.health.available():
            return None  # fail open: no Redis, or Redis failed and its back-off has not passed
        idx, reset = window(time.time(), self.window_s)
        who = "|".join(ident for ident, _ in buckets)
        denied = self.denied.get(who)
        if denied is not None:
            if denied[0] == idx:
                self.metrics.rate_limited.inc()
                v = denied[1]
                return Verdict(False, v.limit, 0, reset, v.window_s)
            del self.denied[who]
        try:
            pipe = self.client.pipeline(transaction=False)
            for ident, _ in buckets:
                key = f"{self.ns}rl:{ident}:{idx}"
                pipe.incr(key)
                pipe.expire(key, self.window_s + 1)
            replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            self.health.failed("rate_limit", exc)
            return None
        self.health.succeeded()
        verdicts = [
            Verdict(int(count) <= limit, limit, max(0, limit - int(count)), reset, self.window_s)
            for (_, limit), count in zip(buckets, replies[::2], strict=True)
        ]
        worst = min(verdicts, key=lambda v: (v.allowed, v.remaining))
        if not worst.allowed:
            self.metrics.rate_limited.inc()
            if len(self.denied) >= DENIED_MAX:
                self.denied.clear()
            self.denied[who] = (idx, worst)
        return worst
