"""An invalidation Redis does not take (down or stalled as an outbox row arrives) is owed, not lost:
until it is paid nothing stale is read back from Redis — before, the answer cached before the
trade was served again for up to cache_ttl_s. Real Redis behind a TCP proxy that black-holes."""

from __future__ import annotations

import asyncio
import urllib.parse

import pytest
import redis.asyncio as aioredis

from api.cache import Cache
from api.metrics import Metrics
from tests.tcp import BlackHole

pytestmark = [pytest.mark.redis]


async def cached(redis_url: str, hole: BlackHole) -> tuple[Cache, aioredis.Redis]:
    u = urllib.parse.urlsplit(redis_url)
    client = aioredis.Redis.from_url(
        u._replace(netloc=f"127.0.0.1:{hole.port}").geturl(),
        socket_connect_timeout=0.25,
        socket_timeout=0.5,
        retry_on_timeout=False,
    )
    cache = Cache(client, "debt", 31337, 300, Metrics())
    for key in ("market:1", "market:2"):
        await cache.set(key, "v", b'{"v": "before the trade"}', cache.generation)
    cache.clear_local()  # what other API workers see: Redis only
    assert await cache.get("market:1", "v") == b'{"v": "before the trade"}'
    cache.clear_local()
    return cache, client


async def pay_and_read(cache: Cache, key: str) -> bytes | None:
    await asyncio.sleep(1.2)  # past the back-off: Redis is tried again
    return await cache.get(key, "v")


@pytest.mark.parametrize("reorg", [False, True])
async def test_a_failed_invalidation_is_paid_before_redis_is_read_again(redis_url: str, reorg: bool) -> None:
    port = urllib.parse.urlsplit(redis_url).port
    assert port is not None
    direct = aioredis.Redis.from_url(redis_url)
    async with BlackHole(port).running() as hole:
        cache, client = await cached(redis_url, hole)
        hole.frozen = True  # Redis stalls as the outbox row arrives
        rows = [("chain:reorg", [])] if reorg else [("market:trade", ["market:1", "global:all"])]
        assert await cache.invalidate(rows) is False
        assert cache.owed_all if reorg else "market:1" in cache.owed
        assert await cache.get("market:1", "v") is None  # down: answered from PostgreSQL meanwhile
        hole.frozen = False
        assert await pay_and_read(cache, "market:1") is None  # not the pre-trade answer
        assert not cache.owed
        assert not cache.owed_all
        assert await direct.exists("debt:31337:market:1") == 0
        # a key the row did not touch is kept, and one a reorg touched everything is gone
        assert await direct.exists("debt:31337:market:2") == (0 if reorg else 1)
        await cache.set("market:1", "v", b'{"v": "after the trade"}', cache.generation)
        cache.clear_local()
        assert await cache.get("market:1", "v") == b'{"v": "after the trade"}'  # caching again once paid
        await client.aclose()
    await direct.flushdb()
    await direct.aclose()


def test_the_local_level_is_bounded_in_bytes_as_well_as_entries() -> None:
    """Review s15: the in-process level held up to 2,048 bodies whatever their size (list pages of
    ~100 KB: 200 MB a chain). It now also keeps their bytes under l1_max_bytes, oldest out first, and
    does not hold a body above a sixteenth of it (one would evict a crowd of small ones)."""
    cache = Cache(None, "bytes", 31337, 300, Metrics(), l1_max_bytes=16_000)
    for i in range(10):
        cache._l1_put(f"k{i}", "v", bytes([i]) * 900)
    assert cache.l1_bytes == sum(len(e[1]) for e in cache.l1.values()) <= 16_000
    assert list(cache.l1) == [(f"k{i}", "v") for i in range(10)]  # 9,000 bytes: all held
    for i in range(10, 20):
        cache._l1_put(f"k{i}", "v", bytes([i]) * 900)
    assert cache.l1_bytes == sum(len(e[1]) for e in cache.l1.values()) <= 16_000
    assert cache._l1_get("k0", "v") is None
    assert cache._l1_get("k19", "v") == bytes([19]) * 900
    cache._l1_put("big", "v", b"x" * 1_001)
    assert cache._l1_get("big", "v") is None
    cache._l1_put("k19", "v", b"y")  # a replaced body is counted once
    assert cache.l1_bytes == sum(len(e[1]) for e in cache.l1.values())
    cache._l1_drop({"k19"})
    cache.clear_local()
    assert (cache.l1_bytes, len(cache.l1)) == (0, 0)
