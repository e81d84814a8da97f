"""The Edge's fast path: a repeated public GET answers from the in-process cache with the same body
and headers as the full path, never after an invalidation, and never for a cross-origin request
(which needs its CORS headers)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings
from tests.api.rows import scenario, trade

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def test_repeated_get_is_answered_by_the_edge_until_invalidated(db_dsn: str, redis_url: str) -> None:
    """First request: full path (miss); second: the Edge (hit) with identical body and security
    headers; a new trade invalidates it and the next answer is fresh."""
    await scenario(db_dsn)
    settings = make_settings(db_dsn, redis_url, outbox_poll_s=0.05, cors_origins=["https://app.example"])
    app = create_app(settings, serve_feed=False)
    with TestClient(app) as c:
        first = c.get("/v1/markets/1?chainId=31337")
        second = c.get("/v1/markets/1?chainId=31337")
        assert first.headers["x-cache"] == "miss"
        assert second.headers["x-cache"] == "hit"
        assert ("/v1/markets/1", b"chainId=31337") in app.state.runtime.slots
        assert second.content == first.content
        for h in ("content-security-policy", "x-content-type-options", "strict-transport-security"):
            assert second.headers[h] == first.headers[h]
        cross = c.get("/v1/markets/1?chainId=31337", headers={"Origin": "https://app.example"})
        assert cross.headers["access-control-allow-origin"] == "https://app.example"
        trades = second.json()["data"]["trades"]
        conn = await asyncpg.connect(db_dsn)
        try:
            await trade(conn, 1, 150, 0)
            await conn.execute(
                """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
                   VALUES (31337, 'market:trade', ARRAY['market:1'], 150, 0, '\\x96', '{}')"""
            )
            await conn.execute("UPDATE idx.markets SET trade_count = trade_count + 1 WHERE market_id = 1")
        finally:
            await conn.close()
        for _ in range(200):
            fresh = c.get("/v1/markets/1?chainId=31337")
            if fresh.headers["x-cache"] == "miss":
                break
            await asyncio.sleep(0.05)
        assert fresh.headers["x-cache"] == "miss"
        assert fresh.json()["data"]["trades"] == trades + 1


async def test_distinct_urls_do_not_push_out_the_ones_in_use(
    db_dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path's table is bounded; a stream of one-off URLs (any client can make them) evicts
    the least recently answered, not a URL that keeps being asked for (the table was cleared whole)."""
    monkeypatch.setattr("api.app.SLOTS_MAX", 8)
    await scenario(db_dsn)
    app = create_app(make_settings(db_dsn, redis_url), serve_feed=False)
    popular = ("/v1/markets/1", b"chainId=31337")
    with TestClient(app) as c:
        c.get("/v1/markets/1?chainId=31337")
        for i in range(40):
            assert c.get("/v1/markets/1?chainId=31337").headers["x-cache"] == "hit"
            c.get(f"/v1/markets?chainId=31337&q=one-off-{i}")
            slots = app.state.runtime.slots
            assert len(slots) <= 8
            assert popular in slots, i
        assert ("/v1/markets", b"chainId=31337&q=one-off-0") not in app.state.runtime.slots
