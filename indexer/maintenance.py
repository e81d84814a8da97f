"""Upkeep SQL of the writer (asyncpg): outbox retention, re-index from scratch, and the readers'
secondary indexes dropped for an initial sync and rebuilt after it.
"""

from __future__ import annotations

import asyncpg

from indexer import outbox_gap
from indexer.checkpoint import WRITER_LOCK_BASE
from indexer.rows import DERIVED, EV_TABLES
from indexer.write import keep_payloads, write_outbox

PRUNE_ROWS = 10_000


async def prune_outbox(conn: asyncpg.Connection, chain_id: int, older_than_hours: float) -> int:
    """Deletes up to PRUNE_ROWS of the chain's oldest outbox rows created more than `older_than_hours`
    ago (index outbox_chain_created: the scan stops at the first younger row); returns how many."""
    status = await conn.execute(
        "WITH doomed AS (SELECT seq FROM idx.outbox WHERE chain_id = $1"
        " AND created_at < now() - make_interval(secs => $2) ORDER BY created_at LIMIT $3)"
        " DELETE FROM idx.outbox o USING doomed d WHERE o.seq = d.seq",
        chain_id,
        older_than_hours * 3600.0,
        PRUNE_ROWS,
    )
    return int(status.split()[-1])


class WriterRunning(Exception):
    """A reset refused: the chain's writer lock is held elsewhere (an indexer is running)."""


async def reset_chain(conn: asyncpg.Connection, chain_id: int) -> None:
    """Deletes everything the indexer wrote for a chain (re-index from scratch). The outbox is kept, and
    gets a chain:gap over the whole chain (clients refetch what they hold).
    Under the chain's writer lock (the writer's own session already holds it: the rescan's repair):
    beside a running writer, its batch in flight would commit after the deletes, leaving raw rows
    without a checkpoint and a re-index failing on their primary keys at every start."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", WRITER_LOCK_BASE + chain_id):
            raise WriterRunning(
                f"an indexer for chain {chain_id} is running (it holds the writer lock): stop it (and any standby),"
                " then reset"
            )
        await keep_payloads(conn, chain_id, -1)  # the outbox is kept: its trades' messages stay readable
        indexed = await conn.fetchval("SELECT block_number FROM idx.checkpoints WHERE chain_id = $1", chain_id)
        removed = 0
        for table in EV_TABLES:
            removed += int((await conn.execute(f"DELETE FROM idx.{table} WHERE chain_id = $1", chain_id)).split()[-1])
        if indexed is not None:
            # Every event announced may be gone or changed (a phantom the re-scan's repair removes, review
            # s21 hr): feed clients and the API's caches are told to refetch the whole chain, as for any
            # stretch indexed without per-event messages.
            await write_outbox(conn, chain_id, [outbox_gap.message(chain_id, outbox_gap.Gap(0, indexed, removed))])
        for table in (
            *DERIVED,
            "notifications",
            "blocks",
            "undo",
            "checkpoints",
            "chain_heads",
            "reorgs",
            "contracts",
            "outbox_gaps",  # an open gap of the deleted index would count the re-index again (review s20 hi)
        ):
            await conn.execute(f"DELETE FROM idx.{table} WHERE chain_id = $1", chain_id)


# ---------------------------------------------------------------- deferred secondary indexes

# Non-unique indexes the writer itself reads through stay: rollback deletes notifications and outbox
# rows by block. Every other non-unique index in schema idx serves readers only (API, analysts).
KEPT_INDEXES = ("notifications_block", "outbox_chain_block")


async def deferred_indexes(conn: asyncpg.Connection) -> list[str]:
    return [r["name"] for r in await conn.fetch("SELECT name FROM idx.deferred_indexes ORDER BY name")]


async def other_chains(conn: asyncpg.Connection, chain_id: int) -> list[int]:
    """Chains other than this one indexed in the same database."""
    return [
        r["chain_id"] for r in await conn.fetch("SELECT chain_id FROM idx.checkpoints WHERE chain_id <> $1", chain_id)
    ]


DROP_LOCK_WAIT = "2s"  # the longest the index drop may wait for readers (readers queue behind it)


async def defer_indexes(conn: asyncpg.Connection, chain_id: int) -> list[str]:
    """Drops the readers' secondary indexes of schema idx, keeping their definitions, in one transaction.
    A DROP INDEX waits for every reader of its table, and every reader arriving later waits behind
    it: past DROP_LOCK_WAIT (a long analyst query, say) asyncpg.LockNotAvailableError, nothing
    dropped, and the caller indexes with the indexes in place."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_WAIT}'")
        rows = await conn.fetch(
            "SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS definition"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE i.relnamespace = 'idx'::regnamespace AND NOT x.indisunique AND NOT x.indisprimary"
            " AND NOT (i.relname = ANY($1::text[])) ORDER BY i.relname",
            list(KEPT_INDEXES),
        )
        for r in rows:
            await conn.execute(
                "INSERT INTO idx.deferred_indexes (name, definition, chain_id) VALUES ($1, $2, $3)",
                r["name"],
                r["definition"],
                chain_id,
            )
            await conn.execute(f'DROP INDEX idx."{r["name"]}"')
    return [r["name"] for r in rows]


async def restore_index(conn: asyncpg.Connection, name: str, sort_memory: str = "256MB") -> bool:
    """Builds one deferred index and forgets its definition, in one transaction (a crash leaves one of
    the two). CREATE INDEX blocks writes to the table (only ours) while readers go on."""
    async with conn.transaction():
        definition = await conn.fetchval("SELECT definition FROM idx.deferred_indexes WHERE name = $1 FOR UPDATE", name)
        if definition is None:
            return False
        await conn.execute(f"SET LOCAL maintenance_work_mem = '{sort_memory}'")
        await conn.execute(definition.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1))
        await conn.execute("DELETE FROM idx.deferred_indexes WHERE name = $1", name)
    return True
