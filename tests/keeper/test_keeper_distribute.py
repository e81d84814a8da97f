"""Daily dividend distribution on a real anvil: once per period, only where holders exist and the
pool is not empty — checked on chain, whatever the indexer's rows say."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from core.deploy import anvil_account
from keeper import jobs
from keeper.abi import decode_result, encode_call
from tests.keeper.kit import USDC, ChainOps, fetch, harness, make_settings

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


def buy_shares(ops: ChainOps, buyer: object, creator: str, amount: int) -> None:
    ops.send(
        buyer,
        ops.dep.creator_shares,
        encode_call("CreatorShares", "buyShares", creator, amount, 2**200, ops.now() + 3600),
    )


def pending_pool(ops: ChainOps, creator: str) -> int:
    from web3 import Web3

    raw = ops.w3.eth.call(
        {
            "to": Web3.to_checksum_address(ops.dep.creator_shares),
            "data": encode_call("CreatorShares", "pendingPool", creator),
        }
    )
    pool, fees = decode_result("CreatorShares", "pendingPool", bytes(raw))
    return int(pool) + int(fees)


async def insert_creators(dsn: str, creators: list[str]) -> None:
    """The indexer's view: every one of them has a non-empty pool (possibly stale)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO idx.creators (chain_id, creator, supply, pool, first_block, updated_block)"
            " VALUES (31337, $1, 1, 1000, 1, 1)",
            [(bytes.fromhex(c[2:]),) for c in creators],
        )
    finally:
        await conn.close()


async def test_distribution_once_per_period_and_only_non_empty_pools(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """Period 0: the pools only began vesting, nothing is sent; period 1 (a day later): creators with holders
    and a vested pool get one distribution each, a ghost creator none; a second run in the same period sends
    nothing; period 2: an emptied pool is skipped after the chain check."""
    a, holder, b, ghost = (anvil_account(i) for i in (3, 4, 5, 6))
    for acct in (a, holder, b):
        ops.fund_usdc(acct, 1_000 * USDC)
    buy_shares(ops, a, a.address, 1)
    buy_shares(ops, holder, a.address, 2)
    buy_shares(ops, b, b.address, 2)  # pool 3125 over supply 2 divides evenly → empty after distribution
    await insert_creators(db_dsn, [a.address.lower(), b.address.lower(), ghost.address.lower()])
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:  # the pools began vesting at the buys: nothing to credit yet
        early = await jobs.distribute(h.ctx, period="2026-11-28")
    assert (early["sent"], early["skipped"]) == (0, 3)
    ops.advance(86_400)  # a day later all of it vested
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        first = await jobs.distribute(h.ctx, period="2026-11-29")
        assert first["sent"] == 2
        await h.tx.wait_idle(30, 0.1)
        assert (await jobs.distribute(h.ctx, period="2026-11-29"))["sent"] == 0
        assert pending_pool(ops, b.address) == 0
        second = await jobs.distribute(h.ctx, period="2026-11-30")
        await h.tx.wait_idle(30, 0.1)
    rows = await fetch(db_dsn, "SELECT job_key, status FROM keeper.txs ORDER BY id")
    keys = [r["job_key"] for r in rows]
    assert keys[:2] == sorted(keys[:2])
    assert {k.rsplit(":", 1)[1] for k in keys[:2]} == {"2026-11-29"}
    assert {k.split(":")[1] for k in keys[:2]} == {a.address.lower(), b.address.lower()}
    assert all(r["status"] == "confirmed" for r in rows)
    assert not any(b.address.lower() in k and k.endswith("2026-11-30") for k in keys)
    assert not any(ghost.address.lower() in k for k in keys)
    decisions = await fetch(db_dsn, "SELECT job_key, reason FROM keeper.decisions ORDER BY id")
    reasons = {(d["job_key"].split(":")[1], d["job_key"].rsplit(":", 1)[1]): d["reason"] for d in decisions}
    assert reasons[(a.address.lower(), "2026-11-28")] == "nothing_vested"
    assert reasons[(ghost.address.lower(), "2026-11-29")] == "no_holders"
    assert reasons[(b.address.lower(), "2026-11-30")] == "empty_pool"
    assert second["sent"] + second["skipped"] == 3
