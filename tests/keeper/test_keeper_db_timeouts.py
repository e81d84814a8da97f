"""Every keeper wait on PostgreSQL is bounded: a row lock held in another session (an operator's open
psql transaction) skips or fails one step instead of freezing the keeper, a job run that never ends
is cancelled, and a stuck run shows in /ready and keeper_jobs_stuck."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from keeper import jobs, store
from keeper.daemon import Daemon, systemic_fault
from tests.keeper.kit import ChainOps, fetch, harness, make_settings
from tests.keeper.test_keeper_tx import due_markets


@pytest.mark.pg
@pytest.mark.anvil
async def test_a_queue_entry_locked_in_another_session_is_skipped_not_waited_for(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """An open transaction holding one queue row (`BEGIN; UPDATE keeper.resolution_queue …`) delays only
    that entry: the run sends the other market at once, and the held one once the lock is gone."""
    held, free = await due_markets(ops, db_dsn, 2)
    other = await asyncpg.connect(db_dsn)
    try:
        tr = other.transaction()
        await tr.start()
        await other.execute("UPDATE keeper.resolution_queue SET reason = reason WHERE market_id = $1", held)
        async with harness(make_settings(ops.anvil.url, db_dsn, deployment_path)) as h:
            async with asyncio.timeout(30):
                assert (await jobs.resolve(h.ctx))["sent"] == 1
            rows = await fetch(db_dsn, "SELECT market_id, status FROM keeper.resolution_queue ORDER BY market_id")
            assert {r["market_id"]: r["status"] for r in rows} == {held: "queued", free: "sent"}
            await tr.rollback()
            async with asyncio.timeout(30):
                assert (await jobs.resolve(h.ctx))["sent"] == 1
                await h.tx.wait_idle(30, 0.1)
    finally:
        await other.close()
    assert ops.status(held)[0] == ops.status(free)[0] == 1


@pytest.mark.pg
@pytest.mark.anvil
async def test_a_ledger_row_locked_elsewhere_fails_the_step_within_the_lock_timeout(
    ops: ChainOps, db_dsn: str, deployment_path: Path
) -> None:
    """The fencing row held FOR UPDATE in another session: recording fails with lock_timeout after
    keeper.db_lock_timeout_s (the nonce lock is released, nothing is sent); once free, the next run sends."""
    (m,) = await due_markets(ops, db_dsn, 1)
    settings = make_settings(ops.anvil.url, db_dsn, deployment_path, db_lock_timeout_s=0.5)
    other = await asyncpg.connect(db_dsn)
    try:
        async with harness(settings) as h:
            tr = other.transaction()
            await tr.start()
            await other.execute("SELECT 1 FROM keeper.leaders WHERE chain_id = 31337 FOR UPDATE")
            async with asyncio.timeout(30):
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await jobs.resolve(h.ctx)
            assert not h.tx._lock.locked()
            assert await fetch(db_dsn, "SELECT 1 FROM keeper.txs") == []
            await tr.rollback()
            async with asyncio.timeout(30):
                assert (await jobs.resolve(h.ctx))["sent"] == 1
                await h.tx.wait_idle(30, 0.1)
    finally:
        await other.close()
    assert ops.status(m)[0] == 1


def _daemon(tmp_path: Path, **keeper: object) -> Daemon:
    settings = make_settings("http://127.0.0.1:1", "postgresql://x@127.0.0.1:1/x", tmp_path / "d.json", **keeper)
    return Daemon(settings, dry_run=True)


async def test_a_job_run_that_never_ends_is_cancelled_and_counted(tmp_path: Path) -> None:
    """A run past keeper.job_timeout_s is cancelled and fails as a systemic `job_timeout` (the halt budget
    applies; the supervisor restarts a keeper that keeps hanging)."""
    d = _daemon(tmp_path, job_timeout_s=0.2)

    async def hangs() -> dict[str, int]:
        await asyncio.Event().wait()
        return {}

    async with asyncio.timeout(10):
        assert await d.run_job("resolve", hangs) == "failed"
    assert "keeper.job_timeout_s" in d.last_detail["resolve"]["error"]
    assert d.last_detail["resolve"]["fault"] == "job_timeout"
    assert d.metrics.systemic_faults.labels(fault="job_timeout")._value.get() == 1
    # an inner timeout keeps its class: a pool acquire's is the database's; any other is an ordinary failure
    # (review h6: a hung API's TimeoutError was read as the database's and halted the keeper)
    assert systemic_fault(store.PoolTimeout("no connection")) == "database_unreachable"
    assert systemic_fault(TimeoutError()) is None


async def test_a_stuck_run_fails_readiness_while_it_lasts(tmp_path: Path) -> None:
    """A tracker pass running longer than ten intervals (at least 60 s) is reported stuck (keeper_jobs_stuck,
    /ready's jobs_not_stuck check) until it ends."""
    d = _daemon(tmp_path, track_interval_s=2.0, job_timeout_s=900)
    release = asyncio.Event()

    async def slow() -> dict[str, int]:
        await release.wait()
        return {}

    task = asyncio.create_task(d.run_job("track", slow))
    await asyncio.sleep(0.05)
    now = asyncio.get_running_loop().time()
    assert d.stuck_jobs(now + 30) == []
    assert d.stuck_jobs(now + 61) == ["track"]
    assert d.metrics.jobs_stuck._value.get() == 1
    release.set()
    async with asyncio.timeout(10):
        assert await task == "ok"
    assert d.stuck_jobs(now + 10_000) == []
