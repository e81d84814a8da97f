"""Review s20 ha, the defect guarded against:
cursors are bound to "the filters they were issued for" (api/params.py), but the filter
hash is made from the parsed parameters, which never include ?chainId= (api/app.py strips it before
parse). A cursor issued on one chain is accepted on another and pages that chain from the first
chain's (block, logIndex) position: a wrong page, silently, instead of a 400 naming `cursor`."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, scenario, trade

pytestmark = [pytest.mark.pg, pytest.mark.redis]
BASE = 8453


async def base_trades(dsn: str) -> None:
    """Trades of market 1 on chain 8453 too (rows.trade writes chain 31337: moved over)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DELETE FROM idx.ev_trade WHERE chain_id = {CHAIN} AND block_number >= 1000")
        for block in (1000, 1001, 1002):
            await trade(conn, 1, block, 0)
        await conn.execute(
            f"UPDATE idx.ev_trade SET chain_id = {BASE} WHERE chain_id = {CHAIN} AND block_number >= 1000"
        )
    finally:
        await conn.close()


def test_a_cursor_of_one_chain_is_refused_on_another(db_dsn: str, redis_url: str) -> None:
    asyncio.run(scenario(db_dsn))
    asyncio.run(base_trades(db_dsn))
    settings = make_settings(db_dsn, redis_url, chain_ids=[CHAIN, BASE])
    with TestClient(create_app(settings, serve_feed=False), raise_server_exceptions=False) as c:
        home = c.get("/v1/trades", params={"limit": 1})
        assert home.status_code == 200, home.text
        cursor = home.json()["meta"]["nextCursor"]
        assert cursor is not None
        # the same cursor on the other chain: issued for other filters (the chain), so refused
        other = c.get("/v1/trades", params={"limit": 1, "chainId": BASE, "cursor": cursor})
        first_base = c.get("/v1/trades", params={"limit": 1, "chainId": BASE}).json()["data"]
        assert other.status_code == 400, (other.status_code, other.json().get("data"), first_base)
        assert other.json()["errors"][0]["field"] == "cursor"


async def more_trades(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await trade(conn, 1, 30, 0)
        await trade(conn, 1, 31, 0)
    finally:
        await conn.close()


def test_a_cursor_of_one_endpoint_is_refused_by_another(client: TestClient, db_dsn: str) -> None:
    """The hash binds the parameters' names and values only, not the endpoint: /v1/users/{a}/activity and
    /v1/users/{a}/dividends (and /v1/creators/{a}/trades and …/dividends) take the same (address, cursor,
    limit), so one's cursor is taken by the other as a position in its own list."""
    asyncio.run(scenario(db_dsn))
    asyncio.run(more_trades(db_dsn))
    user = "0x" + "a1" * 20
    activity = client.get(f"/v1/users/{user}/activity", params={"limit": 1})
    assert activity.status_code == 200, activity.text
    cursor = activity.json()["meta"]["nextCursor"]
    assert cursor is not None
    other = client.get(f"/v1/users/{user}/dividends", params={"cursor": cursor})
    assert other.status_code == 400, (other.status_code, other.json().get("meta"))
    assert other.json()["errors"][0]["field"] == "cursor"
