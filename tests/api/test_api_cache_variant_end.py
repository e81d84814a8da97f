"""Review hg of d9d1f58 (per-variant expiry, `field#exp`): Cache.set now prolongs the whole hash with
EXPIRE GT on every write, and a variant stored for the cache's full TTL gets no `#exp` of its own. Such a
variant therefore lives as long as the LAST write of any variant of its key, not `ttl_s`: on a hot key
(markets:list, written by every new filter/sort/page) an old variant is served indefinitely. Before the fix
EXPIRE LT never prolonged a key, and Cache.set's docstring still says "at most the cache's TTL"."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from api.cache import Cache
from api.metrics import Metrics

pytestmark = [pytest.mark.redis]

TTL_S = 2


async def test_a_full_ttl_variant_is_not_kept_past_the_ttl_by_a_later_variant(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    prefix = "review-hg-ttl"
    try:
        writer = Cache(client, prefix, 31337, TTL_S, Metrics())
        await writer.clear()
        await writer.set("markets:list", "old", b'{"v": "old"}', writer.generation)
        await asyncio.sleep(TTL_S * 0.6)  # 1.2 s: the old variant has 0.8 s left
        await writer.set("markets:list", "new", b'{"v": "new"}', writer.generation)
        await asyncio.sleep(TTL_S * 0.6)  # 2.4 s: the old variant is past its 2 s, the new one is not
        reader = Cache(client, prefix, 31337, TTL_S, Metrics())  # another worker: Redis only, no L1
        new = await reader.get("markets:list", "new")
        old = await reader.get("markets:list", "old")
        assert new == b'{"v": "new"}'  # the key is alive (the newer variant's life)
        assert old is None, (
            f"a variant stored for ttl_s = {TTL_S} s was still served {TTL_S * 1.2:.1f} s later: the write of"
            " another variant prolonged the hash (EXPIRE GT) and the old variant has no #exp of its own"
        )
    finally:
        await Cache(client, prefix, 31337, TTL_S, Metrics()).clear()
        await client.aclose()
