"""Review hk (fault injection): a distribution dropped after its period's `ok` run is never re-planned in
that period.

docs/keeper.md: a transaction whose nonce something else used is `dropped` ("job key released") and, for
KeeperTxDropped, "the job is re-planned automatically". For resolve/finalize/expire the next interval's run
does so. A distribution's key is its period, and the period has already had its `ok` run (the one that
recorded the dropped transaction): the catch-up finds the period done (keeper.job_runs), the schedule fires
once a day, and the next firing is the next period's key. The creator is not distributed that day at all —
the harm review r5 fixed for a skipped creator (lots maturing that 00:00 do not earn the day's fees).

Here an operator's wallet holding the keeper key (docs: "something else signed with the keeper key") sends at
the nonce of the keeper's pending distribution with a higher fee; it mines, the keeper's never does."""

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


async def test_a_distribution_dropped_after_its_periods_ok_run_is_sent_again_that_period(
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
        # what the daemon does next within the period: the check an `ok` run leaves, the catch-up, more polls
        for _ in range(3):
            d._catch_up_at = 0.0
            await d._catch_up_if_due()
            await h.tx.wait_idle(30, 0.1)
        assert d.distribution_period() == period  # still the same day
    sent = await fetch(
        db_dsn, "SELECT status FROM keeper.txs WHERE job = 'distribute' AND job_key LIKE $1", f"%:{period}"
    )
    assert distributed_events(ops, a.address) == 1, (
        f"creator not distributed for {period}: its transaction was dropped after the period's ok run and"
        f" nothing re-planned it (ledger rows for the period: {[r['status'] for r in sent]})"
    )
