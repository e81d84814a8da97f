"""Ending-soon notifications: once per holder and market, stored and written to the feed's outbox in
one transaction (the path every feed event takes)."""

from __future__ import annotations

import asyncpg
import orjson
import pytest

from keeper.notify import emit_ending_soon

pytestmark = [pytest.mark.pg]
NOW = 1_800_000_000
A, B = b"\xaa" * 20, b"\xbb" * 20


async def _markets_and_positions(conn: asyncpg.Connection) -> None:
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


async def test_holders_are_told_once_through_the_outbox(db_dsn: str) -> None:
    """Holders with shares in a market ending within the window get one notification each, stored and
    as one outbox row (event `notification`, room user:{address}, camelCase payload); empty positions,
    later markets and a second run get none."""
    conn = await asyncpg.connect(db_dsn)
    try:
        await _markets_and_positions(conn)
        await conn.execute(
            "INSERT INTO idx.outbox (chain_id, event, rooms, payload)"
            " VALUES (31337, 'market:trade', '{global:all}', '{}')"
        )
        pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
        async with pool:
            first = await emit_ending_soon(pool, 31337, NOW, 3_600)
            second = await emit_ending_soon(pool, 31337, NOW, 3_600)
        assert first == {"stored": 1}
        assert second == {"stored": 0}
        rows = await conn.fetch("SELECT recipient, kind, market_id FROM keeper.notifications")
        assert [(bytes(r["recipient"]), r["kind"], r["market_id"]) for r in rows] == [(A, "market_ending_soon", 1)]
        out = await conn.fetch(
            "SELECT seq, event, rooms, block_number, payload::text AS payload FROM idx.outbox ORDER BY seq"
        )
        assert [(o["event"], o["rooms"]) for o in out] == [
            ("market:trade", ["global:all"]),
            ("notification", ["user:0x" + A.hex()]),
        ]
        assert out[1]["seq"] > out[0]["seq"]
        assert out[1]["block_number"] is None
        payload = orjson.loads(out[1]["payload"])
        assert payload["id"] == "0-1-market_ending_soon"  # the id GET /v1/users/{a}/notifications lists
        assert payload["marketId"] == 1
        assert payload["recipient"] == "0x" + A.hex()
        assert payload["kind"] == "market_ending_soon"
        assert payload["blockNumber"] is None
        assert "market_id" not in payload
    finally:
        await conn.close()
