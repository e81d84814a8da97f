"""One keeper leader per chain: a session-level PostgreSQL advisory lock held on a dedicated
connection, a lease on that connection, and a fencing epoch bumped in keeper.leaders each time a
process takes the lock.

The lease: the lock connection asks PostgreSQL to end its session after `lease_s` without a query
(`idle_session_timeout`) and to drop a peer that stopped answering at the TCP level (keepalives,
`tcp_user_timeout`). The session's end releases the lock, so a leader that is paused (SIGSTOP, a
frozen VM), whose host died or whose network is cut loses the lock about `lease_s` after its last
query, and a standby takes it within `leader_poll_s` more. The live leader keeps its session busy
with a heartbeat task pinging the lock connection every `lease_s / 4`, whatever else the process
is doing (the inline recovery after acquiring, a long job). A ping that fails or does not answer
within the lease, a lock connection that closes, or a lease that ran out while the process was not
running ends this process's leadership at once: `leader_lost` is logged and the fence is cleared.

The epoch: a leader can still be wrong for a moment (it resumed from a pause and has not run yet).
Every ledger write checks the epoch in the same transaction (store.check_fence), so a stale
leader's writes fail and nothing it signs afterwards is ever recorded, hence never broadcast.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import asyncpg
import structlog

from keeper.store import DbTimeouts, Fence

log = structlog.get_logger("keeper.leader")
LOCK_BASE = 0x6B65_6570_0000_0000  # "keep" << 32; the chain id goes in the low bits
DEFAULT_LEASE_S = 30.0
KEEPALIVE_COUNT = 3
CONN_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


# The heartbeat's write (sql/075): the lease of this epoch renewed now, by this session.
RENEW_SQL = """
INSERT INTO keeper.leader_leases (chain_id, epoch, backend_pid, renewed_at, lease_s)
VALUES ($1, $2, pg_backend_pid(), now(), $3)
ON CONFLICT (chain_id) DO UPDATE SET epoch = EXCLUDED.epoch, backend_pid = EXCLUDED.backend_pid, renewed_at = now(),
       lease_s = EXCLUDED.lease_s
 WHERE keeper.leader_leases.epoch <= EXCLUDED.epoch  -- a stale leader never renews over a newer one
"""
# A holder whose lease is older than twice its own lease_s and whose session still holds the lock ($2).
STALE_HOLDER_SQL = """
SELECT l.backend_pid, l.epoch, extract(epoch FROM now() - l.renewed_at) AS age_s
  FROM keeper.leader_leases l
 WHERE l.chain_id = $1 AND l.renewed_at < now() - make_interval(secs => 2 * l.lease_s)
   AND EXISTS (SELECT 1 FROM pg_locks k
                WHERE k.pid = l.backend_pid AND k.locktype = 'advisory' AND k.granted
                  AND k.classid::bigint = ($2::bigint >> 32) AND k.objid::bigint = ($2::bigint & 4294967295))
"""


def lock_key(chain_id: int) -> int:
    return LOCK_BASE | (chain_id & 0xFFFF_FFFF)


def lease_server_settings(lease_s: float) -> dict[str, str]:
    """The lock connection's session settings that make PostgreSQL end a silent leader's session
    (and so free the lock) about `lease_s` after its last query: idle_session_timeout for a session
    left idle (a paused process keeps its socket open), keepalives (idle + count × interval ≈ the
    lease) and tcp_user_timeout for a peer that vanished (dead host, partition)."""
    ms = str(max(1, round(lease_s * 1000)))
    probe = str(max(1, int(lease_s / (KEEPALIVE_COUNT + 1))))
    return {
        "idle_session_timeout": ms,
        "tcp_keepalives_idle": probe,
        "tcp_keepalives_interval": probe,
        "tcp_keepalives_count": str(KEEPALIVE_COUNT),
        "tcp_user_timeout": ms,
    }


class Leader:
    def __init__(
        self,
        dsn: str,
        chain_id: int,
        holder: str | None = None,
        timeouts: DbTimeouts | None = None,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        if not lease_s > 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s!r}")
        self._dsn = dsn
        self._timeouts = timeouts or DbTimeouts()
        self.chain_id = chain_id
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.lease_s = lease_s
        self._conn: asyncpg.Connection | None = None
        self._io = asyncio.Lock()  # an asyncpg connection runs one query at a time: heartbeat vs check()
        self._heartbeat: asyncio.Task[None] | None = None
        self._renewed = 0.0  # time.monotonic() at which the last answered query on the lock connection was sent
        self.fence: Fence | None = None

    @property
    def is_leader(self) -> bool:
        return (
            self.fence is not None
            and self._conn is not None
            and not self._conn.is_closed()
            and time.monotonic() < self._renewed + self.lease_s
        )

    async def try_acquire(self) -> Fence | None:
        """Takes the lock if free and bumps the epoch; None when another process leads."""
        if self.is_leader:
            return self.fence
        if self.fence is not None:  # the lease ran out or the connection closed, and nobody noticed yet
            self._lose(
                "lease_expired" if self._conn is not None and not self._conn.is_closed() else "connection_closed"
            )
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._dsn,
                timeout=30,
                command_timeout=self._timeouts.command_timeout,
                server_settings={**self._timeouts.server_settings, **lease_server_settings(self.lease_s)},
            )
            self._conn.add_termination_listener(self._on_terminated)
        conn = self._conn
        async with self._io:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(self.chain_id))
            if not got:
                await self._end_stale_holder(conn)
                return None
            sent = time.monotonic()
            try:
                epoch = await conn.fetchval(
                    """
                    INSERT INTO keeper.leaders (chain_id, epoch, holder) VALUES ($1, 1, $2)
                    ON CONFLICT (chain_id) DO UPDATE
                       SET epoch = keeper.leaders.epoch + 1, holder = EXCLUDED.holder, acquired_at = now()
                    RETURNING epoch
                    """,
                    self.chain_id,
                    self.holder,
                )
                await conn.execute(RENEW_SQL, self.chain_id, epoch, self.lease_s)
            except BaseException:  # the lock without an epoch would block every standby: end the session
                self._conn = None
                conn.terminate()
                raise
        self._renewed = sent
        self.fence = Fence(self.chain_id, int(epoch))
        self._heartbeat = asyncio.create_task(self._beat(conn), name=f"keeper-leader-heartbeat-{self.chain_id}")
        self._heartbeat.add_done_callback(lambda task: self._beat_done(task, conn))
        log.info("leader_acquired", chain_id=self.chain_id, epoch=int(epoch), holder=self.holder, lease_s=self.lease_s)
        return self.fence

    async def check(self) -> bool:
        """Still leader? Pings the lock connection and compares the stored epoch."""
        if self.fence is None or self._conn is None:
            return False
        if not self.is_leader:
            self._lose("connection_closed" if self._conn.is_closed() else "lease_expired")
            return False
        conn, fence = self._conn, self.fence
        try:
            epoch = await self._ping(conn, "SELECT epoch FROM keeper.leaders WHERE chain_id = $1", self.chain_id)
        except CONN_ERRORS as exc:
            if conn is self._conn:
                self._lose(f"check_failed: {type(exc).__name__}")
            return False
        if epoch != fence.epoch:
            if conn is self._conn:
                self._lose("epoch_moved", stored_epoch=epoch)
            return False
        return self.is_leader

    async def release(self) -> None:
        self._stop_heartbeat()
        self.fence = None
        if self._heartbeat is not None:
            task, self._heartbeat = self._heartbeat, None
            if task is not asyncio.current_task():
                await asyncio.wait([task])  # its outcome is read by _beat_done; a cancel of release() still propagates
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close(timeout=5)
            except CONN_ERRORS:
                conn.terminate()

    # -------------------------------------------------------------- the lease

    async def _ping(self, conn: asyncpg.Connection, query: str, *args: Any) -> Any:
        """One query on the lock connection, waiting at most until the lease runs out (for the
        connection lock too); an answer renews the lease from the moment the query was sent."""
        async with asyncio.timeout(max(0.0, self._renewed + self.lease_s - time.monotonic())):
            async with self._io:
                sent = time.monotonic()
                value = await conn.fetchval(query, *args)
        if conn is self._conn:
            self._renewed = max(self._renewed, sent)
        return value

    async def _beat(self, conn: asyncpg.Connection) -> None:
        """Keeps the lock connection's session busy every lease / 4 while this process leads."""
        every = self.lease_s / 4
        while True:
            await asyncio.sleep(every)
            if conn is not self._conn or self.fence is None:
                return  # released, lost, or replaced: not this task's connection any more
            if not self.is_leader:
                self._lose("connection_closed" if conn.is_closed() else "lease_expired")
                return
            fence = self.fence
            try:
                await self._ping(conn, RENEW_SQL, self.chain_id, fence.epoch, self.lease_s)
            except CONN_ERRORS as exc:
                if conn is self._conn and self.fence is not None:
                    self._lose(f"heartbeat_failed: {type(exc).__name__}")
                return

    async def _end_stale_holder(self, conn: asyncpg.Connection) -> None:
        """The lock is held elsewhere. If its holder's lease was last renewed more than twice that holder's
        lease ago (by the database's clock) and that session still holds the lock, end the session: a
        leader paused in the middle of a query keeps its session "active", which idle_session_timeout
        never ends. Its writes are fenced by the epoch the next leader bumps."""
        row = await conn.fetchrow(STALE_HOLDER_SQL, self.chain_id, lock_key(self.chain_id))
        if row is None:
            return
        ended = await conn.fetchval("SELECT pg_terminate_backend($1)", row["backend_pid"])
        log.warning(
            "leader_session_terminated",
            chain_id=self.chain_id,
            epoch=row["epoch"],
            backend_pid=row["backend_pid"],
            lease_age_s=round(float(row["age_s"]), 1),
            ended=bool(ended),
        )

    def _beat_done(self, task: asyncio.Task[None], conn: asyncpg.Connection) -> None:
        """A heartbeat that crashed (a bug, not a connection error) no longer keeps the lease: step down."""
        if task.cancelled() or (exc := task.exception()) is None:
            return
        log.error("leader_heartbeat_crashed", chain_id=self.chain_id, error=f"{type(exc).__name__}: {exc}")
        if conn is self._conn:
            self._lose(f"heartbeat_crashed: {type(exc).__name__}")

    def _on_terminated(self, conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> None:
        """asyncpg calls this when a connection closes (the server ended the session, the socket died,
        or we closed it): the lock went with it."""
        if conn is self._conn and self.fence is not None:
            self._lose("connection_closed")

    def _lose(self, reason: str, **extra: Any) -> None:
        """Leadership is gone: clear the fence, stop the heartbeat, drop the lock connection (ending the
        session releases the lock if the server still holds it)."""
        if self.fence is not None:
            log.error("leader_lost", chain_id=self.chain_id, epoch=self.fence.epoch, reason=reason, **extra)
        self.fence = None
        self._stop_heartbeat()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            if not conn.is_closed():
                conn.terminate()

    def _stop_heartbeat(self) -> None:
        task = self._heartbeat
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
