"""agg.* refresh from indexer rows: leaderboards by window, 24 h market stats, trending."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from keeper.aggregate import refresh_aggregates

pytestmark = [pytest.mark.pg]
NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
A, B, C = b"\xaa" * 20, b"\xbb" * 20, b"\xcc" * 20
USDC = 10**6


async def seed(conn: asyncpg.Connection) -> None:
    for mid, resolved, end in (
        (1, False, NOW + dt.timedelta(days=1)),
        (2, False, NOW + dt.timedelta(days=2)),
        (3, True, NOW - dt.timedelta(days=1)),
    ):
        await conn.execute(
            "INSERT INTO idx.markets (chain_id, market_id, creator, question, category, end_time, initial_liquidity,"
            " yes_reserve, no_reserve, resolved, created_block, created_time, created_tx)"
            " VALUES (31337, $1, $2, 'Q', 'c', $3, 10, 50, 50, $4, 1, $5, '\\x00')",
            mid,
            C,
            end,
            resolved,
            NOW - dt.timedelta(days=10),
        )
    trades = [
        # (block, market, trader, is_buy, collateral, age, yes_reserve, no_reserve)
        (10, 1, A, True, 100 * USDC, dt.timedelta(days=3), 50, 50),
        (11, 1, A, False, 150 * USDC, dt.timedelta(hours=2), 40, 60),  # A: +50 over all, +150 in 24h
        (12, 1, B, True, 30 * USDC, dt.timedelta(hours=1), 30, 70),
        (13, 2, B, True, 10 * USDC, dt.timedelta(hours=3), 50, 50),
        (14, 2, C, True, 5 * USDC, dt.timedelta(hours=4), 50, 50),
        (15, 3, C, True, 500 * USDC, dt.timedelta(hours=5), 50, 50),  # resolved market: never trending
    ]
    for block, mid, trader, is_buy, coll, age, yes, no in trades:
        await conn.execute(
            "INSERT INTO idx.ev_trade (chain_id, block_number, log_index, block_hash, tx_hash, block_time, market_id,"
            " trader, is_buy, outcome, collateral, shares, fee, creator_fee, yes_reserve, no_reserve, trader_yes,"
            " trader_no) VALUES (31337, $1, 0, '\\x01', '\\x02', $2, $3, $4, $5, 1, $6, 1, 0, 0, $7, $8, 0, 0)",
            block,
            NOW - age,
            mid,
            trader,
            is_buy,
            coll,
            yes,
            no,
        )
    await conn.execute(
        "INSERT INTO idx.ev_winnings_claimed (chain_id, block_number, log_index, block_hash, tx_hash, block_time,"
        " market_id, holder, payout, yes_burned, no_burned) VALUES (31337, 16, 0, '\\x01', '\\x02', $1, 3, $2, $3,"
        " 0, 0)",
        NOW - dt.timedelta(hours=1),
        C,
        900 * USDC,
    )
    await conn.execute(
        "INSERT INTO idx.ev_shares_traded (chain_id, block_number, log_index, block_hash, tx_hash, block_time,"
        " creator, trader, is_buy, amount, price, protocol_fee, creator_fee, dividend_fee, supply, trader_shares,"
        " trader_claimable, locked_until, pool, acc_per_share) VALUES (31337, 17, 0, '\\x01', '\\x02', $1, $2, $3,"
        " true, 1, $4, 0, 0, 0, 2, 1, 0, 0, 0, 0)",
        NOW - dt.timedelta(hours=1),
        C,
        A,
        7 * USDC,
    )
    await conn.execute(
        "INSERT INTO idx.creators (chain_id, creator, supply, holder_count, distributed_total, first_block,"
        " updated_block) VALUES (31337, $1, 2, 2, 123, 1, 17)",
        C,
    )


async def test_refresh_builds_leaderboards_stats_and_trending(db_dsn: str) -> None:
    """Cash-flow PnL per window, 24 h stats for every market, trending only over open markets with trades."""
    conn = await asyncpg.connect(db_dsn)
    try:
        await seed(conn)
        pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
        async with pool:
            counts = await refresh_aggregates(pool, 31337, 100, 50, now=NOW)
            again = await refresh_aggregates(pool, 31337, 100, 50, now=NOW)  # idempotent, replaces rows
        assert counts == again
        lb = await conn.fetch(
            'SELECT "window", rank, trader, pnl, volume, trades FROM agg.leaderboard_traders ORDER BY "window", rank'
        )
        by_window: dict[str, list[tuple[bytes, int]]] = {}
        for r in lb:
            by_window.setdefault(r["window"], []).append((bytes(r["trader"]), int(r["pnl"])))
        # all time: C = 900 - 505 = 395, A = 150 - 100 = 50, B = -40
        assert by_window["all"] == [(C, 395 * USDC), (A, 50 * USDC), (B, -40 * USDC)]
        assert by_window["24h"] == [(C, 395 * USDC), (A, 150 * USDC), (B, -40 * USDC)]
        stats = {r["market_id"]: r for r in await conn.fetch("SELECT * FROM agg.market_stats_24h")}
        assert set(stats) == {1, 2, 3}
        assert (int(stats[1]["volume_24h"]), stats[1]["trades_24h"], stats[1]["traders_24h"]) == (180 * USDC, 2, 2)
        assert stats[1]["yes_price_change_24h"] is not None
        trending = await conn.fetch("SELECT rank, market_id FROM agg.trending_markets ORDER BY rank")
        assert [r["market_id"] for r in trending] == [1, 2]
        creators = await conn.fetch(
            'SELECT "window", creator, volume, holder_count FROM agg.leaderboard_creators WHERE "window" = \'24h\''
        )
        assert [(bytes(r["creator"]), int(r["volume"]), r["holder_count"]) for r in creators] == [(C, 7 * USDC, 2)]
        refreshed = await conn.fetch("SELECT name, rows FROM agg.refreshes ORDER BY name")
        assert {r["name"] for r in refreshed} == {
            "leaderboard_creators",
            "leaderboard_traders",
            "market_stats_24h",
            "trending_markets",
        }
        # the API's read-only role can read them
        await conn.execute("SET ROLE api")
        assert await conn.fetchval("SELECT count(*) FROM agg.trending_markets") == 2
    finally:
        await conn.close()
