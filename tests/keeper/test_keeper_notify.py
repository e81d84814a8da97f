"""Ending-soon notifications: once per holder and market, stored and published on Redis."""

from __future__ import annotations

import asyncio
from typing import Any

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
        async with asyncio.timeout(30):  # subscribed before anything is published
            while (await pubsub.get_message(timeout=1)) is None:
                pass
        pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
        async with pool:
            first = await emit_ending_soon(pool, redis_url, 31337, NOW, 3_600)
            second = await emit_ending_soon(pool, redis_url, 31337, NOW, 3_600)
        assert first == {"stored": 1, "published": 1}
        assert second == {"stored": 0, "published": 0}
        # pub/sub ignores the Redis db: another test's keeper (chain 31337 too) may publish on this
        # channel at the same time, so messages for other users are skipped
        body: dict[str, Any] = {}
        async with asyncio.timeout(30):
            while body.get("rooms") != ["user:0x" + A.hex()]:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                body = orjson.loads(msg["data"]) if msg is not None else {}
        assert body["event"] == "notification"
        assert body["payload"]["market_id"] == 1
        await pubsub.aclose()
        await sub.aclose()
        rows = await conn.fetch("SELECT recipient, kind, market_id FROM keeper.notifications")
        assert [(bytes(r["recipient"]), r["kind"], r["market_id"]) for r in rows] == [(A, "market_ending_soon", 1)]
    finally:
        await conn.close()
