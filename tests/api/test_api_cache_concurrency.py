"""Cache fills under concurrency (review s13 F3): an invalidation of one key no longer discards a slow
answer about another (per-key generations; `chain:finalized` invalidates nothing and moves nothing),
and concurrent misses of one variant share one query."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import pytest

from tests.api.conftest import make_settings
from tests.api.rows import outbox, scenario
from tests.api.test_api_load import serving

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as r:
        await r.read()
        return r.status, r.headers["x-cache"]


async def test_a_slow_answer_is_cached_when_only_other_keys_were_invalidated(db_dsn: str, redis_url: str) -> None:
    await scenario(db_dsn)
    settings = make_settings(db_dsn, redis_url, pool_max=1, pool_acquire_timeout_s=30.0)
    conn = await asyncpg.connect(db_dsn)
    async with serving(settings) as (rt, base), aiohttp.ClientSession() as session:
        assert rt.state is not None
        cache = rt.state.cache
        async with rt.state.read_pool.acquire():  # the answer about market 1 waits for this connection
            slow = asyncio.create_task(_get(session, f"{base}/v1/markets/1"))
            await asyncio.sleep(0.5)  # it has arrived and waits for the connection
            before = cache.generation
            await outbox(conn, "chain:finalized", [], {"block": 99}, 99, 0)  # invalidates nothing
            await outbox(conn, "market:trade", ["market:2"], {"market_id": 2}, 100, 0)
            for _ in range(1500):  # the pump applies rows in seq order: finalized, then market 2
                if cache.generation != before:
                    break
                await asyncio.sleep(0.01)
            assert cache.generation == before + 1  # one move, for market 2 only
        assert await slow == (200, "miss")
        assert await _get(session, f"{base}/v1/markets/1") == (200, "hit")
    await conn.close()


async def test_concurrent_misses_of_one_variant_share_one_query(db_dsn: str, redis_url: str) -> None:
    await scenario(db_dsn)
    settings = make_settings(db_dsn, redis_url, pool_max=1, pool_acquire_timeout_s=30.0)
    async with serving(settings) as (rt, base), aiohttp.ClientSession() as session:
        assert rt.state is not None
        async with rt.state.read_pool.acquire():
            tasks = [asyncio.create_task(_get(session, f"{base}/v1/markets?limit=7")) for _ in range(6)]
            await asyncio.sleep(0.5)  # they all arrive while the first waits for the connection
        answers = await asyncio.gather(*tasks)
        assert all(status == 200 for status, _ in answers), answers
        kinds = sorted(kind for _, kind in answers)
        assert kinds.count("miss") == 1, kinds  # one query; before: six, one after another on the pool
        assert set(kinds) <= {"miss", "shared", "hit"}, kinds
        assert rt.state.cache.inflight == {}


async def test_the_outbox_pump_does_not_wait_for_the_write_pool(db_dsn: str, redis_url: str) -> None:
    """Review s13 F7: the pump read the outbox on the 3-connection write pool that anonymous sign-ins
    use; with it exhausted, cache invalidation and the feed stopped. The pump has its own connection."""
    await scenario(db_dsn)
    settings = make_settings(db_dsn, redis_url, write_pool_max=1)
    conn = await asyncpg.connect(db_dsn)
    async with serving(settings) as (rt, _base):
        assert rt.state is not None
        cache = rt.state.cache
        async with rt.state.write_pool.acquire():  # every write-pool connection is busy (sign-ins)
            before = cache.generation
            await outbox(conn, "market:trade", ["market:1"], {"market_id": 1}, 100, 0)
            for _ in range(750):  # 15 s, three times the pump's acquire timeout
                if cache.generation != before:
                    break
                await asyncio.sleep(0.02)
            assert cache.generation != before, "the pump never applied the row while the write pool was busy"
    await conn.close()
