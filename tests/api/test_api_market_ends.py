"""A market shown "active" turns "closed" at its end time, which no chain event announces: cached
answers that show it active must not outlive that moment (before: served for cache_ttl_s, 300 s)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import asyncpg
import pytest
import redis
from starlette.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from tests.api.rows import NOW, TRADER, U, head, market, position

pytestmark = [pytest.mark.pg, pytest.mark.redis]

ENDS_IN_S = 5  # margin for a loaded machine between the setup and the first reads


async def ending_market(dsn: str) -> float:
    """Market 7 ends about ENDS_IN_S seconds from now (rows.market counts `end` from its default
    creation time, NOW - 2 days); TRADER holds YES in it. Returns its end (epoch seconds)."""
    end = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=ENDS_IN_S + 1)
    conn = await asyncpg.connect(dsn)
    try:
        await head(conn, 100, safe=90, finalized=80)
        await market(conn, 7, end=end - (NOW - dt.timedelta(days=2)), y=100 * U, n=100 * U)
        await position(conn, 7, yes_shares=10 * U, yes_cost=5 * U, bought=5 * U)
    finally:
        await conn.close()
    return end.timestamp()


def test_cached_answers_showing_a_market_active_expire_at_its_end_time(
    client: TestClient, settings: Settings, db_dsn: str, redis_url: str
) -> None:
    ends = asyncio.run(ending_market(db_dsn))
    user = "0x" + TRADER.hex()
    urls = {
        "detail": ("/v1/markets/7", lambda b: b["data"]["status"]),
        "list": ("/v1/markets?status=active", lambda b: [m["status"] for m in b["data"]]),
        "prices": ("/v1/markets/prices?ids=7", lambda b: [m["status"] for m in b["data"]]),
        "positions": (f"/v1/users/{user}/positions", lambda b: [p["marketStatus"] for p in b["data"]]),
    }
    before = {}
    for name, (url, status) in urls.items():
        first, second = client.get(url), client.get(url)
        assert first.status_code == second.status_code == 200, (name, first.text)
        before[name] = status(second.json())
    assert before == {"detail": "active", "list": ["active"], "prices": ["active"], "positions": ["active"]}
    # another worker of the deployment reads it from Redis into its own L1 (review h5: kept there for
    # l1_ttl_s, whatever the key's remaining life, so it said "active" after the end)
    worker2 = TestClient(create_app(settings, serve_feed=False)).__enter__()
    try:
        r2 = worker2.get("/v1/markets/7")
        assert (r2.headers["x-cache"], r2.json()["data"]["status"]) == ("hit", "active")

        r = redis.Redis.from_url(redis_url)
        try:
            ns = f"{settings.api.cache_prefix}:{settings.chain_id}:"
            ttl = r.ttl(ns + "market:7")
            assert 0 < ttl <= ends - time.time() + 1, ttl  # the key dies with the market's "active"
        finally:
            r.close()

        time.sleep(max(0.0, ends - time.time()) + 1.1)
        after = {name: status(client.get(url).json()) for name, (url, status) in urls.items()}
        assert after == {"detail": "closed", "list": [], "prices": ["closed"], "positions": ["closed"]}
        assert worker2.get("/v1/markets/7").json()["data"]["status"] == "closed"
    finally:
        worker2.__exit__(None, None, None)
