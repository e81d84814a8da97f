"""The incrementally maintained statistics (sql/025, sql/026) equal a recomputation from the raw events
after any sequence of batches and reorg deletions, and /v1/stats serves them."""

from __future__ import annotations

import datetime as dt
import random

import asyncpg
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, NOW, U, h

pytestmark = [pytest.mark.pg]

BASE = ["chain_id", "block_number", "log_index", "block_hash", "tx_hash", "block_time"]
TRADE_COLUMNS = [
    *BASE,
    *"market_id trader is_buy outcome collateral shares fee creator_fee yes_reserve no_reserve".split(),
    *["trader_yes", "trader_no"],
]
CREATED_COLUMNS = [
    *BASE,
    *"market_id creator question category end_time initial_liquidity".split(),
    "yes_reserve",
    "no_reserve",
]
DIVIDEND_COLUMNS = [*BASE, "creator", "amount", "market_fees", "supply", "acc_per_share", "pool"]
REORG_TABLES = ("ev_trade", "ev_shares_traded", "ev_market_created", "ev_dividends_distributed")

RECOMPUTED_MINUTES = """
WITH e AS (
  SELECT chain_id, date_trunc('minute', block_time) AS minute, 1 AS trades, collateral AS volume, fee AS fees,
         0 AS share_trades, 0::numeric AS share_volume, 0 AS markets_created, 0::numeric AS dividends
    FROM idx.ev_trade
  UNION ALL
  SELECT chain_id, date_trunc('minute', block_time), 0, 0, 0, 1, price, 0, 0 FROM idx.ev_shares_traded
  UNION ALL
  SELECT chain_id, date_trunc('minute', block_time), 0, 0, 0, 0, 0, 1, 0 FROM idx.ev_market_created
  UNION ALL
  SELECT chain_id, date_trunc('minute', block_time), 0, 0, 0, 0, 0, 0, amount FROM idx.ev_dividends_distributed
)
SELECT chain_id, minute, sum(trades) AS trades, sum(volume) AS volume, sum(fees) AS fees,
       sum(share_trades) AS share_trades, sum(share_volume) AS share_volume,
       sum(markets_created) AS markets_created, sum(dividends) AS dividends_distributed
  FROM e GROUP BY 1, 2 ORDER BY 1, 2
"""
STORED_MINUTES = """
SELECT chain_id, minute, trades, volume, fees, share_trades, share_volume, markets_created, dividends_distributed
  FROM agg.platform_minutes
 WHERE (trades, volume, fees, share_trades, share_volume, markets_created, markets_resolved, dividends_distributed)
       <> (0, 0, 0, 0, 0, 0, 0, 0)
 ORDER BY 1, 2
"""
RECOMPUTED_USERS = """
SELECT chain_id, trader AS address, max(block_time) AS last_at
  FROM (SELECT chain_id, trader, block_time FROM idx.ev_trade
        UNION ALL SELECT chain_id, trader, block_time FROM idx.ev_shares_traded) e
 GROUP BY 1, 2 ORDER BY 1, 2
"""
STORED_USERS = "SELECT chain_id, address, last_at FROM agg.user_last_active ORDER BY 1, 2"
RECOMPUTED_HOURS = f"""
SELECT chain_id, date_trunc('hour', minute, 'UTC') AS hour, sum(trades), sum(volume), sum(fees), sum(share_trades),
       sum(share_volume), sum(markets_created), sum(dividends_distributed)
  FROM ({RECOMPUTED_MINUTES.replace("ORDER BY 1, 2", "")}) m GROUP BY 1, 2 ORDER BY 1, 2
"""
STORED_HOURS = STORED_MINUTES.replace("minute", "hour")  # agg.platform_minutes too
RECOMPUTED_ACTIVE = f"""
SELECT chain_id, date_trunc('{{unit}}', last_at, 'UTC') AS at, count(*)
  FROM ({RECOMPUTED_USERS.replace("ORDER BY 1, 2", "")}) u GROUP BY 1, 2 ORDER BY 1, 2
"""
STORED_ACTIVE = "SELECT chain_id, {unit}, users FROM agg.active_{unit}s WHERE users <> 0 ORDER BY 1, 2"
RECOMPUTED_TRADER_DAYS = """
SELECT chain_id, trader, date_trunc('day', block_time, 'UTC') AS day, sum(cash), sum(volume), sum(trades)
  FROM (SELECT chain_id, trader, block_time, CASE WHEN is_buy THEN -collateral ELSE collateral END AS cash,
               collateral AS volume, 1 AS trades FROM idx.ev_trade
        UNION ALL SELECT chain_id, holder, block_time, payout, 0, 0 FROM idx.ev_winnings_claimed) e
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
STORED_TRADER_DAYS = """
SELECT chain_id, trader, day, cash, volume, trades FROM agg.trader_days
 WHERE (cash, volume, trades) <> (0, 0, 0) ORDER BY 1, 2, 3
"""


async def assert_aggregates_match(conn: asyncpg.Connection, label: str = "") -> None:
    """Every trigger-maintained table equals its GROUP BY over the raw events."""
    for stored, recomputed in (
        (STORED_MINUTES, RECOMPUTED_MINUTES),
        (STORED_HOURS, RECOMPUTED_HOURS),
        (STORED_USERS, RECOMPUTED_USERS),
        (STORED_ACTIVE.format(unit="minute"), RECOMPUTED_ACTIVE.format(unit="minute")),
        (STORED_ACTIVE.format(unit="hour"), RECOMPUTED_ACTIVE.format(unit="hour")),
        (STORED_TRADER_DAYS, RECOMPUTED_TRADER_DAYS),
    ):
        got = [tuple(r) for r in await conn.fetch(stored)]
        assert got == [tuple(r) for r in await conn.fetch(recomputed)], f"{label}: {stored.split()[-5]}"


async def insert_batch(conn: asyncpg.Connection, rng: random.Random, first_block: int, blocks: int) -> None:
    """One indexer-like batch: several event kinds per block, one statement per table."""
    trades, shares, created, dividends, claims = [], [], [], [], []
    traders = [bytes([i]) * 20 for i in range(1, 41)]  # enough that latest activity spreads over hours
    for b in range(first_block, first_block + blocks):
        t = NOW - dt.timedelta(minutes=3 * (10_000 - b))  # block times never decrease
        for i in range(rng.randrange(0, 4)):
            c = rng.randrange(1, 500) * U
            trades.append((CHAIN, b, i, h(b), h(b), t, 1, rng.choice(traders), True, 1, c, c, c // 50, 0, U, U, 0, 0))
        for i in range(10, 10 + rng.randrange(0, 2)):
            shares.append((CHAIN, b, i, h(b), t, rng.choice(traders), rng.randrange(1, 100) * U))
        if rng.random() < 0.2:
            created.append((CHAIN, b, 20, h(b), h(b), t, b, traders[0], "q", "c", 0, U, U, U))
        if rng.random() < 0.3:
            claims.append((CHAIN, b, 40, h(b), h(b), t, 1, rng.choice(traders), rng.randrange(1, 90) * U, 0, 0))
        if rng.random() < 0.2:
            dividends.append((CHAIN, b, 30, h(b), h(b), t, traders[0], rng.randrange(1, 50) * U, 0, 1, 0, 0))
    async with conn.transaction():  # COPY for trades, markets and dividends, INSERT for share trades
        await conn.copy_records_to_table("ev_trade", schema_name="idx", records=trades, columns=TRADE_COLUMNS)
        await conn.executemany(
            """INSERT INTO idx.ev_shares_traded (chain_id, block_number, log_index, block_hash, tx_hash, block_time,
                   creator, trader, is_buy, amount, price, protocol_fee, creator_fee, dividend_fee, supply,
                   trader_shares, trader_claimable, locked_until, pool, acc_per_share)
               VALUES ($1, $2, $3, $4, $4, $5, $6, $6, true, 1, $7, 0, 0, 0, 1, 1, 0, 0, 0, 0)""",
            shares,
        )
        await conn.copy_records_to_table(
            "ev_market_created", schema_name="idx", records=created, columns=CREATED_COLUMNS
        )
        await conn.copy_records_to_table(
            "ev_dividends_distributed", schema_name="idx", records=dividends, columns=DIVIDEND_COLUMNS
        )
        await conn.copy_records_to_table("ev_winnings_claimed", schema_name="idx", records=claims)


async def test_aggregates_equal_a_recomputation_after_batches_and_reorgs(db_dsn: str) -> None:
    """Batches (COPY and INSERT) and reorg deletions in random order: the per-minute totals and the
    users' latest activity always equal a GROUP BY over the raw events."""
    conn = await asyncpg.connect(db_dsn)
    try:
        rng = random.Random(7)
        tip = 100
        for step in range(25):
            if step % 4 == 3 and tip > 110:  # a reorg: everything above an ancestor goes, in one transaction
                ancestor = tip - rng.randrange(1, 10)
                async with conn.transaction():
                    for table in (*REORG_TABLES, "ev_winnings_claimed"):
                        await conn.execute(
                            f"DELETE FROM idx.{table} WHERE chain_id = $1 AND block_number > $2", CHAIN, ancestor
                        )
                tip = ancestor
            else:
                n = rng.randrange(1, 8)
                await insert_batch(conn, rng, tip + 1, n)
                tip += n
            await assert_aggregates_match(conn, f"step {step}")
        assert await conn.fetchval("SELECT sum(trades) FROM agg.platform_minutes") > 0
        assert await conn.fetchval("SELECT count(*) FROM agg.active_hours WHERE users > 0") > 1
    finally:
        await conn.close()


@pytest.mark.redis
async def test_stats_window_counts_the_minutes_since_its_start(db_dsn: str, redis_url: str) -> None:
    """/v1/stats?window=24h counts what happened from the minute 24 h ago; older events only in `all`."""
    conn = await asyncpg.connect(db_dsn)
    now = dt.datetime.now(dt.UTC)
    try:
        rows = [
            (CHAIN, b, 0, h(b), h(b), when, 1, bytes([b]) * 20, True, 1, 10 * U, 10 * U, U // 5, 0, U, U, 0, 0)
            for b, when in (
                (1, now - dt.timedelta(days=3)),
                (2, now - dt.timedelta(hours=24, minutes=2)),  # just before the window's first minute
                (3, now - dt.timedelta(hours=23, minutes=58)),  # its first minutes: read from agg.*_minutes
                (4, now - dt.timedelta(hours=2)),
                (5, now),
            )
        ]
        await conn.copy_records_to_table("ev_trade", schema_name="idx", records=rows, columns=TRADE_COLUMNS)
    finally:
        await conn.close()
    with TestClient(create_app(make_settings(db_dsn, redis_url, cache_enabled=False), serve_feed=False)) as c:
        day = c.get("/v1/stats", params={"window": "24h"}).json()["data"]
        every = c.get("/v1/stats", params={"window": "all"}).json()["data"]
    assert (day["trades"], day["volume"], day["fees"], day["activeUsers"]) == (3, "30.000000", "0.600000", 3)
    assert (every["trades"], every["volume"], every["activeUsers"]) == (5, "50.000000", 5)


async def test_an_initial_sync_skips_the_triggers_and_rebuilds_when_its_indexes_are_built(db_dsn: str) -> None:
    """While idx.deferred_indexes has rows (the indexer's initial sync) batches leave the aggregates
    alone; the statement that deletes the last row rebuilds them from the raw events."""
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = [("a", "CREATE INDEX a ON idx.ev_trade (trader)"), ("b", "CREATE INDEX b ON idx.ev_trade (fee)")]
        await conn.executemany("INSERT INTO idx.deferred_indexes (name, definition, chain_id) VALUES ($1, $2, 1)", rows)
        await insert_batch(conn, random.Random(3), 1, 20)
        assert await conn.fetchval("SELECT count(*) FROM idx.ev_trade") > 0
        assert await conn.fetchval("SELECT count(*) FROM agg.platform_minutes") == 0
        assert await conn.fetchval("SELECT count(*) FROM agg.user_last_active") == 0
        await conn.execute("DELETE FROM idx.deferred_indexes WHERE name = 'a'")
        assert await conn.fetchval("SELECT count(*) FROM agg.platform_minutes") == 0  # one still deferred
        await conn.execute("DELETE FROM idx.deferred_indexes WHERE name = 'b'")
        await assert_aggregates_match(conn)
    finally:
        await conn.close()


async def test_a_rebuild_missed_by_concurrent_index_builds_happens_on_the_next_batch(db_dsn: str) -> None:
    """Two builders delete the last two deferred rows at once and neither sees the table empty: the
    next batch that writes events rebuilds (once), and its own rows are counted once."""
    conn = await asyncpg.connect(db_dsn)
    other = await asyncpg.connect(db_dsn)
    try:
        rows = [("a", "CREATE INDEX a ON idx.ev_trade (trader)"), ("b", "CREATE INDEX b ON idx.ev_trade (fee)")]
        await conn.executemany("INSERT INTO idx.deferred_indexes (name, definition, chain_id) VALUES ($1, $2, 1)", rows)
        await insert_batch(conn, random.Random(4), 1, 20)
        one, two = conn.transaction(), other.transaction()
        await one.start()
        await two.start()
        await conn.execute("DELETE FROM idx.deferred_indexes WHERE name = 'a'")  # sees b: no rebuild
        await other.execute("DELETE FROM idx.deferred_indexes WHERE name = 'b'")  # sees a: no rebuild
        await one.commit()
        await two.commit()
        assert await conn.fetchval("SELECT count(*) FROM agg.platform_minutes") == 0
        assert await conn.fetchval("SELECT count(*) FROM agg.rebuild_pending") == 1
        await insert_batch(conn, random.Random(5), 21, 5)
        assert await conn.fetchval("SELECT count(*) FROM agg.rebuild_pending") == 0
        await assert_aggregates_match(conn)
    finally:
        await conn.close()
        await other.close()
