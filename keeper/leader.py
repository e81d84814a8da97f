"""One keeper leader per chain: a session-level PostgreSQL advisory lock held on a dedicated
connection, plus a fencing epoch bumped in keeper.leaders each time a process takes the lock.

The lock alone is not enough: a leader whose connection silently died (network partition, pause)
may still believe it leads while a standby has taken over. The epoch closes that window: every
ledger write checks it in the same transaction (store.check_fence), so a stale leader's writes
fail and nothing it signs afterwards is ever recorded, hence never broadcast.
"""

from __future__ import annotations

import asyncio
import os
import socket

import asyncpg
import structlog

from keeper.store import DbTimeouts, Fence

log = structlog.get_logger("keeper.leader")
LOCK_BASE = 0x6B65_6570_0000_0000  # "keep" << 32; the chain id goes in the low bits


def lock_key(chain_id: int) -> int:
    return LOCK_BASE | (chain_id & 0xFFFF_FFFF)


class Leader:
    def __init__(self, dsn: str, chain_id: int, holder: str | None = None, timeouts: DbTimeouts | None = None) -> None:
        self._dsn = dsn
        self._timeouts = timeouts or DbTimeouts()
        self.chain_id = chain_id
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self._conn: asyncpg.Connection | None = None
        self.fence: Fence | None = None

    @property
    def is_leader(self) -> bool:
        return self.fence is not None and self._conn is not None and not self._conn.is_closed()

    async def try_acquire(self) -> Fence | None:
        """Takes the lock if free and bumps the epoch; None when another process leads."""
        if self.is_leader:
            return self.fence
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._dsn,
                timeout=30,
                command_timeout=self._timeouts.command_timeout,
                server_settings=self._timeouts.server_settings,
            )
        got = await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key(self.chain_id))
        if not got:
            return None
        epoch = await self._conn.fetchval(
            """
            INSERT INTO keeper.leaders (chain_id, epoch, holder) VALUES ($1, 1, $2)
            ON CONFLICT (chain_id) DO UPDATE
               SET epoch = keeper.leaders.epoch + 1, holder = EXCLUDED.holder, acquired_at = now()
            RETURNING epoch
            """,
            self.chain_id,
            self.holder,
        )
        self.fence = Fence(self.chain_id, int(epoch))
        log.info("leader_acquired", chain_id=self.chain_id, epoch=int(epoch), holder=self.holder)
        return self.fence

    async def check(self) -> bool:
        """Still leader? Pings the lock connection and compares the stored epoch."""
        if self.fence is None or self._conn is None:
            return False
        try:
            async with asyncio.timeout(5):
                epoch = await self._conn.fetchval("SELECT epoch FROM keeper.leaders WHERE chain_id = $1", self.chain_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            epoch = None
        if epoch != self.fence.epoch:
            log.error("leader_lost", chain_id=self.chain_id, epoch=self.fence.epoch, stored_epoch=epoch)
            await self.release()
            return False
        return True

    async def release(self) -> None:
        self.fence = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close(timeout=5)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()
