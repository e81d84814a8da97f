"""A distribution dropped after its period's `ok` run (its nonce used by another signer of the keeper key) is
sent again that period, and again if that run fails.

docs/keeper.md: a transaction whose nonce something else used is `dropped` and, for KeeperTxDropped, "the job is
re-planned automatically". A distribution's key is its period, and the period has already had its `ok` run:
before review s21 hk the catch-up found the period done and the creator was not distributed that day (lots
maturing that 00:00 do not earn the day's fees). Review s21 hf2: the re-planned run was recorded as such before
it ran, so a failed one was never retried.

Here an operator's wallet holding the keeper key (docs: "something else signed with the keeper key") sends at
the nonce of the keeper's pending distribution with a higher fee; it mines, the keeper's never does."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import keeper.daemon as daemon_mod
from core.deploy import anvil_account
from keeper.daemon import Daemon
from tests.keeper.kit import KEEPER, ChainOps, fetch, harness, make_settings
from tests.keeper.test_keeper_catch_up import pin_daemon_clock
from tests.keeper.test_keeper_distribute import buy_shares, insert_creators
from tests.keeper.test_keeper_provider_lies import distributed_events
from tests.keeper.test_keeper_tx import GWEI, manual_mining

pytestmark = [pytest.mark.pg, pytest.mark.anvil]


@contextlib.asynccontextmanager
async def dropped_after_ok(
    ops: ChainOps, db_dsn: str, deployment_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Daemon, Any, str, str]]:
    """The period's `ok` run sends creator A's distribution; another signer takes its nonce; the tracker drops it
    once that nonce is used in finalized state. Yields (daemon, harness, period, A's address)."""
    pin_daemon_clock(monkeypatch)
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
        yield d, h, period, a.address


async def catch_up_polls(d: Daemon, h: Any, polls: int) -> None:
    """What the daemon does next within the period: the check an `ok` run leaves, the catch-up, more polls."""
    for _ in range(polls):
        d._catch_up_at = 0.0
        await d._catch_up_if_due()
        await h.tx.wait_idle(30, 0.1)


async def test_a_distribution_dropped_after_its_periods_ok_run_is_sent_again_that_period(
    ops: ChainOps, db_dsn: str, deployment_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dropped_after_ok(ops, db_dsn, deployment_path, monkeypatch) as (d, h, period, creator):
        await catch_up_polls(d, h, 3)
        assert d.distribution_period() == period  # still the same day
    sent = await fetch(
        db_dsn, "SELECT status FROM keeper.txs WHERE job = 'distribute' AND job_key LIKE $1", f"%:{period}"
    )
    assert distributed_events(ops, creator) == 1, (
        f"creator not distributed for {period}: its transaction was dropped after the period's ok run and"
        f" nothing re-planned it (ledger rows for the period: {[r['status'] for r in sent]})"
    )


async def test_a_replanned_distribution_whose_run_fails_is_retried_that_period(
    ops: ChainOps, db_dsn: str, deployment_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with dropped_after_ok(ops, db_dsn, deployment_path, monkeypatch) as (d, h, period, creator):
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
        await catch_up_polls(d, h, 4)
        assert d.distribution_period() == period  # still the same day
        runs = await fetch(db_dsn, "SELECT outcome FROM keeper.job_runs WHERE job = 'distribute' ORDER BY id")
    assert calls[:1] == [period], f"setup: the dropped distribution should be re-planned once (runs {calls})"
    assert distributed_events(ops, creator) == 1, (
        f"creator not distributed for {period}: its dropped transaction was re-planned, that run failed"
        f" (node did not answer) and the failed run was never retried (distribute runs:"
        f" {[r['outcome'] for r in runs]}, re-planned calls: {len(calls)}, catch-up pending: {d._catch_up_at})"
    )
