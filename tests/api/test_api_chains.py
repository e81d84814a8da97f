"""One API and feed serving two chains from one database: ?chainId= picks the chain for HTTP (rows,
cache and as_of of that chain only), ws://…/?chainId= for the feed; an unknown chain is refused."""

from __future__ import annotations

import json

import asyncpg
import pytest
from starlette.testclient import TestClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api.app import create_app
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, outbox, scenario
from tests.api.test_api_feed import recv_type, running, subscribe

pytestmark = [pytest.mark.pg, pytest.mark.redis]
BASE = 8453


async def copy_chain(dsn: str) -> None:
    """The scenario's markets, checkpoint and head again under chain 8453, with other questions."""
    conn = await asyncpg.connect(dsn)
    try:
        for table, change in (
            ("idx.markets", "question = 'on base: ' || question"),
            ("idx.checkpoints", "block_number = block_number + 1000"),
            ("idx.chain_heads", "head_block = head_block + 1000"),
        ):
            await conn.execute(f"CREATE TEMP TABLE t AS SELECT * FROM {table} WHERE chain_id = {CHAIN}")
            await conn.execute(f"UPDATE t SET chain_id = {BASE}, {change}")
            await conn.execute(f"INSERT INTO {table} SELECT * FROM t")
            await conn.execute("DROP TABLE t")
    finally:
        await conn.close()


async def test_http_rows_cache_and_as_of_follow_chain_id(db_dsn: str, redis_url: str) -> None:
    """Default chain without the parameter; ?chainId=8453 answers that chain's rows, from its own
    cache namespace, with its as_of; a chain not served is a 400 naming chainId."""
    await scenario(db_dsn)
    await copy_chain(db_dsn)
    settings = make_settings(db_dsn, redis_url, chain_ids=[CHAIN, BASE])
    with TestClient(create_app(settings, serve_feed=False)) as c:
        for _ in range(2):  # the second round answers from the cache: still no crossing
            home = c.get("/v1/markets")
            base = c.get("/v1/markets", params={"chainId": BASE})
            assert home.status_code == base.status_code == 200
            assert not any(m["question"].startswith("on base: ") for m in home.json()["data"])
            assert base.json()["data"]
            assert all(m["question"].startswith("on base: ") for m in base.json()["data"])
            assert home.json()["asOf"]["chainId"] == CHAIN
            assert base.json()["asOf"]["chainId"] == BASE
            assert base.json()["asOf"]["blockNumber"] == home.json()["asOf"]["blockNumber"] + 1000
        assert base.headers["x-cache"] == "hit"
        one = c.get("/v1/markets/1", params={"chainId": BASE}).json()["data"]
        assert one["question"].startswith("on base: ")
        bad = c.get("/v1/markets", params={"chainId": 1})
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["field"] == "chainId"
        ready = c.get("/ready").json()
        assert ready["asOf"]["chainId"] == CHAIN
        assert ready["chains"][str(BASE)]["asOf"]["chainId"] == BASE


async def test_feed_clients_get_only_their_chains_events(db_dsn: str, redis_url: str) -> None:
    """Two feed clients, one per chain, in the same room: each receives its chain's events only."""
    settings = make_settings(db_dsn, redis_url, chain_ids=[CHAIN, BASE])
    conn = await asyncpg.connect(db_dsn)
    try:
        async with running(settings) as (_, _rt, url):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url + "/?chainId=999"):
                    pass
            assert refused.value.response.status_code == 400
            async with connect(url) as home, connect(url + "/?chainId=8453") as base:
                await subscribe(home, ["market:1"])
                await subscribe(base, ["market:1"])
                seq = await conn.fetchval(
                    """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
                       VALUES ($1, 'market:trade', ARRAY['market:1'], 5, 0, '\\x05', '{"market_id": 1}')
                       RETURNING seq""",
                    BASE,
                )
                mine = await outbox(conn, "market:trade", ["market:1"], {"market_id": 1})
                got = await recv_type(base, "event")
                assert (got["seq"], got["id"]["chainId"]) == (seq, BASE)
                got = await recv_type(home, "event")
                assert (got["seq"], got["id"]["chainId"]) == (mine, CHAIN)
                await home.send(json.dumps({"op": "ping"}))
                await base.send(json.dumps({"op": "ping"}))
                # recv_type fails on anything but a heartbeat before the pong: no other chain's event came
                assert (await recv_type(home, "pong"))["type"] == "pong"
                assert (await recv_type(base, "pong"))["type"] == "pong"
    finally:
        await conn.close()
