"""Review h6 (low-medium): a node lagging behind the keeper's own finalized transactions broke every tracker pass.

TxManager.track computed nonce gaps from the node's transaction count, holding only the live rows' nonces
(store.load_live leaves finalized rows out): with a stale count below a finalized ledger nonce, that nonce was
a "gap", the filler was signed at it and its insert hit the unique index txs_nonce (UniqueViolationError) on
every pass. The gap range now starts at the ledger's mined-nonce floor (store.mined_nonce_floor) when the node
reports less: below it every nonce is used on chain.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper import jobs
from tests.keeper.kit import ChainOps, fetch, harness, make_settings
from tests.keeper.rpcproxy import RpcProxy
from tests.keeper.test_keeper_tx import due_markets, manual_mining

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


async def test_a_node_lagging_below_finalized_ledger_rows_makes_no_gap(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy
) -> None:
    await due_markets(ops, db_dsn, 1)
    settings = make_settings(proxy.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        before = ops.keeper_nonce()
        assert (await jobs.resolve(h.ctx))["sent"] == 1  # nonce `before`, mined at once (automine)
        await h.tx.wait_idle(30, 0.1)
        ops.anvil.mine(200)  # well past finality
        await h.tx.track()
        (first,) = await fetch(db_dsn, "SELECT nonce, status, finalized FROM keeper.txs")
        assert (first["nonce"], first["finalized"]) == (before, True)
        await due_markets(ops, db_dsn, 1)
        with manual_mining(ops.anvil):
            assert (await jobs.resolve(h.ctx))["sent"] == 1  # nonce before + 1, in the mempool
            proxy.stale_count = before  # the node answering now lags one transaction behind the keeper
            errors = []
            for _ in range(3):
                try:
                    await h.tx.track()
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:160])
            proxy.stale_count = None
    fills = await fetch(db_dsn, "SELECT nonce FROM keeper.txs WHERE job = 'fill'")
    assert not errors
    assert not fills  # nothing signed at a nonce the chain already used
    assert h.metrics.nonce_gap._value.get() == 0
