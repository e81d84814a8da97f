"""The keeper under a supervisor (scripts/run.py's, the one `make run` uses): killed between record
and send, it is restarted and finishes its work exactly once; and the runbook's one-off job while the
daemon runs is handed to the daemon, which runs it under its lock."""

from __future__ import annotations

import asyncio
import configparser
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from keeper import store
from keeper.daemon import Daemon
from scripts.run import Child, Supervisor
from tests.chain import ROOT
from tests.keeper.kit import (
    ChainOps,
    fetch,
    insert_markets,
    keeper_cmd,
    keeper_process,
    make_settings,
    queue,
    run_keeper,
    write_config,
)

pytestmark = [pytest.mark.pg, pytest.mark.anvil, pytest.mark.slow]


def test_supervisor_restarts_a_killed_keeper_which_finishes_exactly_once(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path
) -> None:
    """SIGKILL right after the keeper recorded its transactions (before broadcasting them): the
    supervisor notices, restarts it after the back-off, and the new process sends what the ledger holds
    — every market resolved once, one attempt each, one restart shown on the status line."""
    end = ops.now() + 30
    ids = ops.create_markets(3, end)
    asyncio.run(insert_markets(db_dsn, ids, end))
    for m in ids:
        asyncio.run(queue(db_dsn, m, 1))
    ops.advance(60)
    cfg = write_config(tmp_path / "keeper.toml", ops.anvil.url, db_dsn, deployment_path)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KEEPER_CRASH_AT": "after_record",
        "KEEPER_CRASH_ONCE": str(tmp_path / "crashed"),
    }
    sup = Supervisor([Child("keeper", keeper_cmd(cfg, "run"))], env, log_dir=tmp_path, base_backoff_s=0.5)
    sup.start_all()
    events: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            events += sup.poll()
            done = asyncio.run(fetch(db_dsn, "SELECT count(*) AS n FROM keeper.txs WHERE status = 'confirmed'"))
            if done[0]["n"] == len(ids) and sup.children[0].restarts >= 1:
                break
            assert time.monotonic() < deadline, (events, (tmp_path / "keeper.log").read_text()[-3000:])
            time.sleep(0.3)
        status = sup.status()
    finally:
        sup.stop_all()
    assert (tmp_path / "crashed").exists()
    assert any("exited with code -9" in e for e in events), events
    assert sup.children[0].restarts == 1
    assert "1 restarts" in status
    for m in ids:
        assert len(ops.proposed_events(m)) == 1
    attempts = asyncio.run(fetch(db_dsn, "SELECT tx_id, count(*) AS n FROM keeper.tx_attempts GROUP BY tx_id"))
    assert sorted(a["n"] for a in attempts) == [1] * len(ids)


def test_a_second_ctrl_c_while_stopping_kills_the_children_at_once(tmp_path: Path) -> None:
    """stop_all gives each child time to finish after SIGTERM; a second Ctrl-C meanwhile
    (KeyboardInterrupt) kills the rest at once instead of ending in a traceback with children and
    services left running."""
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    sup = Supervisor(
        [Child(f"stubborn{i}", [sys.executable, "-c", stubborn]) for i in range(2)], dict(os.environ), log_dir=tmp_path
    )
    sup.start_all()
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"stubborn{i}.log").read_text().strip() == "up" for i in range(2)):
        assert time.monotonic() < deadline, "the children did not start"
        time.sleep(0.05)

    def second_ctrl_c(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, second_ctrl_c)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        sup.stop_all(timeout_s=30.0)  # returns (no KeyboardInterrupt) well before 30 s
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert all(c.proc is not None and c.proc.poll() == -signal.SIGKILL for c in sup.children)


def test_supervisor_backs_off_a_child_that_keeps_failing(tmp_path: Path) -> None:
    """A child exiting at once is restarted after 1, 2, 4 … s (capped), never in a tight loop."""
    sup = Supervisor(
        [Child("flaky", [sys.executable, "-c", "raise SystemExit(1)"])],
        dict(os.environ),
        log_dir=tmp_path,
        base_backoff_s=1.0,
        max_backoff_s=4.0,
    )
    c = sup.children[0]
    sup.start_all()
    assert c.proc is not None
    c.proc.wait(10)
    now = c.started_at + 0.1
    delays = []
    for _ in range(4):
        assert c.proc is not None
        c.proc.wait(10)
        events = sup.poll(now)
        assert "exited with code 1" in events[0]
        delays.append(c.backoff_s)
        assert sup.poll(now + c.backoff_s - 0.01) == []  # not before the back-off
        assert "restarted" in sup.poll(now + c.backoff_s)[0]
        now = c.started_at + 0.1
    sup.stop_all()
    assert delays == [1.0, 2.0, 4.0, 4.0]


async def test_run_once_while_the_daemon_leads_is_run_by_the_daemon(
    ops: ChainOps, db_dsn: str, deployment_path: Path, tmp_path: Path
) -> None:
    """`keeper run --once --jobs distribute` (the runbook) while a daemon holds the lock: the CLI asks
    the leader, the leader runs it under its lock and epoch, the CLI reports the outcome, exit 0."""
    cfg = write_config(tmp_path / "keeper.toml", ops.anvil.url, db_dsn, deployment_path)
    with keeper_process(cfg, "run") as daemon:
        deadline = time.monotonic() + 60
        while not await fetch(db_dsn, "SELECT 1 FROM keeper.leaders"):
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
            assert time.monotonic() < deadline
            await asyncio.sleep(0.3)
        out = await asyncio.to_thread(run_keeper, cfg, "run", "--once", "--jobs", "distribute", "--by", "ops-runbook")
        # not waited for (--wait 0): exit 4, not 0, so `run --once … || alert` sees it (review h4)
        pending = await asyncio.to_thread(run_keeper, cfg, "run", "--once", "--jobs", "aggregate", "--wait", "0")
    assert pending.returncode == 4, pending.stdout[-2000:] + pending.stderr[-2000:]
    assert "request(s) not finished yet" in pending.stdout
    assert out.returncode == 0, out.stderr[-2000:]
    assert "another keeper is the leader" in out.stdout
    assert "the leader ran distribute (request #1): ok" in out.stdout
    (req,) = await fetch(db_dsn, "SELECT job, requested_by, outcome, epoch FROM keeper.job_requests WHERE id = 1")
    assert (req["job"], req["requested_by"], req["outcome"], req["epoch"]) == ("distribute", "ops-runbook", "ok", 1)
    (leader,) = await fetch(db_dsn, "SELECT epoch FROM keeper.leaders")
    assert leader["epoch"] == 1  # the one-off never took the lock from the daemon


@pytest.mark.parametrize(("unit", "module"), [("indexer", "indexer"), ("keeper", "keeper run"), ("api", "api")])
def test_systemd_units_restart_the_daemons_on_failure(unit: str, module: str) -> None:
    """ops/systemd ships a unit per daemon: Restart=on-failure with a delay, a start limit, SIGTERM."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "ops" / "systemd" / f"guesslyfe-{unit}.service")
    service = parser["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"]
    assert service["KillSignal"] == "SIGTERM"
    assert f"-m {module} --config " in service["ExecStart"]
    assert int(parser["Unit"]["StartLimitBurst"]) > 1


async def test_a_request_claimed_by_a_leader_that_stopped_is_run_by_the_next_leader(
    db_dsn: str, tmp_path: Path
) -> None:
    """A one-off request the leader claimed (started_at, its epoch) and never finished — it stopped
    mid-way — is claimed again by the next leader's epoch and run, counted and logged as reclaimed;
    it stayed open for good before, while the CLI said the leader would run it."""
    settings = make_settings("http://127.0.0.1:1", db_dsn, tmp_path / "d.json")
    (req,) = await fetch(
        db_dsn,
        "INSERT INTO keeper.job_requests (chain_id, job, requested_by) VALUES (31337, 'aggregate', 'ops') RETURNING id",
    )
    first = Daemon(settings)
    async with store.create_pool(db_dsn, settings.db_timeouts) as pool:
        first.pool = pool
        assert (await first.leader.try_acquire()) is not None
        busy = first._job_locks.setdefault("aggregate", asyncio.Lock())
        await busy.acquire()  # its own aggregate run is in progress: the request waits behind it
        serving = asyncio.create_task(first.serve_requests())
        for _ in range(600):  # claimed within 30 s
            if await fetch(db_dsn, "SELECT 1 FROM keeper.job_requests WHERE started_at IS NOT NULL"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the first leader never claimed the request")
        serving.cancel()  # the leader stops here (SIGTERM mid-way, a crash)
        with pytest.raises(asyncio.CancelledError):
            await serving
        await first.leader.release()
    second = Daemon(settings)
    async with store.create_pool(db_dsn, settings.db_timeouts) as pool:
        second.pool = pool
        fence = await second.leader.try_acquire()
        assert fence is not None
        assert fence.epoch == 2
        try:
            assert await second.serve_requests() == 1
        finally:
            await second.leader.release()
    (row,) = await fetch(db_dsn, "SELECT outcome, epoch, finished_at FROM keeper.job_requests WHERE id = $1", req["id"])
    assert (row["outcome"], row["epoch"]) == ("ok", 2)
    assert second.metrics.registry.get_sample_value("keeper_job_requests_reclaimed_total") == 1
