"""Review of 070aabe (resolution jobs serialised by Daemon._resolution_lock): a job fired while another
resolution job runs now waits for the lock inside run_job, after run_job's guards (halted, leadership)
and outside the set of running jobs (Daemon._running) the shutdown waits for."""

from __future__ import annotations

import asyncio
from pathlib import Path

from keeper.daemon import Daemon
from keeper.rpc import RpcError
from tests.keeper.kit import make_settings


def _daemon(tmp_path: Path) -> Daemon:
    return Daemon(
        make_settings(
            "http://127.0.0.1:1", "postgresql://x@127.0.0.1:1/x", tmp_path / "d.json", max_consecutive_failures=1
        ),
        dry_run=True,
    )


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_resolution_job_waiting_for_the_lock_does_not_run_after_the_keeper_halted(tmp_path: Path) -> None:
    """resolve ends in a systemic fault that halts the keeper (stop set: exit 1, the supervisor restarts);
    expire, fired while resolve ran, was waiting for the resolution lock and then runs anyway. run_job's
    `if self.halted: return "skipped"` was checked before the wait, never after it."""
    d = _daemon(tmp_path)
    in_resolve, fail = asyncio.Event(), asyncio.Event()

    async def resolve() -> dict[str, int]:
        in_resolve.set()
        await fail.wait()
        raise RpcError("eth_blockNumber", -1, "node unreachable: ClientConnectorError", transient=True)

    halted_when_expire_ran: list[str | None] = []

    async def expire() -> dict[str, int]:
        halted_when_expire_ran.append(d.halted)
        return {}

    t1 = asyncio.create_task(d.run_job("resolve", resolve))
    await in_resolve.wait()
    t2 = asyncio.create_task(d.run_job("expire", expire))
    await _settle()
    fail.set()
    outcomes = await asyncio.gather(t1, t2)
    assert d.halted is not None
    assert d.stop.is_set()
    assert [h for h in halted_when_expire_ran if h is not None] == [], (
        f"expire ran after the keeper halted ({halted_when_expire_ran}); outcomes {outcomes}"
    )


async def test_the_shutdown_waits_for_a_resolution_job_fired_before_the_stop(tmp_path: Path) -> None:
    """_daemon's shutdown waits for self._running ("running jobs finish their step before the lock is
    released"). expire, fired while resolve ran and waiting for the resolution lock, is not in it: the
    shutdown goes on (leader released, pool and RPC session closed) once resolve is done, and expire's step
    starts after that (or is cancelled by asyncio.run's teardown)."""
    d = _daemon(tmp_path)
    in_resolve, finish_resolve = asyncio.Event(), asyncio.Event()
    expire_state: list[str] = []

    async def resolve() -> dict[str, int]:
        in_resolve.set()
        await finish_resolve.wait()
        return {}

    async def expire() -> dict[str, int]:
        expire_state.append("started")
        await _settle()  # a step with a few awaits (RPC, database)
        expire_state.append("ended")
        return {}

    t1 = asyncio.create_task(d.run_job("resolve", resolve))
    await in_resolve.wait()
    t2 = asyncio.create_task(d.run_job("expire", expire))
    await _settle()
    d.stop.set()  # SIGTERM: _daemon's tail below
    finish_resolve.set()
    running = [t for t in d._running if not t.done()]
    await asyncio.wait(running, timeout=30)
    # here _daemon returns: leader.release(), the pool and the RPC session close
    done_at_shutdown = t2.done()
    state_at_shutdown = list(expire_state)
    await asyncio.gather(t1, t2)
    assert done_at_shutdown, (
        f"the shutdown stopped waiting with expire not finished (its step so far: {state_at_shutdown}, later"
        f" {expire_state}); it waited for {len(running)} task(s), expire among them: {t2 in running}"
    )
