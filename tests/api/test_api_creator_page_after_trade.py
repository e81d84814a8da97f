"""A trade in a creator's market changes that creator's page: the feed message that announces it goes to
the creator's room, and the API drops the page's cached answer before the client hears of it (review s21
hy: the message named no creator room, and the page was served stale for cache_ttl_s).

What the review found:

The indexer's fold of a Trade (indexer/fold.py, `Fold.trade`) adds the trade's collateral to
`idx.markets.volume` and its creator fee to the market creator's `idx.creators.market_fees_accrued`
(and moves the creator's `updated_block`). `GET /v1/creators/{a}` shows all three
(`marketVolume` = sum of the creator's markets' volume, `pendingDividends` = pool + market fees
accrued - folded, `updatedBlock`; api/routes/creators.py) and is cached under `creator:{a}`. The
trade's outbox row names the rooms `global:all`, `market:{id}`, `user:{trader}` (fold.py: emit_row
"market:trade") — not `creator:{market creator}` — so the pump (api/cache.py keys_for) never deletes
`creator:{a}`, and the answer cached before the trade is served for `cache_ttl_s` (300 s) after the
feed announced the trade. docs/api.md "Caching": invalidation follows the outbox; a client told about
a change finds the cache cleared (api/outbox.py); `cache_ttl_s` is "a safety net only"."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect

from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, CREATOR, OTHER, U, h, scenario
from tests.api.test_api_feed import recv_type, running, subscribe

pytestmark = [pytest.mark.pg, pytest.mark.redis]
CREATOR_HEX = "0x" + CREATOR.hex()


def usdc(v: int) -> str:
    return f"{v // U}.{v % U:06d}"


async def _creator_row(conn: asyncpg.Connection) -> None:
    """CREATOR (creator of markets 1 and 2 in the scenario) also has a share curve."""
    await conn.execute(
        """INSERT INTO idx.creators (chain_id, creator, supply, acc_per_share, pool, market_fees_accrued,
               market_fees_folded, creator_fees, distributed_total, distribution_count, holder_count, volume,
               trade_count, first_block, updated_block)
           VALUES ($1, $2, 10, 0, $3, $4, 0, 0, 0, 0, 1, $5, 1, 10, 12)""",
        CHAIN,
        CREATOR,
        2 * U,
        1 * U,
        5 * U,
    )


async def _indexer_writes_a_trade_in_market_1(conn: asyncpg.Connection, block: int) -> int:
    """What the indexer's batch commits for OTHER buying 40 USDC of YES in market 1 (creator fee 0.4 USDC):
    the event row, the fold (markets, the market creator's creators row), the outbox row with the fold's
    rooms — in one transaction, then the NOTIFY (as indexer/write.py)."""
    collateral, creator_fee = 40 * U, 400_000
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO idx.ev_trade (chain_id, block_number, log_index, block_hash, tx_hash, block_time, market_id,
                   trader, is_buy, outcome, collateral, shares, fee, creator_fee, yes_reserve, no_reserve,
                   trader_yes, trader_no)
               VALUES ($1, $2, 0, $3, $3, now(), 1, $4, true, 1, $5, $6, $7, $8, $9, $10, $6, 0)""",
            CHAIN,
            block,
            h(block),
            OTHER,
            collateral,
            60 * U,
            collateral // 50,
            creator_fee,
            60 * U,
            165 * U,
        )
        await conn.execute(
            """UPDATE idx.markets SET volume = volume + $3, trade_count = trade_count + 1, yes_reserve = $4,
                      no_reserve = $5, last_trade_block = $6 WHERE chain_id = $1 AND market_id = $2""",
            CHAIN,
            1,
            collateral,
            60 * U,
            165 * U,
            block,
        )
        await conn.execute(
            """UPDATE idx.creators SET market_fees_accrued = market_fees_accrued + $3, updated_block = $4
                WHERE chain_id = $1 AND creator = $2""",
            CHAIN,
            CREATOR,
            creator_fee,
            block,
        )
        seq = await conn.fetchval(
            """INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)
               VALUES ($1, 'market:trade', $2, $3, 0, $4, NULL) RETURNING seq""",
            CHAIN,
            # fold.py: Fold.trade's rooms, the market's creator included (tests/indexer/test_trade_rooms.py)
            ["global:all", "market:1", "user:0x" + OTHER.hex(), "creator:" + CREATOR_HEX],
            block,
            h(block),
        )
    await conn.execute("SELECT pg_notify('gl_outbox', $1)", f"{CHAIN}:{seq}")
    return int(seq)


async def _fresh_creator(conn: asyncpg.Connection) -> dict[str, str | int]:
    """What /v1/creators/{a} computes from the database now (api/routes/creators.py)."""
    r = await conn.fetchrow(
        """SELECT c.pool + c.market_fees_accrued - c.market_fees_folded AS pending, c.updated_block,
                  (SELECT sum(volume) FROM idx.markets m WHERE m.chain_id = c.chain_id AND m.creator = c.creator) AS mv
             FROM idx.creators c WHERE c.chain_id = $1 AND c.creator = $2""",
        CHAIN,
        CREATOR,
    )
    assert r is not None
    return {
        "marketVolume": usdc(int(r["mv"])),
        "pendingDividends": usdc(int(r["pending"])),
        "updatedBlock": int(r["updated_block"]),
    }


async def test_a_trade_in_a_creators_market_announced_on_the_feed_leaves_the_creator_page_cached_stale(
    db_dsn: str, redis_url: str
) -> None:
    await scenario(db_dsn)
    conn = await asyncpg.connect(db_dsn)
    try:
        await _creator_row(conn)
        async with running(make_settings(db_dsn, redis_url, outbox_poll_s=0.05)) as (app, _rt, url):
            async with (
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
                connect(url) as ws,
            ):
                path = f"/v1/creators/{CREATOR_HEX}"
                first = (await http.get(path)).json()["data"]
                assert (await http.get(path)).headers["x-cache"] == "hit"
                assert first["marketVolume"] == "50.000000"  # market 1's 50 USDC (scenario)
                await subscribe(ws, ["global:all", "market:1", f"creator:{CREATOR_HEX}"])

                seq = await _indexer_writes_a_trade_in_market_1(conn, 101)
                m = await recv_type(ws, "event")
                assert (m["event"], m["seq"]) == ("market:trade", seq)
                # the client follows the feed: a trade in market 1 (CREATOR's) — it refetches the market
                # and its creator's page; the market page is fresh (its key was invalidated before the frame)
                market = (await http.get("/v1/markets/1")).json()["data"]
                assert market["volume"] == "90.000000"
                await asyncio.sleep(1.0)  # well past any pump lag (poll 0.05 s)
                got = (await http.get(path)).json()["data"]
                want = await _fresh_creator(conn)
                assert want == {"marketVolume": "90.000000", "pendingDividends": "3.400000", "updatedBlock": 101}
                seen = {k: got[k] for k in want}
                assert seen == want, (
                    f"after the feed announced seq {seq} (a trade in {CREATOR_HEX}'s market 1), /v1/creators still"
                    f" serves the answer cached before it: {seen}"
                    f" (x-cache {(await http.get(path)).headers['x-cache']}),"
                    f" the database holds {want}"
                )
    finally:
        await conn.close()
