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
    positions = [
        # (market, holder, yes_shares, yes_cost, realized_pnl, bought, sold, trades): market 2 is at 50/50
        (1, A, 0, 0, 50, 100, 150, 2),  # closed out: +50 realized
        (2, B, 10, 10, 0, 10, 0, 1),  # 10 YES at 0.50 bought for 10: -5
        (2, C, 0, 0, 395, 505, 900, 2),
    ]
    await conn.executemany(
        "INSERT INTO idx.positions (chain_id, market_id, holder, yes_shares, yes_cost, realized_pnl, bought, sold,"
        " trade_count, updated_block) VALUES (31337, $1, $2, $3, $4, $5, $6, $7, $8, 1)",
        [(m, who, y * USDC, c * USDC, r * USDC, b * USDC, s * USDC, n) for m, who, y, c, r, b, s, n in positions],
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
            'SELECT "window", "by", rank, trader, pnl, volume FROM agg.leaderboard_traders ORDER BY 1, 2, rank'
        )
        board: dict[tuple[str, str], list[tuple[bytes, int, int]]] = {}
        for r in lb:
            board.setdefault((r["window"], r["by"]), []).append((bytes(r["trader"]), int(r["pnl"]), int(r["volume"])))
        # all time: average-cost PnL from positions (C +395 realized, A +50, B's 10 YES worth 5 for 10)
        assert board["all", "pnl"] == [
            (C, 395 * USDC, 1405 * USDC),
            (A, 50 * USDC, 250 * USDC),
            (B, -5 * USDC, 10 * USDC),
        ]
        assert [t for t, _, _ in board["all", "volume"]] == [C, A, B]
        # windows: cash flow (C: 900 claimed - 505 paid; A's buy 3 days ago is outside 24 h)
        assert board["24h", "pnl"] == [
            (C, 395 * USDC, 505 * USDC),
            (A, 150 * USDC, 150 * USDC),
            (B, -40 * USDC, 40 * USDC),
        ]
        assert board["24h", "volume"] == [board["24h", "pnl"][i] for i in (0, 1, 2)]
        assert (
            board["7d", "pnl"]
            == board["30d", "pnl"]
            == [(C, 395 * USDC, 505 * USDC), (A, 50 * USDC, 250 * USDC), (B, -40 * USDC, 40 * USDC)]
        )
        assert [t for t, _, _ in board["7d", "volume"]] == [C, A, B]
        stats = {r["market_id"]: r for r in await conn.fetch("SELECT * FROM agg.market_stats_24h")}
        assert set(stats) == {1, 2, 3}
        assert (int(stats[1]["volume_24h"]), stats[1]["trades_24h"], stats[1]["traders_24h"]) == (180 * USDC, 2, 2)
        assert stats[1]["yes_price_change_24h"] is not None
        trending = await conn.fetch("SELECT rank, market_id FROM agg.trending_markets ORDER BY rank")
        assert [r["market_id"] for r in trending] == [1, 2]
        creators = await conn.fetch(
            'SELECT "window", creator, volume, holder_count FROM agg.leaderboard_creators'
            " WHERE \"window\" = '24h' AND \"by\" = 'volume'"
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
