"""The live leaderboard (api/rankings.py) against a real app: a reorg is never served from a kept
ranking, a ranking that cannot finish answers all its waiters at once (review h5), and its waiters
hold no pool connection."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, OTHER, h, outbox, scenario
from tests.api.test_api_lease import get, held_ranking, pool_settings
from tests.api.test_api_load import serving

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def test_a_reorg_is_never_served_from_a_kept_ranking(db_dsn: str, redis_url: str) -> None:
    """The reorg drops Redis and L1; the ranking kept in-process was computed before it and ranked
    a trader whose only trade the reorg removed."""
    await scenario(db_dsn)
    other = "0x" + OTHER.hex()
    with TestClient(create_app(make_settings(db_dsn, redis_url, outbox_poll_s=0.05), serve_feed=False)) as c:
        before = c.get("/v1/leaderboards/traders").json()
        assert before["meta"]["source"] == "live"
        assert other in [r["trader"] for r in before["data"]]
        conn = await asyncpg.connect(db_dsn)
        try:  # the indexer rolls back OTHER's trade (block 15) and its position, then announces the reorg
            await conn.execute("DELETE FROM idx.positions WHERE chain_id = $1 AND holder = $2", CHAIN, OTHER)
            await conn.execute("DELETE FROM idx.ev_trade WHERE chain_id = $1 AND trader = $2", CHAIN, OTHER)
            await conn.execute(
                "UPDATE idx.checkpoints SET block_number = 14, block_hash = $2 WHERE chain_id = $1", CHAIN, h(1414)
            )
            await outbox(conn, "chain:reorg", ["global:all"], {"common_ancestor": 14, "removed": []}, 14)
        finally:
            await conn.close()
        for _ in range(200):
            r = c.get("/v1/leaderboards/traders")
            if r.headers["x-cache"] == "miss":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the reorg never dropped the cached leaderboard")
        after = r.json()
        assert after["asOf"]["blockNumber"] == 14  # the answer claims to be post-reorg ...
        traders = [x["trader"] for x in after["data"]]
        # ... but still ranks the trader whose only position the reorg removed
        assert other not in traders, f"post-reorg leaderboard (asOf block 14) still lists {other}: {after['data']}"
        assert after["meta"]["total"] == 1


@pytest.mark.slow
async def test_a_ranking_that_cannot_finish_answers_every_waiter_at_once(db_dsn: str, redis_url: str) -> None:
    """Before: 4 page variants whose ranking hit statement_timeout (1.5 s) answered 503 after 1.5,
    3.0, 4.5 and 6.0 s: each waiter ran it again in turn, holding a pool connection."""
    await scenario(db_dsn)
    settings = make_settings(
        db_dsn,
        redis_url,
        pool_max=4,
        pool_min=4,
        statement_timeout_ms=1500,  # db_answer_s = 3.5
        pool_acquire_timeout_s=1.0,  # outer bound per request: 1 + 2 * 3.5 = 8 s
        db_requests_per_ip=2,
        forwarded_allow_ips=["127.0.0.1"],
    )
    async with serving(settings) as (rt, base), aiohttp.ClientSession() as http:
        assert rt.state is not None
        registry = rt.state.metrics.registry
        locker = await asyncpg.connect(db_dsn)
        try:
            tx = locker.transaction()
            await tx.start()
            # the live ranking now cannot finish: its query hits statement_timeout (1.5 s) every time
            await locker.execute("LOCK TABLE idx.positions IN ACCESS EXCLUSIVE MODE")

            async def get(path: str, client: str) -> tuple[int, float]:
                t0 = time.monotonic()
                async with http.get(base + path, headers={"X-Forwarded-For": client}) as r:
                    await r.read()
                    return r.status, round(time.monotonic() - t0, 1)

            # 4 page variants from 2 addresses (each within db_requests_per_ip = 2)
            hog = [
                asyncio.ensure_future(get(f"/v1/leaderboards/traders?page={i}", f"10.0.0.{10 + i % 2}"))
                for i in range(1, 5)
            ]
            await asyncio.sleep(2.5)  # every parallel query would have timed out by now (1.5 s)
            other = await get("/v1/markets/1", "10.0.0.99")  # a third, innocent address
            hogs = await asyncio.gather(*hog)
            await tx.rollback()
        finally:
            await locker.close()
        ran = registry.get_sample_value("api_live_rankings_total", {"board": "traders"})
    assert [s for s, _ in hogs] == [503] * 4
    assert other[0] == 200, f"an innocent client got {other} 2.5 s after every ranking query had timed out"
    assert ran == 1, f"the failing ranking ran {ran} times for 4 waiters (each ran it again in turn): {hogs}"


@pytest.mark.slow
async def test_waiters_on_a_live_ranking_hold_no_pool_connection(db_dsn: str, redis_url: str) -> None:
    """Six page variants of one ranking from six addresses, a pool of three: the first computes it (held up
    by a lock), the other five wait for it. Before, each waiter held a connection while it waited: the pool
    was theirs, and an innocent request (and two of the waiters) got 503 "Service busy". Waiters now give
    their connection back (api/context.py Lease.release) and the innocent request is answered."""
    await scenario(db_dsn)
    settings = pool_settings(db_dsn, redis_url, 3, acquire_s=1.0, statement_ms=3000)  # db_answer_s = 5
    async with serving(settings) as (rt, base), aiohttp.ClientSession() as http:
        assert rt.state is not None
        registry = rt.state.metrics.registry
        async with held_ranking(db_dsn, rt, http, base, 6) as (locker, pages):
            await asyncio.sleep(1.5)  # longer than pool_acquire_timeout_s: a queued request would have failed
            other, _ = await get(http, base + "/v1/markets/1", "10.0.1.99")
            await locker.execute("ROLLBACK")  # the ranking finishes
            statuses = [s for s, _ in await asyncio.gather(*pages)]
        busy = registry.get_sample_value("api_pool_acquire_timeouts_total", {"pool": "read"})
        ran = registry.get_sample_value("api_live_rankings_total", {"board": "traders"})
    assert other == 200, f"an innocent request got {other} while five requests waited on one ranking"
    assert statuses == [200] * 6
    assert busy in (None, 0.0), f"{busy} requests found no free connection"
    assert ran == 1
