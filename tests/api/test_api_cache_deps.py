"""Cached answers valued with other keys' data (review h5): a user's positions and summary are valued
at each market's price and status, which other traders' trades and a proposal change, but the
outbox row names only the trader's room (or the market's). Before, the other holders' cached
answers stayed as they were for up to cache_ttl_s (300 s). Now such an answer depends on the
markets (creators) it values, in L1 and in Redis (api/cache.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from starlette.testclient import TestClient

import api.routes.users as users
from api.app import create_app
from api.cache import MAX_DEPS, Cache
from api.metrics import Metrics
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, OTHER, U, market, outbox, position, scenario, trade
from tests.api.rows import TRADER as TRADER_BYTES
from tests.api.test_api_load import serving

pytestmark = [pytest.mark.pg, pytest.mark.redis]
TRADER = "0x" + "a1" * 20
ME = "0x" + TRADER_BYTES.hex()


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
    dependency invalidated between the read and the store keeps the answer out; beyond MAX_DEPS
    dependencies the answer lives until any event."""
    client = aioredis.Redis.from_url(redis_url)
    prefix = "deps-test"
    try:
        a, b = (Cache(client, prefix, CHAIN, 60, Metrics()) for _ in range(2))  # two workers
        g = a.generation
        await a.set("user:0xab", "holdings", b'{"v": 1}', g, deps=["creator:0xcd"])
        assert await a.get("user:0xab", "holdings") == b'{"v": 1}'  # L1
        assert await b.get("user:0xab", "holdings") == b'{"v": 1}'  # Redis, epochs match
        await a.invalidate([("shares:trade", ["creator:0xcd"])])
        assert await a.get("user:0xab", "holdings") is None
        b.clear_local()
        assert await b.get("user:0xab", "holdings") is None
        g = a.generation
        await a.invalidate([("shares:trade", ["creator:0xcd"])])  # while the answer was computed
        await a.set("user:0xab", "holdings", b'{"v": 2}', g, deps=["creator:0xcd"])
        assert await a.get("user:0xab", "holdings") is None
        many = [f"market:{i}" for i in range(MAX_DEPS + 1)]  # beyond MAX_DEPS: until any event
        await a.set("user:0xab", "summary", b'{"big": true}', a.generation, deps=many)
        assert await b.get("user:0xab", "summary") == b'{"big": true}'
        await a.invalidate([("market:trade", ["market:99999"])])  # a market it does not hold
        b.clear_local()
        assert await a.get("user:0xab", "summary") is None
        assert await b.get("user:0xab", "summary") is None
    finally:
        await client.delete(*[k async for k in client.scan_iter(f"{prefix}:*")] or ["none"])
        await client.aclose()


async def test_a_joiner_gets_no_answer_a_dependency_invalidated_while_it_was_computed(
    db_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review h7: a request joining the computation of a summary was handed the answer valued before
    another trader's trade that was invalidated meanwhile (x-cache shared); now it asks itself."""
    await scenario(db_dsn)
    original = users.depend_on_creators
    slow = {"once": False}

    async def slow_after_reading(ctx: Any) -> None:
        # summary() has read its positions already; a big user's summary takes a while to finish
        await original(ctx)
        if slow["once"]:
            slow["once"] = False
            await asyncio.sleep(2.0)

    monkeypatch.setattr(users, "depend_on_creators", slow_after_reading)
    summary = f"/v1/users/{TRADER}"
    settings = make_settings(db_dsn, redis_url, outbox_poll_s=0.05)
    async with serving(settings) as (_rt, base), aiohttp.ClientSession() as http:

        async def get(path: str) -> tuple[str, Any]:
            async with http.get(base + path) as r:
                assert r.status == 200
                return r.headers["x-cache"], await r.json()

        assert (await get("/v1/markets/1"))[0] == "miss"  # cached: its invalidation is observable
        slow["once"] = True
        leader = asyncio.ensure_future(get(summary))  # reads the positions, then takes 2 s
        await asyncio.sleep(0.5)
        await _someone_else_trades_market_1(db_dsn)
        for _ in range(100):  # this process's pump has invalidated market:1 (and so the summary's deps)
            if (await get("/v1/markets/1"))[0] == "miss":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("market:1 never invalidated")
        assert not leader.done()
        # a request arriving after the invalidation
        late_header, late = await get(summary)
        before = (await leader)[1]["data"]["positionsValue"]  # read before the trade
        fresh_header, fresh = await get(summary)
    assert fresh["data"]["positionsValue"] != before, "the trade did not move the value (test setup)"
    assert late["data"]["positionsValue"] == fresh["data"]["positionsValue"], (
        f"a request made after market:1 was invalidated got x-cache={late_header} with the pre-trade "
        f"positionsValue {late['data']['positionsValue']} (now {fresh['data']['positionsValue']}, "
        f"x-cache={fresh_header})"
    )


async def test_a_user_in_more_than_max_deps_markets_is_cached_until_the_next_event(db_dsn: str, redis_url: str) -> None:
    """Review h7: beyond MAX_DEPS dependencies the most viewed profiles were never cached (a full
    recompute per view); they now depend on ANY_EVENT."""
    await scenario(db_dsn)
    conn = await asyncpg.connect(db_dsn)
    try:
        for i in range(MAX_DEPS):  # 3 + 256 positions
            await market(conn, 100 + i, block=1000 + i)
            await position(conn, 100 + i, yes_shares=U)
    finally:
        await conn.close()
    with TestClient(create_app(make_settings(db_dsn, redis_url), serve_feed=False)) as c:
        seen = {}
        for path in (f"/v1/users/{ME}", f"/v1/users/{ME}/positions"):
            seen[path] = [c.get(path).headers["x-cache"] for _ in range(5)]
    assert all(v[1:] == ["hit"] * 4 for v in seen.values()), seen


async def test_a_market_the_user_creates_revalues_their_cached_summary_and_positions(
    db_dsn: str, redis_url: str
) -> None:
    """Review h7: market:created names market:{id} and creator:{creator}, not user:{creator}: the
    creator's summary (marketsCreated) and its new position stayed cached."""
    await scenario(db_dsn)
    summary, positions = f"/v1/users/{ME}", f"/v1/users/{ME}/positions"
    with TestClient(create_app(make_settings(db_dsn, redis_url, outbox_poll_s=0.05), serve_feed=False)) as c:
        s0 = c.get(summary).json()["data"]
        p0 = c.get(positions).json()["meta"]["total"]
        assert c.get(summary).headers["x-cache"] == "hit"
        assert c.get("/v1/markets").headers["x-cache"] in ("miss", "hit")
        conn = await asyncpg.connect(db_dsn)
        try:  # the indexer's fold of MarketCreated (at odds) by TRADER, by hand
            await market(conn, 9, creator=TRADER_BYTES, y=60 * U, n=100 * U, block=40)
            await position(conn, 9, yes_shares=40 * U)
            await outbox(conn, "market:created", ["global:all", "market:9", f"creator:{ME}"], {"market_id": 9}, 40, 0)
        finally:
            await conn.close()
        for _ in range(200):  # the pump has handled the row (markets:list dropped)
            if c.get("/v1/markets").headers["x-cache"] == "miss":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("market:created never invalidated markets:list")
        r = c.get(summary)
        s1 = r.json()["data"]
        p1 = c.get(positions).json()["meta"]["total"]
    assert s1["marketsCreated"] == s0["marketsCreated"] + 1, (
        f"summary after creating market 9: x-cache={r.headers['x-cache']}, marketsCreated "
        f"{s1['marketsCreated']} (was {s0['marketsCreated']}), positions {s1['positions']}"
    )
    assert p1 == p0 + 1, f"positions total {p1}, was {p0}: the new position is missing"
