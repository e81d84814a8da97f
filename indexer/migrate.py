"""Numbered SQL migrations (sql/NNN_name.sql) applied in order, each once, under an advisory
lock so concurrent starters (indexer, tests, a second instance) never race.

A migration that alters a table waits for every reader of it, and every reader arriving later
queues behind it (the API's and analysts' queries): each file takes its locks within LOCK_WAIT or
rolls back and tries again, LOCK_TRIES times, so a long query on a live database delays the
migration instead of the readers.

Errors: MigrationError — a file failed; its transaction rolled back and later files did not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import asyncpg
import structlog

from core.schema import SQL_DIR, MigrationError, migration_files

log = structlog.get_logger("migrate")

__all__ = ["SQL_DIR", "MigrationError", "apply_migrations", "migration_files"]

MIGRATION_LOCK = 0x6C79_6665_6D69  # arbitrary constant shared by every process that migrates
ANALYST_PASSWORD_ENV = "GL_ANALYST_PASSWORD"
LOCK_WAIT = "5s"  # PostgreSQL lock_timeout of each migration's statements
LOCK_TRIES = 12
LOCK_HOLD_MAX_S = 600.0  # how long another session may hold the migration lock before we give up

HOLDER_SQL = """
SELECT pid FROM pg_locks
 WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2 AND objsubid = 1
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


class LockWaitStopped(Exception):
    """`stop` was set while the migration lock was waited for: nothing was applied."""


async def _take_lock(conn: asyncpg.Connection, hold_max_s: float, stop: asyncio.Event | None = None) -> None:
    """The migration lock, waited for visibly: a migrator killed mid-file leaves its server process
    running the statement, holding the lock, and a second migrate used to wait for it in silence
    (review h4). Logs the holder every 5 s; gives up after `hold_max_s`, or at once when `stop` is set
    (SIGTERM: review s20 hi, the wait outlived the stop's grace and the indexer exited 4, "stalled")."""
    started = time.monotonic()
    said = -5.0
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK):
        waited = time.monotonic() - started
        holder = await conn.fetchval(HOLDER_SQL, MIGRATION_LOCK >> 32, MIGRATION_LOCK & 0xFFFFFFFF)
        if waited >= hold_max_s:
            raise MigrationError(
                f"another session (pid {holder}) has held the migration lock for {waited:.0f} s: another"
                " migrate still running, or one killed whose statement still runs (pg_stat_activity); run"
                " again once it has ended"
            )
        if waited - said >= 5:
            log.warning("migration_waiting_for_lock", holder_pid=holder, waited_s=round(waited))
            said = waited
        if stop is None:
            await asyncio.sleep(0.5)
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await stop.wait()
        if stop.is_set():
            raise LockWaitStopped("stopped while waiting for the migration lock: nothing applied")


async def apply_migrations(
    conn: asyncpg.Connection,
    directory: Path = SQL_DIR,
    lock_wait: str = LOCK_WAIT,
    tries: int = LOCK_TRIES,
    hold_max_s: float = LOCK_HOLD_MAX_S,
    stop: asyncio.Event | None = None,
) -> list[str]:
    """Applies pending migrations; returns the names applied. LockWaitStopped: `stop` was set while the
    lock was waited for."""
    applied: list[str] = []
    await _take_lock(conn, hold_max_s, stop)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, path in migration_files(directory):
            if version in done:
                continue
            sql = path.read_text()
            await _apply(conn, version, path.name, sql, lock_wait, tries)
            applied.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    password = os.environ.get(ANALYST_PASSWORD_ENV)
    if password:
        await set_analyst_password(conn, password)
    return applied


async def _apply(conn: asyncpg.Connection, version: int, name: str, sql: str, lock_wait: str, tries: int) -> None:
    for attempt in range(1, tries + 1):
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{lock_wait}'")
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            return
        except asyncpg.LockNotAvailableError as exc:
            if attempt == tries:
                raise MigrationError(
                    f"{name}: its tables stayed in use ({tries} tries of {lock_wait}: a long query or an open"
                    " transaction on them, see pg_stat_activity); nothing was applied: run it again"
                ) from exc
            log.warning("migration_waiting_for_readers", migration=name, attempt=attempt, error=str(exc)[:200])
            await asyncio.sleep(1.0)
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"{name} failed: {exc}") from exc


async def set_analyst_password(conn: asyncpg.Connection, password: str) -> None:
    """The analyst role's password (sql/070), from the environment of whoever migrates."""
    literal = await conn.fetchval("SELECT quote_literal($1)", password)
    await conn.execute(f"ALTER ROLE analyst PASSWORD {literal}")


def apply_migrations_sync(dsn: str) -> list[str]:
    async def run() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            return await apply_migrations(conn)
        finally:
            await conn.close()

    return asyncio.run(run())
