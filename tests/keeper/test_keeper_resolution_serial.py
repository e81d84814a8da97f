"""Review s20 hk: the resolve and expire jobs run concurrently in the daemon (three IntervalTriggers of one
keeper.resolve_interval_s, started together, each its own APScheduler job and job lock), and each one's
"the other's transaction is pending: wait a pass" guard reads the ledger before the other has recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from keeper.daemon import Daemon
from tests.keeper.kit import ChainOps, fetch, harness, make_settings
from tests.keeper.test_keeper_steps import PROPOSED, expired_with_queued_yes

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


async def test_resolve_and_expire_fired_together_send_one_resolution_not_both(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """Past end + resolution window with the operator's queued outcome (YES): the scheduler fires resolve and
    expire at the same instant. Exactly one of proposeOutcome / resolveExpired must be recorded for the
    market — test_a_pending_proposal_holds_the_expiry_back shows the intended behaviour when they run one
    after the other. Run together, both are recorded at consecutive nonces; the chain then settles the market
    by nonce order (here INVALID or a reverted expiry), i.e. by which job reached the nonce lock first."""
    m = await expired_with_queued_yes(ops, db_dsn)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        d = Daemon(settings)  # the daemon's own run_job (job locks, job_runs), wired to the harness
        d.leader, d.pool, d.rpc, d.tx, d.ctx = h.leader, h.pool, h.rpc, h.tx, h.ctx
        table = d.job_table()
        ops.anvil.call("evm_setAutomine", False)
        try:
            # as APScheduler fires the two IntervalTriggers of one resolve_interval_s (or a job request for one
            # while the other's tick runs)
            outcomes = await asyncio.gather(
                d.run_job("resolve", table["resolve"]), d.run_job("expire", table["expire"])
            )
        finally:
            ops.anvil.call("evm_setAutomine", True)
            ops.anvil.mine(1)
        await h.tx.wait_idle(30, 0.1)
    assert outcomes == ["ok", "ok"]
    txs = await fetch(db_dsn, "SELECT job_key, status FROM keeper.txs ORDER BY nonce")
    keys = [t["job_key"] for t in txs]
    assert keys == [f"resolve:{m}"], (
        f"both steps were sent for market {m}: {[(t['job_key'], t['status']) for t in txs]}"
    )
    assert ops.status(m)[:2] == (PROPOSED, 1)
