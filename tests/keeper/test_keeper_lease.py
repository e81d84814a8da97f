"""The leader's lease (review s13 F2): a leader that goes silent — paused (SIGSTOP, a frozen VM), its
host gone, its network cut — loses the advisory lock about keeper.leader_lease_s after its last query,
because PostgreSQL ends its lock session (idle_session_timeout, TCP keepalives); a standby then takes
over with the next epoch and the silent one, once it runs again, knows it lost. A live leader keeps
its session busy with a heartbeat task and keeps the lock for as long as it runs.

Timings: the lease here is 2 s; every wait is a generous bound, never an exact figure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import keeper.leader as leader_mod
from core.config import ConfigError
from keeper.daemon import Daemon
from keeper.leader import Leader
from keeper.settings import KeeperSettings
from tests.chain import ROOT
from tests.keeper.kit import fetch, make_settings

LEASE = 2.0
CHAIN = 31337


class Events:
    """Stands in for keeper.leader's logger: records (event, fields)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def _record(self, event: str, **kw: Any) -> None:
        self.seen.append((event, kw))

    info = warning = error = critical = _record

    def named(self, event: str) -> list[dict[str, Any]]:
        return [kw for name, kw in self.seen if name == event]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Events:
    ev = Events()
    monkeypatch.setattr(leader_mod, "log", ev)
    return ev


@contextlib.asynccontextmanager
async def leaders(db_dsn: str) -> AsyncIterator[tuple[Leader, Leader]]:
    """Leaders A and B of one chain with the test's lease, both released afterwards."""
    a = Leader(db_dsn, CHAIN, holder="A", lease_s=LEASE)
    b = Leader(db_dsn, CHAIN, holder="B", lease_s=LEASE)
    try:
        yield a, b
    finally:
        await a.release()
        await b.release()


async def fence_cleared(leader: Leader) -> None:
    """Waits (at most five leases) for `leader` to notice by itself that it lost leadership."""
    async with asyncio.timeout(5 * LEASE):
        while True:
            if leader.fence is None:
                return
            await asyncio.sleep(0.05)


async def wait_for_acquire(standby: Leader, within: float) -> tuple[Any, float]:
    """Polls like a standby (every 0.25 s) until it takes the lock; fails after `within` seconds."""
    t0 = time.monotonic()
    async with asyncio.timeout(within):
        while True:
            fence = await standby.try_acquire()
            if fence is not None:
                return fence, time.monotonic() - t0
            await asyncio.sleep(0.25)


@pytest.mark.pg
async def test_a_silent_leader_loses_the_lock_to_a_standby_and_then_knows_it(db_dsn: str, events: Events) -> None:
    """A takes the lock; its heartbeat stops and nothing else queries its lock connection (the
    in-process stand-in for SIGSTOP). PostgreSQL ends A's session after the lease, so B takes the lock
    with A's epoch + 1 — before the lease, B got nothing. A's check() then reports the loss, its fence
    is cleared and `leader_lost` is logged. Before the lease, B polled for 15 s and never got it."""
    async with leaders(db_dsn) as (a, b):
        fa = await a.try_acquire()
        assert fa is not None
        assert await b.try_acquire() is None
        assert a._heartbeat is not None
        a._heartbeat.cancel()  # A goes silent
        fb, _took = await wait_for_acquire(b, within=10 * LEASE)
        assert fb.epoch == fa.epoch + 1
        assert await fetch(db_dsn, "SELECT epoch, holder FROM keeper.leaders WHERE chain_id = $1", CHAIN) == [
            (fb.epoch, "B")
        ]
        assert await a.check() is False
        assert a.fence is None
        assert not a.is_leader
        lost = events.named("leader_lost")
        assert lost
        assert lost[0]["epoch"] == fa.epoch
        assert await b.check() is True


@pytest.mark.pg
async def test_a_leader_paused_in_the_middle_of_a_query_is_ended_by_a_standby(db_dsn: str, events: Events) -> None:
    """A leader paused while a query of its lock session runs keeps that session "active", which
    idle_session_timeout never ends (the gap the lease alone left). Its lease row (sql/075) then ages;
    a standby that finds it older than twice the lease ends that session, and takes the lock."""
    import asyncpg

    async with leaders(db_dsn) as (a, b):
        fa = await a.try_acquire()
        assert fa is not None
        assert a._heartbeat is not None
        a._heartbeat.cancel()  # A stops renewing ...
        conn = a._conn
        assert conn is not None
        busy = asyncio.create_task(conn.execute("SELECT pg_sleep(600)"))  # ... in the middle of a query
        fb, _took = await wait_for_acquire(b, within=15 * LEASE)  # before: never (the session stays active)
        assert fb.epoch == fa.epoch + 1
        ended = events.named("leader_session_terminated")
        assert ended
        assert ended[0]["epoch"] == fa.epoch
        assert ended[0]["lease_age_s"] >= 2 * LEASE
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await busy  # A's session was ended under its query
        assert await b.check() is True


@pytest.mark.pg
async def test_a_leader_whose_heartbeat_runs_keeps_the_lock_for_several_leases(db_dsn: str, events: Events) -> None:
    """A takes the lock and does nothing else for four leases (its session would have been ended
    after one without the heartbeat): B never gets the lock, A's epoch stays, A's lock session is the
    same backend throughout, and no leadership was lost. The lock connection carries the lease."""
    async with leaders(db_dsn) as (a, b):
        fa = await a.try_acquire()
        assert fa is not None
        assert a._conn is not None
        pid = a._conn.get_server_pid()
        settings = await fetch(
            db_dsn,
            "SELECT name, setting FROM pg_settings WHERE name IN ('idle_session_timeout', 'tcp_keepalives_idle',"
            " 'tcp_keepalives_interval', 'tcp_keepalives_count', 'tcp_user_timeout')",
        )
        assert len(settings) == 5  # the names exist on this server (PostgreSQL >= 14)
        assert await a._conn.fetchval("SHOW idle_session_timeout") == "2s"
        assert await a._conn.fetchval("SHOW tcp_keepalives_count") == "3"
        end = time.monotonic() + 4 * LEASE
        while time.monotonic() < end:
            assert await b.try_acquire() is None
            await asyncio.sleep(LEASE / 2)
        assert a.is_leader
        assert a.fence == fa
        assert a._conn is not None
        assert a._conn.get_server_pid() == pid
        assert await a.check() is True
        assert await fetch(db_dsn, "SELECT epoch FROM keeper.leaders WHERE chain_id = $1", CHAIN) == [(fa.epoch,)]
        assert events.named("leader_lost") == []


@pytest.mark.pg
async def test_a_standby_judges_the_holder_by_the_holders_own_lease(db_dsn: str, events: Events) -> None:
    """A leader configured with a lease four times longer (heartbeat every 2 s) is not ended by a standby
    whose own lease (0.5 s) would call it stale after 1 s: the standby reads the holder's lease_s with its
    renewal (instances configured differently, as during a rollout, flapped leadership before)."""
    a = Leader(db_dsn, CHAIN, holder="A", lease_s=4 * LEASE)
    b = Leader(db_dsn, CHAIN, holder="B", lease_s=LEASE / 4)
    try:
        fa = await a.try_acquire()
        assert fa is not None
        end = time.monotonic() + 2 * LEASE
        while time.monotonic() < end:
            assert await b.try_acquire() is None
            await asyncio.sleep(LEASE / 8)
        assert events.named("leader_session_terminated") == []
        assert a.is_leader
        assert await a.check() is True
        assert await fetch(db_dsn, "SELECT lease_s FROM keeper.leader_leases WHERE chain_id = $1", CHAIN) == [
            (4 * LEASE,)
        ]
    finally:
        await a.release()
        await b.release()


@pytest.mark.pg
async def test_checks_while_the_heartbeat_pings_share_the_lock_connection(db_dsn: str) -> None:
    """check() and the heartbeat use one connection, which runs one query at a time: many checks at
    once across a few heartbeats all answer True (no 'another operation is in progress')."""
    a = Leader(db_dsn, CHAIN, holder="A", lease_s=LEASE)
    try:
        assert await a.try_acquire() is not None
        end = time.monotonic() + LEASE
        while time.monotonic() < end:
            assert all(await asyncio.gather(*(a.check() for _ in range(10))))
        assert a.is_leader
    finally:
        await a.release()


@pytest.mark.pg
async def test_a_lock_session_that_dies_ends_leadership_without_a_check(db_dsn: str, events: Events) -> None:
    """The lock session ended on the server (here pg_terminate_backend; in production a server restart,
    a failover, a cut connection): A's fence is cleared and `leader_lost` logged as soon as the
    connection closes or the next heartbeat fails — before, the fence stayed set until a check()."""
    a = Leader(db_dsn, CHAIN, holder="A", lease_s=LEASE)
    try:
        assert await a.try_acquire() is not None
        assert a._conn is not None
        await fetch(db_dsn, "SELECT pg_terminate_backend($1)", a._conn.get_server_pid())
        await fence_cleared(a)
        assert not a.is_leader
        assert len(events.named("leader_lost")) == 1
        # the same object takes the lock again on a new session, with the next epoch
        again = await a.try_acquire()
        assert again is not None
        assert again.epoch == 2
    finally:
        await a.release()


@pytest.mark.pg
async def test_a_heartbeat_that_crashes_ends_leadership(
    db_dsn: str, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the heartbeat (not a connection error) means nothing keeps the lease any more: the
    leader steps down at once instead of losing the lock silently one lease later."""
    a = Leader(db_dsn, CHAIN, holder="A", lease_s=LEASE)

    async def broken(*_args: Any) -> Any:
        raise RuntimeError("bug")

    try:
        assert await a.try_acquire() is not None
        monkeypatch.setattr(a, "_ping", broken)
        await fence_cleared(a)
        assert not a.is_leader
        assert events.named("leader_heartbeat_crashed")[0]["error"] == "RuntimeError: bug"
        assert events.named("leader_lost")[0]["reason"] == "heartbeat_crashed: RuntimeError"
    finally:
        await a.release()


@pytest.mark.pg
async def test_the_daemon_keeps_its_lease_through_a_recovery_longer_than_the_lease(
    db_dsn: str, tmp_path: Path, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lead() runs the recovery (track, catch-up, resolution jobs) inline right after taking the lock,
    with no check() in between: a recovery lasting three leases does not cost the lock."""
    settings = make_settings(
        "http://127.0.0.1:1", db_dsn, tmp_path / "d.json", leader_lease_s=LEASE, leader_poll_s=LEASE / 4
    )
    d = Daemon(settings)
    d.tx = types.SimpleNamespace(_next=None)  # type: ignore[assignment]
    ran: list[str] = []

    async def slow_job(name: str, _fn: Any, wait: bool = False) -> str:
        ran.append(name)
        if name == "track":
            await asyncio.sleep(3 * LEASE)
        return "ok"

    async def nothing() -> Any:
        return 0

    monkeypatch.setattr(d, "run_job", slow_job)
    monkeypatch.setattr(d, "catch_up", nothing)
    monkeypatch.setattr(d, "_serve_requests_logged", nothing)
    b = Leader(db_dsn, CHAIN, holder="B", lease_s=LEASE)
    lead = asyncio.create_task(d.lead())
    try:
        async with asyncio.timeout(30):
            while True:
                if d.leader.fence is not None:  # the daemon took the lock first (B only polls after)
                    break
                await asyncio.sleep(0.01)
            while True:
                if "expire" in ran:  # the last inline resolution job: the recovery is over
                    break
                assert await b.try_acquire() is None
                await asyncio.sleep(LEASE / 4)
        assert d.leader.fence is not None
        assert d.leader.fence.epoch == 1
        assert await d.leader.check() is True
        assert events.named("leader_lost") == []
    finally:
        d.stop.set()
        await lead
        await d.leader.release()
        await b.release()


CHILD = """
import asyncio, sys
import structlog
from keeper.leader import Leader
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout: the answers

async def main():
    a = Leader(sys.argv[1], 31337, holder="A", lease_s=float(sys.argv[2]))
    fence = await a.try_acquire()
    print("acquired", fence.epoch, flush=True)
    while a.is_leader:
        await asyncio.sleep(0.1)
    print("lost", await a.check(), flush=True)
    await a.release()

asyncio.run(main())
"""


@pytest.mark.pg
@pytest.mark.slow
async def test_a_leader_process_stopped_with_sigstop_is_replaced_and_steps_down_on_sigcont(db_dsn: str) -> None:
    """The real pause: a leader process is sent SIGSTOP. B takes the lock with the next epoch; after
    SIGCONT the old process finds it lost the lock (is_leader false, check() False) by itself."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        db_dsn,
        str(LEASE),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    b = Leader(db_dsn, CHAIN, holder="B", lease_s=LEASE)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode().split()
        assert line == ["acquired", "1"]
        await asyncio.sleep(LEASE / 2)  # a heartbeat or two
        assert await b.try_acquire() is None
        proc.send_signal(signal.SIGSTOP)
        fb, _took = await wait_for_acquire(b, within=10 * LEASE)
        assert fb.epoch == 2
        proc.send_signal(signal.SIGCONT)
        async with asyncio.timeout(10 * LEASE):
            assert (await proc.stdout.readline()).decode().split() == ["lost", "False"]
            assert await proc.wait() == 0
        assert await b.check() is True
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            await proc.wait()
        await b.release()


# ------------------------------------------------------------------------- configuration


def test_the_default_lease_is_30_s_and_checked_against_the_poll() -> None:
    k = KeeperSettings()
    assert (k.leader_lease_s, k.leader_poll_s) == (30.0, 5.0)
    KeeperSettings(leader_lease_s=15.0, leader_poll_s=5.0)  # exactly 3 polls per lease
    KeeperSettings(leader_lease_s=2.0, leader_poll_s=0.5)


@pytest.mark.parametrize("value", [0.0, -1.0, 1.9, 3_601.0])
def test_a_lease_out_of_bounds_is_refused_naming_the_key(value: float) -> None:
    with pytest.raises(ConfigError, match=r"^keeper\.leader_lease_s must be within 2\.\.3600"):
        KeeperSettings(leader_lease_s=value, leader_poll_s=0.1)


@pytest.mark.parametrize(("lease", "poll"), [(10.0, 5.0), (30.0, 11.0), (2.0, 1.0)])
def test_a_lease_the_leader_cannot_check_well_within_is_refused_naming_both_keys(lease: float, poll: float) -> None:
    """The leader checks its lock every leader_poll_s: a lease under 3 polls is refused at load."""
    with pytest.raises(ConfigError) as err:
        KeeperSettings(leader_lease_s=lease, leader_poll_s=poll)
    msg = str(err.value)
    assert msg.startswith("keeper.leader_lease_s")
    assert "keeper.leader_poll_s" in msg


def test_the_daemon_gives_its_leader_the_configured_lease(tmp_path: Path) -> None:
    settings = make_settings(
        "http://127.0.0.1:1", "postgresql://x@127.0.0.1:1/x", tmp_path / "d.json", leader_lease_s=45.0
    )
    assert Daemon(settings).leader.lease_s == 45.0


def test_the_lock_session_settings_follow_the_lease() -> None:
    s = leader_mod.lease_server_settings(30.0)
    assert s["idle_session_timeout"] == s["tcp_user_timeout"] == "30000"
    idle, interval, count = (
        int(s[k]) for k in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
    )
    assert idle + interval * count <= 30  # a vanished peer is dropped within the lease
    assert leader_mod.lease_server_settings(2.0)["tcp_keepalives_idle"] == "1"  # never 0 (the kernel default)
