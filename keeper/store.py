"""The keeper's PostgreSQL ledger (schema keeper, sql/010_keeper.sql) and the indexer rows it reads.

Every ledger write runs in a transaction that first checks the writer's fencing epoch against
keeper.leaders (`FOR SHARE`, so a new leader's epoch bump waits for in-flight writes and every
later write of the old leader fails with FencedError).

Errors: FencedError; DatabaseUnreachable and PoolTimeout (no connection could be had, store.connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from core.pgerrors import pooled, reset_or_drop
from keeper import KeeperError

log = structlog.get_logger("keeper")

Conn = asyncpg.Connection | PoolConnectionProxy  # a plain connection or one acquired from a pool


class FencedError(KeeperError):
    """The fencing epoch moved on: this process is not the leader any more and must not write."""


@dataclasses.dataclass(frozen=True, slots=True)
class Fence:
    chain_id: int
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class DbTimeouts:
    """Every keeper connection waits bounded: a row lock held elsewhere (an operator's open psql
    transaction) fails the statement after `lock_s`, any statement after `statement_s`, and the client
    gives up on a silent socket (a half-open TCP connection) `CLIENT_GRACE_S` later."""

    statement_s: float = 300.0
    lock_s: float = 5.0

    @property
    def server_settings(self) -> dict[str, str]:
        return {
            "statement_timeout": str(int(self.statement_s * 1000)),
            "lock_timeout": str(int(self.lock_s * 1000)),
        }

    @property
    def command_timeout(self) -> float:
        return self.statement_s + CLIENT_GRACE_S


CLIENT_GRACE_S = 10.0


ACQUIRE_S = 30.0  # the longest a keeper step waits for a pooled connection (pool of 10; TimeoutError after)


class DatabaseUnreachable(OSError):
    """No pooled connection could be had: opening one failed at the socket (refused, no route). An OSError
    still (callers that catch connection errors catch it), but named, so that the daemon tells it from the
    OSErrors of its other wings (an API that is down, a hung HTTP request): only this one, asyncpg's
    connection errors and PoolTimeout are the systemic fault `database_unreachable` (review h6)."""


class PoolTimeout(DatabaseUnreachable, TimeoutError):
    """No pooled connection within ACQUIRE_S (every connection held, or a database that does not answer)."""


@contextlib.asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[PoolConnectionProxy]:
    """Every keeper use of the pool: a connection within ACQUIRE_S (else PoolTimeout; a socket error while
    connecting is DatabaseUnreachable), and one the server ended while in use is terminated before it goes
    back (core.pgerrors.pooled: asyncpg 0.30's release otherwise waits for ever on it, and the slot is gone
    for good). Errors raised while the connection is in use pass through as they are."""
    acquired = False
    try:
        async with pooled(pool, ACQUIRE_S) as conn:
            acquired = True
            yield conn
    except TimeoutError as exc:
        if acquired:
            raise
        raise PoolTimeout(f"no database connection within {ACQUIRE_S:g} s (pool of {pool.get_max_size()})") from exc
    except OSError as exc:
        if acquired or isinstance(exc, DatabaseUnreachable):
            raise
        raise DatabaseUnreachable(f"cannot connect to the database: {type(exc).__name__}: {exc}") from exc


async def close_pool(pool: asyncpg.Pool, timeout_s: float = 10.0) -> None:
    """Closes the pool within `timeout_s`: a connection still checked out then (a step that outlived
    its wait at shutdown, or one asyncpg lost to a cancelled acquire) is terminated, not waited for —
    a keeper that had lived through a read-only database could wait in Pool.close() for ever after
    SIGTERM (review h2 repro, intermittent)."""
    try:
        async with asyncio.timeout(timeout_s):
            await pool.close()
    except TimeoutError:
        log.warning("pool_close_timed_out", checked_out=pool.get_size() - pool.get_idle_size(), timeout_s=timeout_s)
        pool.terminate()


def create_pool(dsn: str, timeouts: DbTimeouts, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """The keeper's pool (await it; close it with close_pool): every connection with the timeouts above."""
    return asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=30,
        command_timeout=timeouts.command_timeout,
        server_settings=timeouts.server_settings,
        reset=reset_or_drop,  # type: ignore[arg-type]  # awaited by asyncpg; its stubs say a plain function
    )


async def check_fence(conn: Conn, fence: Fence) -> None:
    epoch = await conn.fetchval("SELECT epoch FROM keeper.leaders WHERE chain_id = $1 FOR SHARE", fence.chain_id)
    if epoch != fence.epoch:
        raise FencedError(f"fencing epoch is {epoch}, this process holds {fence.epoch}")


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptRow:
    id: int
    attempt: int
    tx_hash: bytes
    raw_tx: bytes
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    sent_block: int | None  # head at the first broadcast
    is_cancel: bool = False
    last_sent_block: int | None = None  # head at the latest (re)broadcast
    refusals: int = 0  # consecutive broadcasts refused for good (sql/072)
    broadcast_error: str | None = None  # the node's answer to the latest broadcast


@dataclasses.dataclass(frozen=True, slots=True)
class TxRow:
    id: int
    job: str
    job_key: str
    nonce: int
    gas_limit: int
    value: int
    status: str
    queue_id: int | None
    market_id: int | None
    mined_tx_hash: bytes | None
    mined_block: int | None
    mined_block_hash: bytes | None
    finalized: bool
    attempts: tuple[AttemptRow, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class NewTx:
    """A transaction ready to record: signed at `nonce` with `fees` by the caller."""

    job: str
    job_key: str
    to: bytes
    data: bytes
    value: int
    nonce: int
    gas_limit: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    tx_hash: bytes
    raw_tx: bytes
    market_id: int | None = None
    creator: bytes | None = None
    queue_id: int | None = None


async def live_job_keys(conn: Conn, chain_id: int, keys: Sequence[str], reverted: bool = True) -> set[str]:
    """The keys among `keys` a transaction holds (dropped ones never do). `reverted`: count a
    transaction that reverted on chain too — the automatic jobs do (no retry burns gas on a revert);
    an operator's queue entry does not (it asks again on purpose, after a revert)."""
    excluded = ["dropped"] if reverted else ["dropped", "reverted"]
    rows = await conn.fetch(
        "SELECT job_key FROM keeper.txs WHERE chain_id = $1 AND job_key = ANY($2::text[])"
        " AND NOT (status = ANY($3::text[]))",
        chain_id,
        list(keys),
        excluded,
    )
    return {r["job_key"] for r in rows}


async def lock_queued(conn: Conn, ids: Sequence[int]) -> set[int]:
    """Locks the still-queued entries among `ids` for this transaction. An entry locked elsewhere (a
    cancel in progress, an operator's open transaction) is skipped this run, never waited for."""
    if not ids:
        return set()
    rows = await conn.fetch(
        "SELECT id FROM keeper.resolution_queue WHERE id = ANY($1::bigint[]) AND status = 'queued'"
        " FOR UPDATE SKIP LOCKED",
        list(ids),
    )
    return {r["id"] for r in rows}


async def insert_txs(conn: Conn, fence: Fence, sender: bytes, txs: Sequence[NewTx]) -> dict[str, int]:
    """Inserts transactions + their first attempt, marks queue entries sent; returns job_key → tx id."""
    if not txs:
        return {}
    rows = await conn.fetch(
        """
        INSERT INTO keeper.txs (chain_id, job, job_key, sender, to_address, data, value, nonce, gas_limit,
                                status, epoch, market_id, creator, queue_id)
        SELECT $1, t.job, t.job_key, $2, t.to_address, t.data, t.value, t.nonce, t.gas_limit,
               'pending', $3, t.market_id, t.creator, t.queue_id
          FROM unnest($4::text[], $5::text[], $6::bytea[], $7::bytea[], $8::numeric[], $9::bigint[], $10::bigint[],
                      $11::bigint[], $12::bytea[], $13::bigint[])
               AS t(job, job_key, to_address, data, value, nonce, gas_limit, market_id, creator, queue_id)
        RETURNING id, job_key
        """,
        fence.chain_id,
        sender,
        fence.epoch,
        [t.job for t in txs],
        [t.job_key for t in txs],
        [t.to for t in txs],
        [t.data for t in txs],
        [t.value for t in txs],
        [t.nonce for t in txs],
        [t.gas_limit for t in txs],
        [t.market_id for t in txs],
        [t.creator for t in txs],
        [t.queue_id for t in txs],
    )
    ids = {r["job_key"]: r["id"] for r in rows}
    # an older transaction of a key that a reverted or dropped one left free is superseded for good
    await conn.execute(
        """
        UPDATE keeper.txs o SET superseded_by = n.id, updated_at = now()
          FROM unnest($2::text[], $3::bigint[]) AS n(job_key, id)
         WHERE o.chain_id = $1 AND o.job_key = n.job_key AND o.id <> n.id
           AND o.status IN ('dropped', 'reverted') AND o.superseded_by IS NULL
        """,
        fence.chain_id,
        list(ids),
        list(ids.values()),
    )
    await conn.execute(
        """
        INSERT INTO keeper.tx_attempts (tx_id, chain_id, attempt, tx_hash, raw_tx, max_fee_per_gas,
                                        max_priority_fee_per_gas, epoch)
        SELECT a.tx_id, $1, 0, a.tx_hash, a.raw_tx, a.max_fee, a.tip, $2
          FROM unnest($3::bigint[], $4::bytea[], $5::bytea[], $6::numeric[], $7::numeric[])
               AS a(tx_id, tx_hash, raw_tx, max_fee, tip)
        """,
        fence.chain_id,
        fence.epoch,
        [ids[t.job_key] for t in txs],
        [t.tx_hash for t in txs],
        [t.raw_tx for t in txs],
        [t.max_fee_per_gas for t in txs],
        [t.max_priority_fee_per_gas for t in txs],
    )
    queued = [(t.queue_id, ids[t.job_key]) for t in txs if t.queue_id is not None]
    if queued:
        await conn.execute(
            """
            UPDATE keeper.resolution_queue q SET status = 'sent', tx_id = u.tx_id, updated_at = now()
              FROM unnest($1::bigint[], $2::bigint[]) AS u(id, tx_id) WHERE q.id = u.id
            """,
            [q for q, _ in queued],
            [i for _, i in queued],
        )
    await conn.execute(
        """
        INSERT INTO keeper.nonces (chain_id, sender, next_nonce, epoch) VALUES ($1, $2, $3, $4)
        ON CONFLICT (chain_id, sender) DO UPDATE
           SET next_nonce = GREATEST(keeper.nonces.next_nonce, EXCLUDED.next_nonce), epoch = $4, updated_at = now()
        """,
        fence.chain_id,
        sender,
        max(t.nonce for t in txs) + 1,
        fence.epoch,
    )
    return ids


async def insert_attempt(
    pool: asyncpg.Pool,
    fence: Fence,
    tx_id: int,
    attempt: int,
    tx_hash: bytes,
    raw_tx: bytes,
    max_fee: int,
    tip: int,
    is_cancel: bool = False,
) -> int:
    async with connection(pool) as conn, conn.transaction():
        await check_fence(conn, fence)
        return int(
            await conn.fetchval(
                """
                INSERT INTO keeper.tx_attempts (tx_id, chain_id, attempt, tx_hash, raw_tx, max_fee_per_gas,
                                                max_priority_fee_per_gas, epoch, is_cancel)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id
                """,
                tx_id,
                fence.chain_id,
                attempt,
                tx_hash,
                raw_tx,
                max_fee,
                tip,
                fence.epoch,
                is_cancel,
            )
        )


async def mark_broadcast(
    pool: asyncpg.Pool, fence: Fence, results: Sequence[tuple[int, int | None, str | None, bool]]
) -> None:
    """(attempt id, head block or None when it could not be read, error or None, refused for good) for
    each broadcast; an accepted one resets the attempt's refusal count, a refusal for good adds one."""
    if not results:
        return
    async with connection(pool) as conn, conn.transaction():
        await check_fence(conn, fence)
        await conn.execute(
            """
            UPDATE keeper.tx_attempts a
               SET broadcast_at = now(), sent_block = coalesce(a.sent_block, u.block),
                   last_sent_block = coalesce(u.block, a.last_sent_block), broadcast_error = u.error,
                   refusals = CASE WHEN u.error IS NULL THEN 0 WHEN u.for_good THEN a.refusals + 1 ELSE a.refusals END
              FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::boolean[]) AS u(id, block, error, for_good)
             WHERE a.id = u.id
            """,
            [r[0] for r in results],
            [r[1] for r in results],
            [r[2] for r in results],
            [r[3] for r in results],
        )


async def load_live(pool: asyncpg.Pool, chain_id: int, sender: bytes) -> list[TxRow]:
    """Every transaction still to follow: not dropped and not finalized."""
    async with connection(pool) as conn:
        txs = await conn.fetch(
            """
            SELECT id, job, job_key, nonce, gas_limit, value, status, queue_id, market_id, mined_tx_hash,
                   mined_block, mined_block_hash, finalized
              FROM keeper.txs
             WHERE chain_id = $1 AND sender = $2 AND status <> 'dropped' AND NOT finalized
             ORDER BY nonce
            """,
            chain_id,
            sender,
        )
        attempts = await conn.fetch(
            """
            SELECT a.id, a.tx_id, a.attempt, a.tx_hash, a.raw_tx, a.max_fee_per_gas, a.max_priority_fee_per_gas,
                   a.sent_block, a.is_cancel, a.last_sent_block, a.refusals, a.broadcast_error
              FROM keeper.tx_attempts a
             WHERE a.tx_id = ANY($1::bigint[]) ORDER BY a.tx_id, a.attempt
            """,
            [t["id"] for t in txs],
        )
    by_tx: dict[int, list[AttemptRow]] = {}
    for a in attempts:
        by_tx.setdefault(a["tx_id"], []).append(
            AttemptRow(
                a["id"],
                a["attempt"],
                bytes(a["tx_hash"]),
                bytes(a["raw_tx"]),
                int(a["max_fee_per_gas"]),
                int(a["max_priority_fee_per_gas"]),
                a["sent_block"],
                a["is_cancel"],
                a["last_sent_block"],
                a["refusals"],
                a["broadcast_error"],
            )
        )
    return [
        TxRow(
            id=t["id"],
            job=t["job"],
            job_key=t["job_key"],
            nonce=t["nonce"],
            gas_limit=t["gas_limit"],
            value=int(t["value"]),
            status=t["status"],
            queue_id=t["queue_id"],
            market_id=t["market_id"],
            mined_tx_hash=None if t["mined_tx_hash"] is None else bytes(t["mined_tx_hash"]),
            mined_block=t["mined_block"],
            mined_block_hash=None if t["mined_block_hash"] is None else bytes(t["mined_block_hash"]),
            finalized=t["finalized"],
            attempts=tuple(by_tx.get(t["id"], [])),
        )
        for t in txs
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class Mined:
    """A receipt to record for a ledger transaction."""

    tx: TxRow
    tx_hash: bytes
    block: int
    block_hash: bytes
    success: bool
    gas_used: int
    effective_gas_price: int
    confirmed: bool
    finalized: bool

    @property
    def status(self) -> str:
        return ("confirmed" if self.confirmed else "mined") if self.success else "reverted"


MARK_MINED_SQL = """
UPDATE keeper.txs
   SET status = $2::text, mined_tx_hash = $3, mined_block = $4, mined_block_hash = $5,
       gas_used = $6::bigint, effective_gas_price = $7::numeric, fee_paid = $6::bigint * $7::numeric,
       finalized = $8,
       confirmed_at = CASE WHEN $2::text IN ('confirmed', 'reverted') THEN coalesce(confirmed_at, now()) END,
       error = CASE WHEN $2::text = 'reverted' THEN 'reverted on chain' END, updated_at = now()
 WHERE id = $1
"""


async def mark_mined(pool: asyncpg.Pool, fence: Fence, items: Sequence[Mined]) -> None:
    """Records receipts (and the queue entries they settle) in one fenced transaction."""
    if not items:
        return
    async with connection(pool) as conn, conn.transaction():
        await check_fence(conn, fence)
        await conn.executemany(
            MARK_MINED_SQL,
            [
                (m.tx.id, m.status, m.tx_hash, m.block, m.block_hash, m.gas_used, m.effective_gas_price, m.finalized)
                for m in items
            ],
        )
        queue = [
            (
                m.tx.queue_id,
                {"confirmed": "resolved", "reverted": "failed"}.get(m.status, "sent"),
                None if m.success else "transaction reverted",
                m.tx.id,
            )
            for m in items
            if m.tx.queue_id is not None
        ]
        if queue:  # a superseded transaction's entry stays as it is: a newer entry took the market
            await conn.executemany(
                """
                UPDATE keeper.resolution_queue SET status = $2, status_reason = $3, updated_at = now()
                 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM keeper.txs WHERE id = $4 AND superseded_by IS NOT NULL)
                """,
                queue,
            )


async def mark_finalized(pool: asyncpg.Pool, fence: Fence, tx_id: int) -> None:
    async with connection(pool) as conn, conn.transaction():
        await check_fence(conn, fence)
        await conn.execute("UPDATE keeper.txs SET finalized = true, updated_at = now() WHERE id = $1", tx_id)


async def mark_reorged(pool: asyncpg.Pool, fence: Fence, tx: TxRow) -> None:
    async with connection(pool) as conn, conn.transaction():
        await check_fence(conn, fence)
        await conn.execute(
            """
            UPDATE keeper.txs
               SET status = 'pending', mined_tx_hash = NULL, mined_block = NULL, mined_block_hash = NULL,
                   gas_used = NULL, effective_gas_price = NULL, fee_paid = NULL, confirmed_at = NULL, error = NULL,
                   reorg_count = reorg_count + 1, updated_at = now()
             WHERE id = $1
            """,
            tx.id,
        )
        if tx.queue_id is not None:
            await conn.execute(
                """
                UPDATE keeper.resolution_queue SET status = 'sent', updated_at = now()
                 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM keeper.txs WHERE id = $2 AND superseded_by IS NOT NULL)
                """,
                tx.queue_id,
                tx.id,
            )


async def mark_dropped(pool: asyncpg.Pool, fence: Fence, tx: TxRow, reason: str, fail_queue: bool = False) -> None:
    """The nonce went to a transaction we never recorded: the job key is free to be planned again.
    `fail_queue`: the operator's queue entry is `failed` with the reason instead of queued again (a
    transaction every node refused would be refused again)."""
    async with connection(pool) as conn, conn.transaction():
        await check_fence(conn, fence)
        await conn.execute(
            "UPDATE keeper.txs SET status = 'dropped', error = $2, updated_at = now() WHERE id = $1", tx.id, reason
        )
        if tx.queue_id is not None and fail_queue:
            await conn.execute(
                "UPDATE keeper.resolution_queue SET status = 'failed', status_reason = $2, updated_at = now()"
                " WHERE id = $1 AND status = 'sent'",
                tx.queue_id,
                reason[:500],
            )
        elif tx.queue_id is not None:
            await conn.execute(
                "UPDATE keeper.resolution_queue SET status = 'queued', tx_id = NULL, updated_at = now()"
                " WHERE id = $1 AND status = 'sent'",
                tx.queue_id,
            )


async def insert_decisions(
    pool: asyncpg.Pool, chain_id: int, epoch: int | None, rows: Sequence[tuple[str, str, str, str, dict[str, Any]]]
) -> None:
    """(job, job_key, action, reason, detail) rows: why nothing was sent."""
    if not rows:
        return
    async with connection(pool) as conn:
        await conn.executemany(
            "INSERT INTO keeper.decisions (chain_id, job, job_key, action, reason, detail, epoch)"
            " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
            [(chain_id, j, k, a, r, json.dumps(d), epoch) for j, k, a, r, d in rows],
        )


async def skip_queue_entries(pool: asyncpg.Pool, fence: Fence, ids_reasons: Sequence[tuple[int, str]]) -> None:
    """Queue entries that will never be sent (already settled, already in the ledger): `skipped`. Fenced:
    a leader that lost its lock while it decided must not close an operator's entry."""
    if not ids_reasons:
        return
    async with connection(pool) as conn, conn.transaction():
        await check_fence(conn, fence)
        await conn.executemany(
            "UPDATE keeper.resolution_queue SET status = 'skipped', status_reason = $2, updated_at = now()"
            " WHERE id = $1 AND status = 'queued'",
            list(ids_reasons),
        )


async def fail_queue_entries(pool: asyncpg.Pool, fence: Fence, ids_reasons: Sequence[tuple[int, str]]) -> None:
    """Queue entries the keeper cannot act on (bad input, a refusing contract): `failed` with the error
    (fenced, as skip_queue_entries)."""
    if not ids_reasons:
        return
    async with connection(pool) as conn, conn.transaction():
        await check_fence(conn, fence)
        await conn.executemany(
            "UPDATE keeper.resolution_queue SET status = 'failed', status_reason = $2, updated_at = now()"
            " WHERE id = $1 AND status = 'queued'",
            [(i, r[:500]) for i, r in ids_reasons],
        )


async def mined_nonce_floor(pool: asyncpg.Pool, chain_id: int, sender: bytes) -> int:
    """The highest nonce the ledger saw mined for `sender`, + 1 (0 if none): used for certain, whatever
    count a lagging node reports (a reorged one is pending again, not counted)."""
    async with connection(pool) as conn:
        floor = await conn.fetchval(
            "SELECT max(nonce) + 1 FROM keeper.txs WHERE chain_id = $1 AND sender = $2"
            " AND status IN ('mined', 'confirmed', 'reverted')",
            chain_id,
            sender,
        )
    return int(floor or 0)


async def stored_next_nonce(pool: asyncpg.Pool, chain_id: int, sender: bytes) -> int | None:
    async with connection(pool) as conn:
        v = await conn.fetchval(
            "SELECT next_nonce FROM keeper.nonces WHERE chain_id = $1 AND sender = $2", chain_id, sender
        )
    return None if v is None else int(v)
