"""PostgreSQL faults for tests: what a failover that leaves the database read-only looks like to a client."""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import AsyncIterator

import asyncpg


@contextlib.asynccontextmanager
async def read_only_database(db_dsn: str) -> AsyncIterator[None]:
    """The test's database refuses writes (default_transaction_read_only) and every other session is
    ended, as a failover ends them; writable again on exit (sessions opened meanwhile stay read-only)."""
    db = urllib.parse.urlsplit(db_dsn).path.lstrip("/")
    admin = await asyncpg.connect(db_dsn)
    try:
        await admin.execute(f"ALTER DATABASE {db} SET default_transaction_read_only = on")
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            db,
        )
        yield
    finally:
        await admin.execute(f"ALTER DATABASE {db} RESET default_transaction_read_only")
        await admin.close()
