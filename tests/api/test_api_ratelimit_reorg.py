"""Review s20 ha, the defect guarded against:
the rate limiter counts in the default chain's cache namespace ({prefix}:{chain}:rl:…),
and a reorg or a gap clears the cache by deleting every key matching that namespace (Cache.clear /
_clear_redis: SCAN {prefix}:{chain}:*) — the rate-limit counters included. Every chain:reorg (or
chain:gap) hands every client a fresh budget for the window."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings
from tests.api.rows import head, outbox

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def _setup(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await head(conn, 100, safe=90, finalized=80)
    finally:
        await conn.close()


async def _reorg(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await outbox(conn, "chain:reorg", ["global:all"], {"common_ancestor": 99, "removed": []}, 99)
    finally:
        await conn.close()


def test_a_reorg_does_not_reset_the_rate_limits(db_dsn: str, redis_url: str) -> None:
    asyncio.run(_setup(db_dsn))
    settings = make_settings(db_dsn, redis_url, rate_limit_ip=5, rate_limit_window_s=900)
    window = int(time.time() // 900)
    with TestClient(create_app(settings, serve_feed=False), raise_server_exceptions=False) as c:
        rt = c.app.state.runtime  # type: ignore[attr-defined]
        spent = [c.get("/v1/markets", params={"limit": n}) for n in (1, 2, 3)]
        assert [r.headers["ratelimit-remaining"] for r in spent] == ["4", "3", "2"]
        before = rt.state.cache.all_generation
        asyncio.run(_reorg(db_dsn))
        for _ in range(300):  # the pump clears the cache (the whole namespace) on the reorg
            if rt.state.cache.all_generation > before and not rt.state.cache.owed_all:
                break
            time.sleep(0.05)
        assert rt.state.cache.all_generation > before, "the pump did not process the reorg"
        after = c.get("/v1/markets", params={"limit": 4})
        if int(time.time() // 900) != window:  # a new window began during the test: budgets reset anyway
            pytest.skip("the rate-limit window turned during the test")
        # the fourth request of the window: one left, whatever happened on the chain meanwhile
        assert after.headers["ratelimit-remaining"] == "1", after.headers["ratelimit-remaining"]
