"""Ending-soon notifications: once per holder and market, stored and published on Redis."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from keeper.notify import channel, emit_ending_soon

pytestmark = [pytest.mark.pg, pytest.mark.redis]
NOW = 1_800_000_000
A, B = b"\xaa" * 20, b"\xbb" * 20


async def test_holders_are_told_once_when_their_market_ends_soon(db_dsn: str, redis_url: str) -> None:
    """Holders with shares in a market ending within the window get one notification each; empty positions,
    later markets and a second run get none."""
    conn = await asyncpg.connect(db_dsn)
    try:
        for mid, end in ((1, NOW + 1_800), (2, NOW + 7_200)):
            await conn.execute(
                "INSERT INTO idx.markets (chain_id, market_id, creator, question, category, end_time,"
                " initial_liquidity, yes_reserve, no_reserve, created_block, created_time, created_tx)"
                " VALUES (31337, $1, $2, 'Will it rain?', 'c', to_timestamp($3), 1, 1, 1, 1, now(), '\\x00')",
                mid,
                A,
                end,
            )
        for mid, holder, yes in ((1, A, 5), (1, B, 0), (2, A, 5)):
            await conn.execute(
                "INSERT INTO idx.positions (chain_id, market_id, holder, yes_shares, updated_block)"
                " VALUES (31337, $1, $2, $3, 1)",
                mid,
                holder,
                yes,
            )
        sub = aioredis.Redis.from_url(redis_url)
        pubsub = sub.pubsub()
        await pubsub.subscribe(channel(31337))
        await pubsub.get_message(timeout=1)  # subscription confirmation
        pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
        async with pool:
            first = await emit_ending_soon(pool, redis_url, 31337, NOW, 3_600)
            second = await emit_ending_soon(pool, redis_url, 31337, NOW, 3_600)
        assert first == {"stored": 1, "published": 1}
        assert second == {"stored": 0, "published": 0}
        msg = None
        for _ in range(20):
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if msg is not None:
                break
            await asyncio.sleep(0.05)
        assert msg is not None
        body = orjson.loads(msg["data"])
        assert body["event"] == "notification"
        assert body["rooms"] == ["user:0x" + A.hex()]
        assert body["payload"]["market_id"] == 1
        await pubsub.aclose()
        await sub.aclose()
        rows = await conn.fetch("SELECT recipient, kind, market_id FROM keeper.notifications")
        assert [(bytes(r["recipient"]), r["kind"], r["market_id"]) for r in rows] == [(A, "market_ending_soon", 1)]
    finally:
        await conn.close()
