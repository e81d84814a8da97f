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
import os
import re
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger("migrate")

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATION_LOCK = 0x6C79_6665_6D69  # arbitrary constant shared by every process that migrates
ANALYST_PASSWORD_ENV = "GL_ANALYST_PASSWORD"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
LOCK_WAIT = "5s"  # PostgreSQL lock_timeout of each migration's statements
LOCK_TRIES = 12


class MigrationError(RuntimeError):
    pass


def migration_files(directory: Path = SQL_DIR) -> list[tuple[int, Path]]:
    files = []
    for p in sorted(directory.glob("*.sql")):
        m = _NAME.fullmatch(p.name)
        if m is None:
            raise MigrationError(f"{p.name}: migration files must be named NNN_lowercase_name.sql")
        files.append((int(m.group(1)), p))
    versions = [v for v, _ in files]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {directory}")
    return files


async def apply_migrations(
    conn: asyncpg.Connection, directory: Path = SQL_DIR, lock_wait: str = LOCK_WAIT, tries: int = LOCK_TRIES
) -> list[str]:
    """Applies pending migrations; returns the names applied."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
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
