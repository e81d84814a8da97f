"""Review hf2 (attack on b980301): a re-planned distribution whose run fails is never retried.

keeper/daemon.py catch_up re-runs the period once for a distribution dropped after the period's `ok` run, and
records the dropped row in `_replanned` before the run. If that run fails (DistributionDeferred: the node did not
answer for the creator; docs/keeper.md: "the leader retries a failed one within the day"), _distribution_ran
schedules a retry, but the retry's catch_up finds the period's earlier `ok` run (done) and the dropped row
already in `_replanned` (no replan): it clears the pending catch-up. The creator gets no distribution that day,
the very harm b980301 fixed, now behind one node hiccup.
"""

from __future__ import annotations

import datetime as dt
import types
from pathlib import Path

import pytest

import keeper.daemon as daemon_mod
from core.deploy import anvil_account
from keeper.daemon import Daemon
from tests.keeper.kit import KEEPER, ChainOps, fetch, harness, make_settings
from tests.keeper.test_keeper_distribute import buy_shares, insert_creators
from tests.keeper.test_keeper_provider_lies import distributed_events
from tests.keeper.test_keeper_tx import GWEI, manual_mining

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


def pin_clock(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    """The daemon's wall clock stopped at 06:00 UTC of today (a 00:00 inside the test would change the period)."""
    pinned = dt.datetime.now(dt.UTC).replace(hour=6, minute=0, second=0, microsecond=0)

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return pinned.astimezone(tz) if tz is not None else pinned.replace(tzinfo=None)

    monkeypatch.setattr(daemon_mod, "dt", types.SimpleNamespace(datetime=Clock, timedelta=dt.timedelta, UTC=dt.UTC))
    return pinned


async def test_a_replanned_distribution_whose_run_fails_is_retried_that_period(
    ops: ChainOps, db_dsn: str, deployment_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_clock(monkeypatch)
    a, holder = anvil_account(3), anvil_account(4)
    for acct in (a, holder):
        ops.fund_usdc(acct, 1_000 * 10**6)
    buy_shares(ops, a, a.address, 1)
    buy_shares(ops, holder, a.address, 2)
    await insert_creators(db_dsn, [a.address.lower()])
    ops.advance(12 * 3600)  # half the pool vested: a distribution is due
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    d = Daemon(settings)
    async with harness(settings) as h:
        d.pool, d.ctx, d.tx, d.rpc, d.leader = h.pool, h.ctx, h.tx, h.rpc, h.leader  # type: ignore[assignment]
        period = d.distribution_period()
        nonce = ops.keeper_nonce()
        with manual_mining(ops.anvil):
            assert await d.run_job("distribute", d.job_table()["distribute"]) == "ok"  # the 00:00 firing
            (t,) = await fetch(db_dsn, "SELECT status, nonce FROM keeper.txs")
            assert (t["status"], t["nonce"]) == ("pending", nonce)
            # the operator's wallet, with the keeper key, at that nonce (replaces it in the pool)
            signed = KEEPER.sign_transaction(
                {
                    "type": 2,
                    "chainId": 31337,
                    "to": KEEPER.address,
                    "value": 0,
                    "nonce": nonce,
                    "gas": 21_000,
                    "maxFeePerGas": 100 * GWEI,
                    "maxPriorityFeePerGas": 50 * GWEI,
                }
            )
            ops.w3.eth.send_raw_transaction(signed.raw_transaction)
            ops.anvil.mine(1)
            assert ops.keeper_nonce() == nonce + 1
            for _ in range(20):  # until the keeper's row is dropped (its nonce used in finalized state)
                ops.anvil.mine(10)
                await h.tx.track()
                (t,) = await fetch(db_dsn, "SELECT status FROM keeper.txs")
                if t["status"] == "dropped":
                    break
            assert t["status"] == "dropped", "setup: the distribution should be dropped"
        # the re-planned run fails (the node did not answer for the creator: DistributionDeferred) ...
        real = d.distribute
        calls = []

        async def node_down_once(p: str) -> dict[str, int]:
            calls.append(p)
            if len(calls) == 1:
                raise daemon_mod.DistributionDeferred(p, {"deferred": 1})
            return await real(p)

        d.distribute = node_down_once  # type: ignore[method-assign]
        # ... and the daemon retries within the period, as it does any failed distribute run (each retry due)
        for _ in range(4):
            d._catch_up_at = 0.0
            await d._catch_up_if_due()
            await h.tx.wait_idle(30, 0.1)
        assert d.distribution_period() == period  # still the same day
        runs = await fetch(db_dsn, "SELECT outcome FROM keeper.job_runs WHERE job = 'distribute' ORDER BY id")
    assert calls[:1] == [period], f"setup: the dropped distribution should be re-planned once (runs {calls})"
    assert distributed_events(ops, a.address) == 1, (
        f"creator not distributed for {period}: its dropped transaction was re-planned, that run failed"
        f" (node did not answer) and the failed run was never retried: catch_up found the period's first `ok`"
        f" run and the dropped row already in _replanned (distribute runs: {[r['outcome'] for r in runs]},"
        f" re-planned calls: {len(calls)}, catch-up pending: {d._catch_up_at})"
    )
