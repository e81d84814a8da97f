"""Rows written straight into idx.* for API tests, and the hand-computed scenario they encode."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

CHAIN = 31337
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
CREATOR = bytes.fromhex("c1" * 20)
TRADER = bytes.fromhex("a1" * 20)
OTHER = bytes.fromhex("b2" * 20)
U = 10**6


def h(n: int) -> bytes:
    return n.to_bytes(32, "big")


async def head(conn: asyncpg.Connection, block: int, safe: int | None = None, finalized: int | None = None) -> None:
    await conn.execute(
        """INSERT INTO idx.checkpoints (chain_id, block_number, block_hash) VALUES ($1, $2, $3)
           ON CONFLICT (chain_id) DO UPDATE SET block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,
                                              updated_at = now()""",
        CHAIN,
        block,
        h(block),
    )
    await conn.execute(
        """INSERT INTO idx.chain_heads (chain_id, head_block, safe_block, finalized_block) VALUES ($1, $2, $3, $4)
           ON CONFLICT (chain_id) DO UPDATE SET head_block = EXCLUDED.head_block, safe_block = EXCLUDED.safe_block,
                                              finalized_block = EXCLUDED.finalized_block, updated_at = now()""",
        CHAIN,
        block,
        safe,
        finalized,
    )


async def market(
    conn: asyncpg.Connection,
    market_id: int,
    *,
    creator: bytes = CREATOR,
    question: str = "Q?",
    category: str = "crypto",
    end: dt.timedelta = dt.timedelta(days=7),
    y: int = 100 * U,
    n: int = 100 * U,
    volume: int = 0,
    trades: int = 0,
    resolved: bool = False,
    outcome: int | None = None,
    block: int = 10,
    created: dt.datetime | None = None,
) -> None:
    created = created or NOW - dt.timedelta(days=2)
    await conn.execute(
        """INSERT INTO idx.ev_market_created (chain_id, block_number, log_index, block_hash, tx_hash, block_time,
               market_id, creator, question, category, end_time, initial_liquidity, yes_reserve, no_reserve)
           VALUES ($1, $2, 0, $3, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10)""",
        CHAIN,
        block,
        h(block),
        created,
        market_id,
        creator,
        question,
        category,
        int((created + end).timestamp()),
        100 * U,
    )
    await conn.execute(
        """INSERT INTO idx.markets (chain_id, market_id, creator, question, category, end_time, initial_liquidity,
               yes_reserve, no_reserve, resolved, outcome, volume, trade_count, created_block, created_time, created_tx)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)""",
        CHAIN,
        market_id,
        creator,
        question,
        category,
        created + end,
        100 * U,
        y,
        n,
        resolved,
        outcome,
        volume,
        trades,
        block,
        created,
        h(block),
    )


async def trade(
    conn: asyncpg.Connection,
    market_id: int,
    block: int,
    log_index: int = 0,
    *,
    trader: bytes = TRADER,
    is_buy: bool = True,
    outcome: int = 1,
    collateral: int = 10 * U,
    shares: int = 15 * U,
    y: int = 90 * U,
    n: int = 110 * U,
    when: dt.datetime | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO idx.ev_trade (chain_id, block_number, log_index, block_hash, tx_hash, block_time, market_id,
               trader, is_buy, outcome, collateral, shares, fee, creator_fee, yes_reserve, no_reserve, trader_yes,
               trader_no)
           VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, $13, $14, 0, 0)""",
        CHAIN,
        block,
        log_index,
        h(block),
        when or NOW - dt.timedelta(minutes=5),
        market_id,
        trader,
        is_buy,
        outcome,
        collateral,
        shares,
        collateral // 50,
        y,
        n,
    )


async def position(conn: asyncpg.Connection, market_id: int, holder: bytes = TRADER, **cols: int) -> None:
    values: dict[str, Any] = {
        "yes_shares": 0,
        "no_shares": 0,
        "yes_cost": 0,
        "no_cost": 0,
        "bought": 0,
        "sold": 0,
        "realized_pnl": 0,
        "claimed": 0,
        "trade_count": 1,
        "updated_block": 50,
    }
    values.update(cols)
    await conn.execute(
        f"""INSERT INTO idx.positions (chain_id, market_id, holder, {", ".join(values)})
            VALUES ($1, $2, $3, {", ".join(f"${i + 4}" for i in range(len(values)))})""",
        CHAIN,
        market_id,
        holder,
        *values.values(),
    )


async def outbox(
    conn: asyncpg.Connection,
    event: str,
    rooms: list[str],
    payload: dict[str, Any],
    block: int | None = None,
    log_index: int | None = None,
) -> int:
    import json

    seq = await conn.fetchval(
        """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) RETURNING seq""",
        CHAIN,
        event,
        rooms,
        block,
        log_index,
        h(block) if block is not None else None,
        json.dumps(payload),
    )
    await conn.execute("SELECT pg_notify('gl_outbox', $1)", f"{CHAIN}:{seq}")
    return int(seq)


async def scenario(dsn: str) -> None:
    """Three markets, one trader with an open, a redeemable and a closed position (docs: tests/api)."""
    conn = await asyncpg.connect(dsn)
    try:
        await head(conn, 100, safe=90, finalized=80)
        await market(conn, 1, question="Will BTC reach $100k?", y=80 * U, n=125 * U, volume=50 * U, trades=2)
        await market(
            conn,
            2,
            question="Will ETH flip BTC?",
            category="eth",
            resolved=True,
            outcome=1,
            end=dt.timedelta(days=1),
            block=11,
        )
        await market(
            conn,
            3,
            question="Rain in Paris 100%?",
            category="weather",
            creator=OTHER,
            end=dt.timedelta(hours=1),
            block=12,
            created=NOW - dt.timedelta(hours=30),
        )
        await trade(conn, 1, 20, 0, collateral=30 * U, shares=50 * U, y=80 * U, n=125 * U)
        await trade(
            conn,
            1,
            15,
            1,
            trader=OTHER,
            collateral=20 * U,
            shares=25 * U,
            outcome=0,
            y=80 * U,
            n=125 * U,
            when=NOW - dt.timedelta(days=1, hours=1),
        )
        await position(conn, 1, yes_shares=50 * U, yes_cost=30 * U, bought=30 * U)
        await position(
            conn,
            2,
            yes_shares=10 * U,
            yes_cost=4 * U,
            no_shares=5 * U,
            no_cost=3 * U,
            realized_pnl=1_500_000,
            bought=12 * U,
            sold=6 * U,
        )
        await position(conn, 3, realized_pnl=-2 * U, bought=5 * U, sold=3 * U)
        await position(conn, 1, holder=OTHER, no_shares=25 * U, no_cost=20 * U, bought=20 * U)
    finally:
        await conn.close()
