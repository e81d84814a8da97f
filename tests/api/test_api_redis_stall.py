"""A Redis that stalls (SIGSTOP, a fork for a snapshot, a partition: connections stay open, nothing is
answered) costs each call the client's socket timeout (0.5 s). The cache and the rate limiter share
one back-off (api/redis_health.py), so after the first failure requests stop waiting on Redis.
Before (review h2), the limiter had none: every request paid 0.5 s, and every other one 1 s."""

from __future__ import annotations

import asyncio
import urllib.parse

import aiohttp
import pytest

from api import redis_health
from api.metrics import Metrics
from api.redis_health import RedisHealth
from tests.api import rows
from tests.api.conftest import make_settings
from tests.api.test_api_connections import serving
from tests.chain import free_port
from tests.tcp import BlackHole


def test_the_back_off_doubles_while_redis_keeps_failing_and_ends_at_a_success(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(redis_health.time, "monotonic", lambda: now[0])
    metrics = Metrics()
    h = RedisHealth(metrics)
    assert h.available()
    h.failed("get", TimeoutError())
    waits = []
    for _ in range(8):  # each retry after the back-off fails again
        start = now[0]
        while not h.available():
            now[0] += 0.25
        waits.append(now[0] - start)
        h.failed("get", TimeoutError())
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert metrics.registry.get_sample_value("api_redis_up") == 0
    now[0] += 30
    h.succeeded()
    assert h.available()
    assert metrics.registry.get_sample_value("api_redis_up") == 1
    h.failed("get", TimeoutError())  # a new outage starts from the shortest back-off
    now[0] += 1.0
    assert h.available()


async def test_a_stalled_redis_is_not_waited_on_by_every_request(db_dsn: str, redis_url: str) -> None:
    """Redis behind a proxy that stops answering: twenty uncached requests all answer 200 from
    PostgreSQL, and only the first (and a retry after the back-off) send anything to Redis — not
    each request's rate-limit count and cache read. Once Redis answers again, it is used again."""
    await rows.scenario(db_dsn)
    u = urllib.parse.urlsplit(redis_url)
    assert u.port is not None
    async with BlackHole(u.port).running() as hole:
        via = u._replace(netloc=f"127.0.0.1:{hole.port}").geturl()
        settings = make_settings(db_dsn, via, port=free_port(), rate_limit_ip=100_000)
        async with serving(settings) as (rt, port):
            assert rt.state is not None
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:

                async def get(path: str) -> int:
                    async with s.get(base + path) as r:
                        await r.read()
                        return r.status

                for i in range(3):
                    assert await get(f"/v1/markets?limit={3 + i}") == 200
                hole.frozen = True
                codes = [await get(f"/v1/markets?limit={10 + i}") for i in range(20)]
                tried = hole.swallowed + hole.unanswered
                hole.frozen = False
                assert codes == [200] * 20
                assert tried <= 6, f"{tried} Redis calls for 20 requests while it was stalled"
                assert not rt.state.cache.health.ok
                await asyncio.sleep(rt.state.cache.health.backoff_s + 0.2)
                for _ in range(50):  # the next requests after the back-off reach Redis again
                    assert await get("/v1/markets?limit=40") == 200
                    if rt.state.cache.health.ok:
                        break
                    await asyncio.sleep(0.2)
                assert rt.state.cache.health.ok
                assert rt.state.limiter.health is rt.state.cache.health
