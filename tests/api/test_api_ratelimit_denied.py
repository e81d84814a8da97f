"""A client over its rate limit costs no Redis round trip until the window turns (review s13 F6:
every request after the 429 still ran INCR + EXPIRE)."""

from __future__ import annotations

import time
import uuid

import pytest
import redis.asyncio as aioredis

from api import ratelimit
from api.metrics import Metrics
from api.ratelimit import NETWORK_FACTOR, RateLimiter, window

pytestmark = [pytest.mark.redis]


@pytest.fixture(autouse=True)
def pinned(monkeypatch: pytest.MonkeyPatch) -> float:
    """The limiter's clock pinned mid-window (as in test_api_abuse): the windows turn at the wall clock's hours,
    and checks that straddled one (a start at 20:59:59.996 UTC) began a new count halfway through."""
    at = (time.time() // 3600 + 0.5) * 3600
    monkeypatch.setattr(ratelimit, "window", lambda now, window_s: window(at, window_s))
    return at


async def test_requests_after_the_429_are_refused_in_process(redis_url: str, pinned: float) -> None:
    client = aioredis.Redis.from_url(redis_url)
    ns = f"t{uuid.uuid4().hex[:8]}:"
    limiter = RateLimiter(client, ns, 3600, per_ip=3, per_user=3, metrics=Metrics())
    try:
        verdicts = [await limiter.check("192.0.2.7", None) for _ in range(10)]
        assert [v.allowed for v in verdicts if v is not None] == [True, True, True] + [False] * 7
        assert all(v is not None and v.remaining == 0 and v.limit == 3 for v in verdicts[3:])
        idx, _ = window(pinned, 3600)
        counted = await client.get(f"{ns}rl:ip:192.0.2.7:{idx}")
        assert int(counted) == 4  # the fourth request found the limit; the six after it never reached Redis
        other = await limiter.check("192.0.2.8", None)  # another client is counted as before
        assert other is not None
        assert other.allowed
    finally:
        await client.aclose()


async def test_an_ipv6_48_shares_a_budget_of_16_clients(redis_url: str) -> None:
    """Review s13 F5: every per-client limit counted an IPv6 client per /64, so the holder of a /48
    (65,536 /64s) had 65,536 budgets. Now the /48 has NETWORK_FACTOR (16) times the per-client one."""
    client = aioredis.Redis.from_url(redis_url)
    ns = f"t{uuid.uuid4().hex[:8]}:"
    limiter = RateLimiter(client, ns, 3600, per_ip=1, per_user=1, metrics=Metrics())
    try:
        rotating = [await limiter.check(f"2001:db8:7:{i:x}::1", None) for i in range(20)]  # 20 /64s of one /48
        assert [v.allowed for v in rotating if v is not None] == [True] * NETWORK_FACTOR + [False] * 4
        elsewhere = await limiter.check("2001:db8:8::1", None)  # another /48
        assert elsewhere is not None
        assert elsewhere.allowed
        v4 = [await limiter.check("192.0.2.9", None) for _ in range(2)]  # IPv4: per address, as before
        assert [v.allowed for v in v4 if v is not None] == [True, False]
    finally:
        await client.aclose()
