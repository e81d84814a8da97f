"""PostgreSQL errors that mean "the database is unavailable for now", not "this query is wrong": the
connection gone, a restart or failover (admin/crash shutdown, cannot connect now, a statement
cancelled, a write refused by a server that is read-only for now: a hot standby, or a demoted
primary), out of resources (too many connections, disk full), a transaction rolled back by a
deadlock or a hot standby's conflict. The API answers them 503, the indexer fails one iteration."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

PG_UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    # a backend ended mid-protocol can surface as "cannot switch to state N; another operation is in
    # progress" (MagicStack/asyncpg#1069): the connection is gone, as for the others
    asyncpg.InternalClientError,
    OSError,
)

# What connecting raises when PostgreSQL cannot be reached at all (refused, no route, a timeout: OSError).
DB_UNREACHABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
)


# What connecting raises when the DSN itself is wrong (a database, user or password that does not exist,
# a malformed DSN): a configuration error (exit 2), not a database that is down (review h4: a traceback).
DB_CONFIG: tuple[type[Exception], ...] = (
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,  # an unknown role, a wrong password
    asyncpg.ClientConfigurationError,  # a malformed DSN
)


def db_config_error(exc: BaseException, key: str = "database.dsn") -> str:
    """The one line for a DSN PostgreSQL refuses (DB_CONFIG), naming the key."""
    return f"{key}: {type(exc).__name__}: {exc}; fix the DSN (database, user, password) and start again"


def db_unreachable(exc: BaseException) -> str:
    """The one line a process prints when it cannot reach PostgreSQL at start (keeper, indexer)."""
    return f"cannot reach the database ({type(exc).__name__}); check [database].dsn and that PostgreSQL runs"


async def reset_or_drop(conn: asyncpg.Connection) -> None:
    """A pool's reset (asyncpg.create_pool(reset=…)): what asyncpg's own runs when a connection is
    released, except that a connection that cannot be reset — the server ended it mid-protocol,
    "cannot switch to state N; another operation is in progress" (MagicStack/asyncpg#1069) — is
    terminated instead of raising. asyncpg 0.30 re-raises from the release and never returns that slot
    to the pool: the API's outbox pump (a pool of one) then waited for a connection for ever, and a
    keeper could hang in Pool.close() (review r5 and h2 repros). Terminated, the slot reconnects on
    its next acquire."""
    try:
        await conn.execute(conn.get_reset_query())
    except Exception:
        conn.terminate()


# What a pooled connection raises when the server ended it (a restart, a failover, pg_terminate_backend).
CONNECTION_GONE: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionError,
)


@contextlib.asynccontextmanager
async def pooled(pool: asyncpg.Pool, acquire_s: float) -> AsyncIterator[Any]:
    """`pool.acquire(timeout=…)`, but a connection the server ended while in use is terminated before it
    goes back: asyncpg 0.30's release otherwise waited for ever on a protocol left mid-operation ("cannot
    switch to state N"), and that slot was gone for good (the API's outbox pump, a pool of one, stopped)."""
    async with pool.acquire(timeout=acquire_s) as conn:
        try:
            yield conn
        except CONNECTION_GONE:
            with contextlib.suppress(asyncpg.InterfaceError):  # released already: the original error goes on
                conn.terminate()
            raise
