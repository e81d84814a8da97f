"""Cached answers valued with other keys' data (review h5): a user's positions and summary are valued
at each market's price and status, which other traders' trades and a proposal change, but the
outbox row names only the trader's room (or the market's). Before, the other holders' cached
answers stayed as they were for up to cache_ttl_s (300 s). Now such an answer depends on the
markets (creators) it values, in L1 and in Redis (api/cache.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from starlette.testclient import TestClient

from api.app import create_app
from api.cache import MAX_DEPS, Cache
from api.metrics import Metrics
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, OTHER, U, outbox, scenario, trade

pytestmark = [pytest.mark.pg, pytest.mark.redis]
TRADER = "0x" + "a1" * 20


def _market1(body: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in body["data"] if p["marketId"] == 1)


async def _wait_miss(c: TestClient, path: str) -> None:
    for _ in range(200):
        if c.get(path).headers["x-cache"] == "miss":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never invalidated")


async def _someone_else_trades_market_1(dsn: str) -> None:
    """OTHER buys a lot of YES in market 1 (the indexer's fold, by hand): its price moves."""
    conn = await asyncpg.connect(dsn)
    try:
        await trade(conn, 1, 30, 0, trader=OTHER, collateral=100 * U, shares=150 * U, y=30 * U, n=250 * U)
        await conn.execute(
            "UPDATE idx.markets SET yes_reserve = $3, no_reserve = $4 WHERE chain_id = $1 AND market_id = $2",
            CHAIN,
            1,
            30 * U,
            250 * U,
        )
        await outbox(conn, "market:trade", ["global:all", "market:1", "user:0x" + OTHER.hex()], {"market_id": 1}, 30, 0)
    finally:
        await conn.close()


async def test_another_traders_trade_revalues_a_holders_cached_positions_and_summary(
    db_dsn: str, redis_url: str
) -> None:
    await scenario(db_dsn)
    positions, summary = f"/v1/users/{TRADER}/positions", f"/v1/users/{TRADER}"
    settings = make_settings(db_dsn, redis_url, outbox_poll_s=0.05)
    with TestClient(create_app(settings, serve_feed=False)) as c:
        before = _market1(c.get(positions).json())
        value_before = c.get(summary).json()["data"]["positionsValue"]
        assert (c.get(positions).headers["x-cache"], c.get(summary).headers["x-cache"]) == ("hit", "hit")
        await _someone_else_trades_market_1(db_dsn)
        await _wait_miss(c, "/v1/markets/1")  # the pump handled the trade row
        price = c.get("/v1/markets/1").json()["data"]["yesPrice"]
        r = c.get(positions)
        after = _market1(r.json())
        assert (r.headers["x-cache"], after["yesPrice"]) == ("miss", price)
        assert after["currentValue"] != before["currentValue"]
        assert c.get(summary).json()["data"]["positionsValue"] != value_before
        assert c.get(positions).headers["x-cache"] == "hit"  # cached again, with the new epoch


async def test_a_proposal_changes_a_holders_cached_market_status(db_dsn: str, redis_url: str) -> None:
    await scenario(db_dsn)
    path = f"/v1/users/{TRADER}/positions"
    with TestClient(create_app(make_settings(db_dsn, redis_url, outbox_poll_s=0.05), serve_feed=False)) as c:
        assert _market1(c.get(path).json())["marketStatus"] == "active"
        conn = await asyncpg.connect(db_dsn)
        try:
            await conn.execute(
                "UPDATE idx.markets SET status = 'proposed', proposed_outcome = 1,"
                " challenge_ends = now() + interval '1 day' WHERE chain_id = $1 AND market_id = 1",
                CHAIN,
            )
            await outbox(conn, "market:proposed", ["global:all", "market:1"], {"market_id": 1}, 31, 0)
        finally:
            await conn.close()
        await _wait_miss(c, "/v1/markets/1")
        assert _market1(c.get(path).json())["marketStatus"] == "proposed"


async def test_redis_level_a_dependency_invalidated_elsewhere_is_a_miss(db_dsn: str, redis_url: str) -> None:
    """Another worker's L1 is empty: it reads Redis, where the answer's epochs no longer match once the
    market key was invalidated (by any worker's pump)."""
    await scenario(db_dsn)
    path = f"/v1/users/{TRADER}/positions"
    settings = make_settings(db_dsn, redis_url, outbox_poll_s=0.05)
    with TestClient(create_app(settings, serve_feed=False)) as one:
        assert one.get(path).headers["x-cache"] == "miss"
        with TestClient(create_app(settings, serve_feed=False)) as two:
            assert two.get(path).headers["x-cache"] == "hit"  # from Redis, epochs matched
        await _someone_else_trades_market_1(db_dsn)
        await _wait_miss(one, "/v1/markets/1")
        with TestClient(create_app(settings, serve_feed=False)) as three:
            r = three.get(path)
            price = three.get("/v1/markets/1").json()["data"]["yesPrice"]
            assert (r.headers["x-cache"], _market1(r.json())["yesPrice"]) == ("miss", price)


async def test_cache_dependencies_directly(redis_url: str) -> None:
    """Cache.set with deps: a hit until a dependency is invalidated, in L1 and in Redis; a
    dependency invalidated between the read and the store keeps the answer out; more than
    MAX_DEPS dependencies are not cached."""
    client = aioredis.Redis.from_url(redis_url)
    prefix = "deps-test"
    try:
        a, b = (Cache(client, prefix, CHAIN, 60, Metrics()) for _ in range(2))  # two workers
        g = a.generation
        await a.set("user:0xab", "holdings", b"v1", g, deps=["creator:0xcd"])
        assert await a.get("user:0xab", "holdings") == b"v1"  # L1
        assert await b.get("user:0xab", "holdings") == b"v1"  # Redis, epochs match
        await a.invalidate([("shares:trade", ["creator:0xcd"])])
        assert await a.get("user:0xab", "holdings") is None
        b.clear_local()
        assert await b.get("user:0xab", "holdings") is None
        g = a.generation
        await a.invalidate([("shares:trade", ["creator:0xcd"])])  # while the answer was computed
        await a.set("user:0xab", "holdings", b"v2", g, deps=["creator:0xcd"])
        assert await a.get("user:0xab", "holdings") is None
        many = [f"market:{i}" for i in range(MAX_DEPS + 1)]
        await a.set("user:0xab", "summary", b"big", a.generation, deps=many)
        assert await a.get("user:0xab", "summary") is None
    finally:
        await client.delete(*[k async for k in client.scan_iter(f"{prefix}:*")] or ["none"])
        await client.aclose()
