"""Review h6 (medium): one database error during a new leader's catch-up lost the day's distribution.

Daemon.lead ran track → catch_up → the resolution jobs inline on taking the lock; catch_up's own query is
not inside run_job, so a database error there (PostgreSQL restarting) went to lead's `except` and was never
tried again by that leader: the distribution whose 00:00 passed while no leader ran waited for the next day,
and the resolution jobs for their next tick. Now a pending catch-up is cleared only by one that found the
period done; its error is logged (catch_up_failed), counted (keeper_catch_up_failures_total) and it is tried
again at the next leader poll. A failed distribute run is retried within its period the same way, with
back-off (DISTRIBUTE_RETRY_S doubling up to DISTRIBUTE_RETRY_MAX_S).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import types
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import keeper.daemon as daemon_mod
from keeper import store
from keeper.daemon import DISTRIBUTE_RETRY_S, Daemon
from tests.keeper.kit import make_settings

pytestmark = [pytest.mark.pg]


def pin_daemon_clock(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    """Stops the daemon's wall clock at 06:00 UTC of the wall clock's day. A run takes its period from the clock
    when it runs, and these tests look at the period due later (the assertion, the check an `ok` run leaves): a
    00:00 between the two made them differ (started at 23:59:59.758 UTC, the catch-up ran 2026-12-07 and the
    assertion expected 2026-12-08; a 00:00 between the `ok` run and its check ran the next day's distribution)."""
    pinned = dt.datetime.now(dt.UTC).replace(hour=6, minute=0, second=0, microsecond=0)

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return pinned.astimezone(tz) if tz is not None else pinned.replace(tzinfo=None)

    monkeypatch.setattr(daemon_mod, "dt", types.SimpleNamespace(datetime=Clock, timedelta=dt.timedelta, UTC=dt.UTC))
    return pinned


async def test_a_failed_catch_up_query_is_tried_again_at_the_next_poll(
    db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database answers CannotConnectNowError to exactly the catch-up's statement after the recovery pass:
    the resolution jobs run on taking the lock (before the catch-up, which may wait for a block of its day),
    and the missed distribution runs at a later poll."""
    pin_daemon_clock(monkeypatch)
    settings = make_settings("http://127.0.0.1:1", db_dsn, tmp_path / "d.json", leader_poll_s=0.2, leader_lease_s=2)
    d = Daemon(settings)
    distributed = asyncio.Event()
    periods: list[str] = []
    resolved: list[str] = []
    armed = {"fail_next": False}

    async def fake_distribute(_ctx: Any, period: str) -> dict[str, int]:
        periods.append(period)
        resolved.append("distribute")
        distributed.set()
        return {}

    def job(name: str) -> Any:
        async def run(_ctx: Any) -> dict[str, int]:
            resolved.append(name)
            return {}

        return run

    async def track() -> dict[str, Any]:
        return {}

    real_connection = store.connection

    def flaky_connection(pool: asyncpg.Pool) -> Any:
        if armed["fail_next"]:
            armed["fail_next"] = False

            @contextlib.asynccontextmanager
            async def failing() -> Any:
                raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
                yield  # pragma: no cover

            return failing()
        return real_connection(pool)

    monkeypatch.setattr(daemon_mod.store, "connection", flaky_connection)
    monkeypatch.setattr(daemon_mod.jobs, "distribute", fake_distribute)
    for name in ("resolve", "finalize", "expire"):
        monkeypatch.setattr(daemon_mod.jobs, name, job(name))
    d.track = track  # type: ignore[method-assign]
    real_catch_up = d.catch_up
    calls = {"catch_up": 0}

    async def catch_up() -> None:
        calls["catch_up"] += 1
        if calls["catch_up"] == 1:  # PostgreSQL restarts right before the recovery pass's catch-up
            armed["fail_next"] = True
        await real_catch_up()

    d.catch_up = catch_up  # type: ignore[method-assign]
    d.tx = types.SimpleNamespace(_next=None)  # type: ignore[assignment]
    d.ctx = None  # type: ignore[assignment]
    assert d.last_distribution_due() is not None  # today's 00:00 firing passed with no leader running
    async with store.create_pool(db_dsn, settings.db_timeouts) as pool:
        d.pool = pool
        lead = asyncio.create_task(d.lead())
        try:
            await asyncio.wait_for(distributed.wait(), timeout=30)
        finally:
            d.stop.set()
            await lead
            if d._requests is not None:
                await asyncio.wait([d._requests], timeout=5)
            was_leader = d.leader.is_leader
            await d.catch_up()  # the check an `ok` run leaves pending: it finds the period done
            await d.leader.release()
    assert was_leader
    assert periods == [daemon_mod.jobs.period_of(d.last_distribution_due())]  # type: ignore[arg-type]
    assert resolved[:3] == ["resolve", "finalize", "expire"]  # not held back by the catch-up
    assert d.metrics.catch_up_failures._value.get() == 1
    assert d._catch_up_at is None  # done: nothing pending any more


async def test_a_failed_distribution_is_retried_within_its_period(
    db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A distribute run that fails (the node down at 00:00, creators deferred) schedules a catch-up with
    back-off; the catch-up runs the period again and clears once it is done."""
    pin_daemon_clock(monkeypatch)
    settings = make_settings("http://127.0.0.1:1", db_dsn, tmp_path / "d.json")
    d = Daemon(settings)
    answers = [{"deferred": 1}, {"deferred": 1}, {"sent": 1}]

    async def distribute(_ctx: Any, _period: str) -> dict[str, int]:
        return answers.pop(0)

    monkeypatch.setattr(daemon_mod.jobs, "distribute", distribute)
    d.ctx = None  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    async with store.create_pool(db_dsn, settings.db_timeouts) as pool:
        d.pool = pool
        assert (await d.leader.try_acquire()) is not None
        try:
            assert await d.run_job("distribute", d.job_table()["distribute"]) == "failed"  # the scheduled run
            first = d._catch_up_at
            assert first is not None
            assert first - loop.time() <= DISTRIBUTE_RETRY_S
            await d._catch_up_if_due()  # not due yet: nothing runs
            assert answers == [{"deferred": 1}, {"sent": 1}]
            d._catch_up_at = loop.time()  # the back-off has passed
            await d._catch_up_if_due()
            second = d._catch_up_at
            assert second is not None
            assert second - loop.time() > DISTRIBUTE_RETRY_S
            d._catch_up_at = loop.time()
            await d._catch_up_if_due()  # the `ok` run: a check against the period due then is left pending
            assert not answers
            await d._catch_up_if_due()  # that check: the period has its `ok` run
            assert d._catch_up_at is None
            await d.catch_up()  # the period has its ok run: nothing more to do (a run would find `answers` empty)
            assert d._catch_up_at is None
        finally:
            await d.leader.release()
    assert d.metrics.distribution_retries._value.get() == 2


async def test_a_retry_running_across_the_next_firing_does_not_swallow_that_period(
    db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review h8 (medium): a retry of day D still running when the schedule fired for D+1 made that firing
    `skipped` (the job lock); the retry's `ok` then cleared the pending catch-up and D+1 was never
    distributed, with no alert. Now an `ok` run leaves a catch-up check against the period due then."""
    settings = make_settings("http://127.0.0.1:1", db_dsn, tmp_path / "d.json")
    d = Daemon(settings)
    now = dt.datetime.now(dt.UTC)
    day_d = now - dt.timedelta(days=1)  # yesterday's firing: the period being retried
    due = [day_d]
    monkeypatch.setattr(d, "last_distribution_due", lambda now=None: due[0])
    periods: list[str] = []
    in_retry = asyncio.Event()
    midnight_passed = asyncio.Event()

    async def distribute(_ctx: Any, period: str) -> dict[str, int]:
        periods.append(period)
        if len(periods) == 1:
            return {"deferred": 1}  # the scheduled run of day D: a creator the node did not answer for
        if len(periods) == 2:  # the retry of day D, still running when the schedule fires for D+1
            in_retry.set()
            await midnight_passed.wait()
            return {"sent": 1}
        return {"sent": 1}

    monkeypatch.setattr(daemon_mod.jobs, "distribute", distribute)
    d.ctx = None  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    async with store.create_pool(db_dsn, settings.db_timeouts) as pool:
        d.pool = pool
        assert (await d.leader.try_acquire()) is not None
        try:
            assert await d.run_job("distribute", d.job_table()["distribute"]) == "failed"
            d._catch_up_at = loop.time()  # the back-off passed late in day D
            retry = asyncio.create_task(d._catch_up_if_due())
            await asyncio.wait_for(in_retry.wait(), 10)
            due[0] = dt.datetime.now(dt.UTC)  # 00:00 of day D+1: distribute_cron fires
            scheduled = await d.run_job("distribute", d.job_table()["distribute"])
            midnight_passed.set()
            await retry
            # the leader's next polls, as lead() makes them (a pending catch-up made due at once)
            for _ in range(3):
                if d._catch_up_at is not None:
                    d._catch_up_at = loop.time()
                await d._catch_up_if_due()
        finally:
            await d.leader.release()
    period_d, period_d1 = daemon_mod.jobs.period_of(day_d), daemon_mod.jobs.period_of(due[0])
    assert scheduled == "skipped"  # the schedule's run of D+1 met the retry's lock
    assert periods[:2] == [period_d, period_d]
    assert period_d1 in periods, f"day {period_d1} was never distributed: runs {periods}, _catch_up_at None"
