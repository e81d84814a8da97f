"""PostgreSQL errors that mean "the database is unavailable for now", not "this query is wrong": the
connection gone, a restart or failover (admin/crash shutdown, cannot connect now, a statement
cancelled), out of resources (too many connections, disk full), a transaction rolled back by a
deadlock or a hot standby's conflict. The API answers them 503, the indexer fails one iteration."""

from __future__ import annotations

import asyncpg

PG_UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    OSError,
)
