"""Review hy: two API workers of one deployment (`[api].workers > 1`, or replicas behind a load
balancer): a client follows the feed on one and its HTTP refetch lands on the other. Each worker
invalidates its own in-process level (L1, 10 s) only when ITS pump reads the row; the feed frame
goes out as soon as the FIRST worker's pump has invalidated Redis and its own L1. While the second
worker's pump is behind (busy event loop, waiting up to ACQUIRE_S = 5 s for a pump connection, its
LISTEN session lost and the poll not yet due), it answers the refetch from its L1 with the page
from before the change — and the client, told once, never refetches it again.

docs/api.md "Caching": invalidation follows the outbox, an L1 "hit there costs no round trip";
api/outbox.py: "a client told about a trade finds the cache already cleared". The lag of worker 2's
pump is injected here (its cache sink runs 2 s late); everything else is the real code."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect

from tests.api.conftest import make_settings
from tests.api.rows import OTHER, U, outbox, scenario, trade
from tests.api.test_api_feed import recv_type, running, subscribe

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def test_a_refetch_on_another_worker_after_the_feed_frame_gets_that_workers_stale_l1(
    db_dsn: str, redis_url: str
) -> None:
    await scenario(db_dsn)
    one = make_settings(db_dsn, redis_url, outbox_poll_s=0.05)
    two = make_settings(db_dsn, redis_url, outbox_poll_s=0.05, cache_prefix=one.api.cache_prefix)
    conn = await asyncpg.connect(db_dsn)
    try:
        async with running(one) as (_app1, _rt1, url1), running(two) as (app2, rt2, _url2):
            assert rt2.state is not None
            pump2 = rt2.state.pump
            late = pump2.sinks[0]  # worker 2's cache invalidation sink (api/app.py _chain_parts)

            async def behind(rows: Any, safe: Any, fin: Any) -> None:
                await asyncio.sleep(2.0)  # worker 2's pump is 2 s behind worker 1's
                await late(rows, safe, fin)

            pump2.sinks[0] = behind
            async with (
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app2), base_url="http://t") as http2,
                connect(url1) as ws,
            ):
                await http2.get("/v1/markets/1")
                assert (await http2.get("/v1/markets/1")).headers["x-cache"] == "hit"  # in worker 2's L1
                await subscribe(ws, ["market:1"])
                async with conn.transaction():  # the indexer's batch: fold, event row, outbox row
                    await trade(conn, 1, 101, 0, trader=OTHER, collateral=40 * U, y=60 * U, n=165 * U)
                    await conn.execute(
                        "UPDATE idx.markets SET volume = volume + $1, trade_count = trade_count + 1,"
                        " yes_reserve = $2, no_reserve = $3 WHERE chain_id = 31337 AND market_id = 1",
                        40 * U,
                        60 * U,
                        165 * U,
                    )
                    seq = await outbox(
                        conn,
                        "market:trade",
                        ["global:all", "market:1", "user:0x" + OTHER.hex()],
                        {"market_id": 1},
                        101,
                        0,
                    )
                m = await recv_type(ws, "event")  # from worker 1: it has deleted the Redis keys
                assert (m["event"], m["seq"]) == ("market:trade", seq)
                r = await http2.get("/v1/markets/1")  # the client's refetch, routed to worker 2
                got = r.json()["data"]
                assert got["volume"] == "90.000000", (
                    f"the refetch after feed seq {seq} got market 1 from before the trade (volume {got['volume']},"
                    f" trades {got.get('trades')}, x-cache {r.headers['x-cache']}) from worker 2, whose pump is behind"
                )
    finally:
        await conn.close()
