"""A stretch indexed without per-event messages (`chain:gap`, written by the indexer): every feed
connection receives it in order, live and on replay, and the API's cache forgets everything."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from starlette.testclient import TestClient
from websockets.asyncio.client import connect

from api.app import create_app
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, outbox, scenario
from tests.api.test_api_feed import recv_type, running, subscribe

pytestmark = [pytest.mark.pg, pytest.mark.redis]
GAP = {"chain_id": CHAIN, "from_block": 10, "to_block": 900, "events": 12345}


async def test_a_gap_reaches_every_connection_and_replays(db_dsn: str, redis_url: str) -> None:
    """A client in market:1 only gets the gap (with its range, camelCase) and the trade after it, in
    order; a client resuming from before the gap gets it in its replay."""
    conn = await asyncpg.connect(db_dsn)
    try:
        async with running(make_settings(db_dsn, redis_url)) as (_, _rt, url):
            async with connect(url) as ws:
                await subscribe(ws, ["market:1"])
                gap = await outbox(conn, "chain:gap", ["global:all"], GAP)
                trade = await outbox(conn, "market:trade", ["market:1"], {"market_id": 1}, 901, 0)
                m = await recv_type(ws, "event")
                assert (m["seq"], m["event"]) == (gap, "chain:gap")
                assert m["data"] == {"chainId": CHAIN, "fromBlock": 10, "toBlock": 900, "events": 12345}
                assert (await recv_type(ws, "event"))["seq"] == trade
            async with connect(url) as ws:
                await subscribe(ws, ["market:2"], since=gap - 1)
                assert (await recv_type(ws, "event"))["event"] == "chain:gap"
    finally:
        await conn.close()


async def test_a_gap_empties_the_cache(db_dsn: str, redis_url: str) -> None:
    """After a gap every cached answer is recomputed (the stretch's changes are not listed)."""
    await scenario(db_dsn)
    with TestClient(create_app(make_settings(db_dsn, redis_url, outbox_poll_s=0.05), serve_feed=False)) as c:
        c.get("/v1/markets/1")
        assert c.get("/v1/markets/1").headers["x-cache"] == "hit"
        conn = await asyncpg.connect(db_dsn)
        try:
            await outbox(conn, "chain:gap", ["global:all"], GAP)
        finally:
            await conn.close()
        for _ in range(200):
            if c.get("/v1/markets/1").headers["x-cache"] == "miss":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the cached market detail survived a chain:gap for 10 s")
