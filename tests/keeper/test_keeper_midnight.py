"""The keeper's 00:00 distribution fires when the chain's latest block is still the day before's. Read
there, a quiet creator whose pending lots mature at that 00:00 showed nothing to do, was skipped for the
whole day, and the lot's holder lost that day's market fees (review r5). The run now waits for a block of
its day (a bounded wait) before it decides."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import asyncpg
import pytest

from core.deploy import anvil_account
from keeper import jobs
from keeper.abi import decode_result, encode_call
from tests.keeper.kit import USDC, ChainOps, fetch, harness, make_settings

pytestmark = [pytest.mark.pg, pytest.mark.anvil]

DAY = 86_400


def at(ops: ChainOps, ts: int) -> None:
    ops.anvil.call("evm_setNextBlockTimestamp", hex(ts))


def view(ops: ChainOps, fn: str, *args: object) -> tuple:
    from web3 import Web3

    raw = ops.w3.eth.call(
        {"to": Web3.to_checksum_address(ops.dep.creator_shares), "data": encode_call("CreatorShares", fn, *args)}
    )
    return tuple(decode_result("CreatorShares", fn, bytes(raw)))


def period(ts: int) -> str:
    return jobs.period_of(dt.datetime.fromtimestamp(ts, dt.UTC))


async def test_keeper_midnight_run_matures_a_quiet_creators_lots(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    a, holder, trader, keeper = (anvil_account(i) for i in (3, 4, 5, 1))
    for acct in (a, holder, trader):
        ops.fund_usdc(acct, 100_000 * USDC)
    d = ops.now() // DAY + 1
    cs = ops.dep.creator_shares
    at(ops, d * DAY + 12 * 3_600)
    ops.send(a, cs, encode_call("CreatorShares", "buyShares", a.address, 1, 2**200, d * DAY + 20 * DAY))
    at(ops, d * DAY + 12 * 3_600 + 1)
    ops.send(holder, cs, encode_call("CreatorShares", "buyShares", a.address, 2, 2**200, d * DAY + 20 * DAY))
    at(ops, d * DAY + 12 * 3_600 + 2)
    ops.send(
        a,
        ops.dep.opinion_market,
        encode_call("OpinionMarket", "createMarket", "Q?", "test", d * DAY + 20 * DAY, 100 * USDC),
    )
    market = ops.market_count()
    # the keeper's day d+1 run: the day's pool vests whole, the holder's lot (earns from d+2) stays pending
    at(ops, (d + 1) * DAY + 10)
    ops.send(keeper, cs, encode_call("CreatorShares", "distributeDividends", a.address))
    assert view(ops, "pendingPool", a.address) == (0, 0)
    conn = await asyncpg.connect(db_dsn)
    try:  # the indexer's row: holders, an empty pool, two pending shares
        await conn.execute(
            "INSERT INTO idx.creators (chain_id, creator, supply, pool, pending_supply, first_block, updated_block)"
            " VALUES (31337, $1, 3, 0, 2, 1, 1)",
            bytes.fromhex(a.address[2:]),
        )
    finally:
        await conn.close()
    # the cron fires at 00:00 of d+2; the chain's latest block is the one mined just before it
    at(ops, (d + 2) * DAY - 2)
    ops.anvil.mine(1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)

    async def next_block_after_midnight() -> None:  # the chain moves on a moment after the cron fired
        await asyncio.sleep(1.0)
        at(ops, (d + 2) * DAY + 1)
        await asyncio.to_thread(ops.anvil.mine, 1)

    async with harness(settings) as h:
        moving = asyncio.create_task(next_block_after_midnight())
        run = await jobs.distribute(h.ctx, period=period((d + 2) * DAY))
        await moving
        await h.tx.wait_idle(30, 0.1)
    decisions = await fetch(db_dsn, "SELECT job_key, reason FROM keeper.decisions ORDER BY id")
    # a market fee on day d+2, and the next day's 00:00 run (its latest block already past 00:00)
    at(ops, (d + 2) * DAY + 10 * 3_600)
    ops.send(
        trader,
        ops.dep.opinion_market,
        encode_call("OpinionMarket", "buy", market, 0, 10_000 * USDC, 0, d * DAY + 20 * DAY),
    )
    fee = view(ops, "pendingPool", a.address)[1]
    assert fee > 0
    at(ops, (d + 3) * DAY + 30)
    ops.anvil.mine(1)
    async with harness(settings) as h:
        await jobs.distribute(h.ctx, period=period((d + 3) * DAY))
        await h.tx.wait_idle(30, 0.1)
    got = view(ops, "claimableDividends", a.address, holder.address)[0]
    want = 2 * (fee * 10**12 // 3) // 10**12  # the lot earned from 00:00 of d+2: 2 of 3 earning shares
    assert got == want, f"holder got {got} of day d+2's market fee {fee}, expected {want}; run {run}, {decisions}"
    assert (run["skipped"], [r["reason"] for r in decisions]) == (0, []), (
        "quiet creator's maturing lots skipped for the day"
    )
