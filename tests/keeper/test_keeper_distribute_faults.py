"""Review h6 (high, medium): a rate-limited provider or one malformed creator row cost a whole day's distribution.

- A rate limit per batch element (-32005) was never asked again (node_errors="final"), and jobs.distribute
  `continue`d past a creator whose reads failed with only a log line: no failed count, no decision row, no
  keeper_item_failures_total, an `ok` run — the period was done for the day. A rate-limited eth_estimateGas
  was recorded as `skipped simulation_reverted`, like a real revert.
- One 32-byte creator in idx.creators raised EncodingTypeError out of the job: no creator was distributed.

Now node trouble is asked again by the client (keeper/rpc.py), then is a transient item failure: counted,
recorded, `deferred` in the run's counts; the daemon fails such a run (DistributionDeferred), so the period
is retried (test_keeper_catch_up.py). A malformed row fails alone (stage encode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import keeper.daemon as daemon_mod
from core.deploy import anvil_account
from keeper import jobs, store
from keeper.daemon import Daemon
from tests.keeper.kit import USDC, ChainOps, fetch, harness, make_settings
from tests.keeper.rpcproxy import RpcProxy
from tests.keeper.test_keeper_distribute import buy_shares, insert_creators

pytestmark = [pytest.mark.pg, pytest.mark.anvil]

PERIOD = "2026-11-29"


async def _arrange(ops: ChainOps, db_dsn: str) -> str:
    a, holder = anvil_account(3), anvil_account(4)
    for acct in (a, holder):
        ops.fund_usdc(acct, 1_000 * USDC)
    buy_shares(ops, a, a.address, 1)
    buy_shares(ops, holder, a.address, 2)
    await insert_creators(db_dsn, [a.address.lower()])
    ops.advance(86_400)  # a day later the pool vested: a distribution is due
    return str(a.address.lower())


def _failures(h: object) -> float:
    total = 0.0
    for metric in h.metrics.item_failures.collect():  # type: ignore[attr-defined]
        for s in metric.samples:
            if s.name.endswith("_total"):
                total += s.value
    return total


def _failed_decisions(rows: list) -> list[tuple[str, str]]:
    return [(r["job_key"], r["reason"]) for r in rows if r["action"] == "failed"]


async def test_rate_limited_reads_are_asked_again_then_fail_the_creator_and_defer_the_period(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy
) -> None:
    """Every read rate-limited: asked `retries` (3) times, then the creator is a failed item (metric, decision
    row) counted `deferred`; the daemon's wrapper fails the run; the next run, answered, sends it."""
    creator = await _arrange(ops, db_dsn)
    settings = make_settings(proxy.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        proxy.faults["eth_call"] = "error"  # the provider rate-limits the reads of this run (per element)
        counts = await jobs.distribute(h.ctx, period=PERIOD)
        asked = proxy.counts.get("eth_call", 0)
        proxy.faults.clear()
        failures = _failures(h)
        again = await jobs.distribute(h.ctx, period=PERIOD)
        await h.tx.wait_idle(30, 0.1)
    decisions = await fetch(db_dsn, "SELECT job_key, action, reason FROM keeper.decisions")
    txs = await fetch(db_dsn, "SELECT job_key FROM keeper.txs")
    assert asked == 3 * 3  # three reads of the one creator, each asked three times
    assert (counts["sent"], counts["failed"], counts["deferred"]) == (0, 1, 1)
    assert failures == 1
    ((key, reason),) = _failed_decisions(decisions)
    assert creator in key
    assert reason.startswith("check: node did not answer")
    assert again["sent"] == 1
    assert [t["job_key"] for t in txs] == [key]


async def test_a_rate_limited_estimate_is_a_deferred_failure_not_a_revert(
    ops: ChainOps, db_dsn: str, deployment_path: Path, proxy: RpcProxy
) -> None:
    """eth_estimateGas rate-limited (no contract refusal): a failed item at stage simulate, `deferred`, no
    `simulation_reverted` skip; DistributionDeferred from the daemon's wrapper; the next run sends it."""
    creator = await _arrange(ops, db_dsn)
    settings = make_settings(proxy.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        proxy.faults["eth_estimateGas"] = "error"  # a rate limit, not a contract refusal
        counts = await jobs.distribute(h.ctx, period=PERIOD)
        proxy.faults.clear()
        failures = h.metrics.item_failures.labels(job="distribute", stage="simulate")._value.get()
        reverted = h.metrics.skipped_total.labels(job="distribute", reason="simulation_reverted")._value.get()
        again = await jobs.distribute(h.ctx, period=PERIOD)
        await h.tx.wait_idle(30, 0.1)
    decisions = await fetch(db_dsn, "SELECT job_key, action, reason FROM keeper.decisions")
    assert (counts["sent"], counts["skipped"], counts["failed"], counts["deferred"]) == (0, 0, 1, 1)
    assert (failures, reverted) == (1, 0)
    ((key, reason),) = _failed_decisions(decisions)
    assert creator in key
    assert reason.startswith("simulate: node did not answer")
    assert again["sent"] == 1


async def test_the_daemon_fails_a_run_that_deferred_a_creator(
    db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Daemon.distribute turns `deferred` into DistributionDeferred: the run is `failed` (not systemic), its
    counts in the run's detail, and the last-success gauge (KeeperDistributionLate) is not moved."""
    settings = make_settings("http://127.0.0.1:1", db_dsn, tmp_path / "d.json")
    d = Daemon(settings)

    async def deferred(_ctx: Any, _period: str) -> dict[str, int]:
        return {"candidates": 2, "sent": 1, "skipped": 0, "failed": 1, "deferred": 1}

    monkeypatch.setattr(daemon_mod.jobs, "distribute", deferred)
    d.ctx = None  # type: ignore[assignment]
    async with store.create_pool(db_dsn, settings.db_timeouts) as pool:
        d.pool = pool
        assert (await d.leader.try_acquire()) is not None
        try:
            outcome = await d.run_job("distribute", lambda: d.distribute(PERIOD))
        finally:
            await d.leader.release()
    (run,) = await fetch(db_dsn, "SELECT outcome, detail FROM keeper.job_runs WHERE job = 'distribute'")
    assert outcome == "failed"
    assert run["outcome"] == "failed"
    assert "DistributionDeferred" in d.last_detail["distribute"]["error"]
    assert d.last_detail["distribute"]["deferred"] == 1
    assert "fault" not in d.last_detail["distribute"]
    assert d.metrics.registry.get_sample_value("keeper_job_last_success_timestamp", {"job": "distribute"}) is None
    assert d._catch_up_at is not None  # the period is tried again (test_keeper_catch_up.py)


async def test_one_malformed_creator_row_fails_alone(ops: ChainOps, db_dsn: str, deployment_path: Path) -> None:
    """A 32-byte creator in idx.creators (an indexer bug, a hand-written row) is a failed item at stage encode;
    the valid creator is distributed."""
    creator = await _arrange(ops, db_dsn)
    await fetch(
        db_dsn,
        "INSERT INTO idx.creators (chain_id, creator, supply, pool, first_block, updated_block)"
        " VALUES (31337, $1, 1, 1000, 1, 1) RETURNING creator",
        b"\x00" * 12 + b"\xab" * 20,  # a topic-padded address (32 bytes)
    )
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path)
    async with harness(settings) as h:
        counts = await jobs.distribute(h.ctx, period=PERIOD)
        await h.tx.wait_idle(30, 0.1)
        encode_failures = h.metrics.item_failures.labels(job="distribute", stage="encode")._value.get()
    txs = await fetch(db_dsn, "SELECT job_key FROM keeper.txs")
    assert (counts["sent"], counts["failed"], counts["deferred"]) == (1, 1, 0)
    assert encode_failures == 1
    assert [t["job_key"] for t in txs] == [f"distribute:{creator}:{PERIOD}"]
