"""A reverted transaction whose job key an operator's new entry took, brought back by a reorg
(review s13 keeper item 1): before, mark_reorged / mark_mined broke txs_job_key or
resolution_queue_active and the tracker failed every pass, for every transaction."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from keeper import store
from keeper.store import Fence, NewTx
from tests.chain import Anvil
from tests.keeper.kit import harness, make_settings

pytestmark = pytest.mark.pg
CHAIN = 31337
SENDER = b"\x11" * 20


async def _setup(pool: asyncpg.Pool) -> tuple[store.TxRow, int, int]:
    """resolve:7 sent once (queue entry q1), reverted; the operator queued the market again (q2) and a
    second transaction took the key. Returns (the reverted row, q1, the new tx id)."""
    fence = Fence(CHAIN, 1)
    async with pool.acquire() as c:
        await c.execute("INSERT INTO keeper.leaders (chain_id, epoch, holder) VALUES ($1, 1, 't')", CHAIN)
        q1 = await c.fetchval(
            "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by, status)"
            " VALUES ($1, 7, 1, 'r', 'op', 'failed') RETURNING id",
            CHAIN,
        )
        t1 = await c.fetchval(
            "INSERT INTO keeper.txs (chain_id, job, job_key, sender, to_address, data, nonce, gas_limit, status,"
            " epoch, market_id, queue_id, mined_tx_hash, mined_block, mined_block_hash)"
            " VALUES ($1, 'resolve', 'resolve:7', $2, $2, '', 5, 100000, 'reverted', 1, 7, $3, '\\xaa', 100, '\\xbb')"
            " RETURNING id",
            CHAIN,
            SENDER,
            q1,
        )
        q2 = await c.fetchval(
            "INSERT INTO keeper.resolution_queue (chain_id, market_id, outcome, reason, requested_by, status)"
            " VALUES ($1, 7, 1, 'again', 'op', 'queued') RETURNING id",
            CHAIN,
        )
        async with c.transaction():
            new = NewTx("resolve", "resolve:7", SENDER, b"", 0, 6, 100000, 2, 1, b"\x01" * 32, b"\x02", 7, None, q2)
            ids = await store.insert_txs(c, fence, SENDER, [new])
    row = store.TxRow(t1, "resolve", "resolve:7", 5, 100000, 0, "reverted", q1, 7, b"\xaa", 100, b"\xbb", False, ())
    return row, q1, ids["resolve:7"]


async def test_a_superseded_reverted_tx_brought_back_by_a_reorg_breaks_nothing(db_dsn: str) -> None:
    pool = await asyncpg.create_pool(db_dsn, min_size=1, max_size=2)
    try:
        row, q1, new_id = await _setup(pool)
        fence = Fence(CHAIN, 1)
        await store.mark_reorged(pool, fence, row)  # back to pending on the new fork
        # ... and mined there, successfully this time
        await store.mark_mined(pool, fence, [store.Mined(row, b"\xaa", 101, b"\xcc", True, 50_000, 1, True, False)])
        statuses = dict(await pool.fetch("SELECT id, status FROM keeper.txs WHERE job_key = 'resolve:7'"))
        assert statuses == {row.id: "confirmed", new_id: "pending"}
        assert await pool.fetchval("SELECT superseded_by FROM keeper.txs WHERE id = $1", row.id) == new_id
        # the old queue entry is left as it was: the newer one owns the market
        assert await pool.fetchval("SELECT status FROM keeper.resolution_queue WHERE id = $1", q1) == "failed"
    finally:
        await pool.close()


@pytest.mark.anvil
async def test_one_receipt_the_ledger_refuses_does_not_stop_the_others(
    chain: Anvil, db_dsn: str, deployment_path: Path
) -> None:
    """Receipts are recorded in one transaction; when one row conflicts with the ledger (here a
    pre-074 pair: a reverted transaction, not marked superseded, and the one that took its key),
    the others are recorded one by one and only that one is reported (tx_track_failed)."""
    async with harness(make_settings(chain.url, db_dsn, deployment_path)) as h:
        fence = h.leader.fence
        assert fence is not None
        ids = {}
        for key, nonce, status in (
            ("resolve:8", 5, "reverted"),
            ("resolve:8", 6, "pending"),
            ("resolve:9", 7, "pending"),
        ):
            ids[(key, status)] = await h.pool.fetchval(
                "INSERT INTO keeper.txs (chain_id, job, job_key, sender, to_address, data, nonce, gas_limit, status,"
                " epoch) VALUES ($1, 'resolve', $2, $3, $3, '', $4, 100000, $5, $6) RETURNING id",
                CHAIN,
                key,
                SENDER,
                nonce,
                status,
                fence.epoch,
            )

        def mined(tx_id: int, key: str, nonce: int, status: str) -> store.Mined:
            row = store.TxRow(tx_id, "resolve", key, nonce, 100000, 0, status, None, None, None, None, None, False, ())
            return store.Mined(row, b"\xaa" * 32, 10, b"\xbb" * 32, True, 21_000, 1, True, False)

        bad = mined(ids[("resolve:8", "reverted")], "resolve:8", 5, "reverted")  # would take the key back
        good = mined(ids[("resolve:9", "pending")], "resolve:9", 7, "pending")
        await h.tx._record_mined([bad, good], fence)
        statuses = dict(await h.pool.fetch("SELECT id, status FROM keeper.txs"))
        assert statuses[good.tx.id] == "confirmed"
        assert statuses[bad.tx.id] == "reverted"
        assert h.metrics.track_failures._value.get() == 1
