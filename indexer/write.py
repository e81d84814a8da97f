"""One batch, one transaction (asyncpg): raw events (COPY text), derived rows (COPY of new rows, UPDATE
at the ctid of rows read in the transaction, upsert by key of rows from the batch before), notifications,
blocks, undo journal, outbox rows (after pg_advisory_xact_lock so seq order = commit order) + NOTIFY
gl_outbox, chain head and checkpoint.

    write_batch(conn, chain_id, Batch) -> highest outbox seq written (None if none)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from core.outbox import OUTBOX_LOCK
from indexer import bulk
from indexer import fold as F
from indexer.bulk import (
    arrays,
    copy_payload,
    insert_arrays,
    on_conflict_update,
    transaction,
    update_arrays,
    write_records,
)
from indexer.chain import BlockRef, Cursor
from indexer.checkpoint import Heads, check_cursor
from indexer.decode import Event
from indexer.rows import (
    COLUMNS,
    EVENT_TABLES_BY_NAME,
    LINES,
    NOTIFICATION_COLUMNS,
    OTHER_COLUMNS,
    WRITERS,
    dedupe_undo,
    event_records,
    raw_payloads,
    ts,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    start: Cursor  # the checkpoint the batch continues from
    end: Cursor  # the new checkpoint
    events: Sequence[Event]
    changes: F.Changes
    blocks: Sequence[BlockRef]  # headers to store (unfinalized window, blocks with events, the end block)
    event_counts: dict[int, int]
    heads: Heads
    extra_messages: Sequence[F.Message] = ()
    locators: dict[tuple[str, Any], Any] = dataclasses.field(default_factory=dict)  # from the Snapshot
    raw: dict[str, bytes] | None = None  # raw_payloads(events), when prepared ahead (backfill)
    # (table, key) of rows taken from the batch written just before this one (pipelined backfill):
    # they exist once that batch commits but their ctid is unknown, so they are upserted by key.
    upserts: frozenset[tuple[str, Any]] = frozenset()
    # (table, key) of rows folded blind (fold.Keys.blind, blind_holdings): deltas, added by key
    deltas: frozenset[tuple[str, Any]] = frozenset()
    encoded: Encoded | None = None  # encode(): the rows as written, prepared while the batch before commits


@dataclasses.dataclass(frozen=True, slots=True)
class Derived:
    """One derived table's rows split by how they are written (write_derived): records for small
    batches, COPY payloads (bytes) for large ones."""

    table: str
    small: bool
    fresh: Any  # new rows: COPY
    known: Any  # rows read in the transaction: UPDATE at their ctid
    by_key: Any  # rows of the batch written just before: upserted by key
    added: Any  # blind deltas of keys that may be stored: added to by key


@dataclasses.dataclass(frozen=True, slots=True)
class Encoded:
    """A batch's rows in the form the writes take, so that the backfill can encode batch N+1 while
    PostgreSQL works on batch N instead of between N+1's statements."""

    derived: tuple[Derived, ...]
    notifications: list[tuple[Any, ...]]
    undo: list[tuple[Any, ...]]
    messages: list[F.Message]
    outbox: list[tuple[Any, ...]]


def encode(chain_id: int, batch: Batch) -> Batch:
    """`batch` with its rows encoded (Batch.encoded); write_batch writes them unchanged."""
    return dataclasses.replace(batch, encoded=encoded(chain_id, batch))


def encoded(chain_id: int, batch: Batch) -> Encoded:
    ch = batch.changes
    derived = tuple(
        split_derived(chain_id, table, list(rows.values()), batch.locators, batch.upserts, batch.deltas)
        for table, rows in ch.derived()
        if rows
    )
    notifications = [
        (
            chain_id,
            n.block_number,
            n.log_index,
            n.recipient,
            n.kind,
            n.title,
            n.message,
            n.market_id,
            n.creator,
            n.amount,
            ts(n.block_time),
        )
        for n in ch.notifications
    ]
    undo = [
        (
            chain_id,
            u.block_number,
            u.table,
            orjson.dumps(F.encode_values(u.key)).decode(),
            None if u.pre is None else orjson.dumps(F.encode_values(F.row_values(u.pre))).decode(),
        )
        for u in dedupe_undo(ch.undo)
    ]
    messages = [*ch.messages, *batch.extra_messages]
    outbox = [message_record(chain_id, m) for m in messages] if len(messages) > bulk.SMALL_ROWS else []
    return Encoded(derived, notifications, undo, messages, outbox)


def message_record(chain_id: int, m: F.Message) -> tuple[Any, ...]:
    return (
        chain_id,
        m.event,
        list(m.rooms),
        m.block_number,
        m.log_index,
        m.block_hash,
        None if m.payload is None else orjson.dumps(m.payload).decode(),
    )


KEEP_PAYLOADS_SQL = (
    "UPDATE idx.outbox o SET payload = idx.{builder}(e) FROM idx.{table} e"
    " WHERE o.chain_id = $1 AND o.block_number > $2 AND o.payload IS NULL AND o.event = '{event}'"
    " AND e.chain_id = o.chain_id AND e.block_number = o.block_number AND e.log_index = o.log_index"
    " AND e.block_hash = o.block_hash"
)
ROW_PAYLOADS = (("market:trade", "ev_trade", "trade_payload"), ("shares:trade", "ev_shares_traded", "shares_payload"))


async def keep_payloads(conn: asyncpg.Connection, chain_id: int, after_block: int) -> int:
    """Writes the payload of every outbox row above `after_block` that idx.outbox_messages builds from its
    event row (sql/082: trades), before those event rows are deleted (a rollback, a reset): the outbox
    keeps its messages, and a resume replays them. One join per event table, each payload built once.
    Returns how many."""
    kept = 0
    for event, table, builder in ROW_PAYLOADS:
        status = await conn.execute(
            KEEP_PAYLOADS_SQL.format(builder=builder, table=table, event=event), chain_id, after_block
        )
        kept += int(status.split()[-1])
    return kept


async def write_outbox(
    conn: asyncpg.Connection, chain_id: int, messages: Sequence[F.Message], records: Sequence[tuple[Any, ...]] = ()
) -> int | None:
    """`records`: message_record of each message, when encoded ahead (large batches)."""
    if not messages:
        return None
    await conn.execute("SELECT pg_advisory_xact_lock($1)", OUTBOX_LOCK)
    if len(messages) <= bulk.SMALL_ROWS:  # insert, last seq and NOTIFY in one round trip
        records = [message_record(chain_id, m) for m in messages]
        rooms = [
            "{" + ",".join('"' + r.replace("\\", "\\\\").replace('"', '\\"') + '"' for r in m.rooms) + "}"
            for m in messages
        ]
        cols = arrays(7, records)
        seq = await conn.fetchval(
            "WITH ins AS (INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)"
            " SELECT c, e, r::text[], b, l, h, p::json FROM unnest($1::bigint[], $2::text[], $3::text[],"
            " $4::bigint[], $5::int[], $6::bytea[], $7::text[]) AS u(c, e, r, b, l, h, p) RETURNING seq)"
            " SELECT s FROM (SELECT max(seq) AS s FROM ins) q, LATERAL pg_notify('gl_outbox', $8::text || ':' || q.s)",
            cols[0],
            cols[1],
            rooms,
            cols[3],
            cols[4],
            cols[5],
            cols[6],
            str(chain_id),
        )
        return int(seq)
    await conn.copy_records_to_table(
        "outbox",
        schema_name="idx",
        columns=("chain_id", "event", "rooms", "block_number", "log_index", "block_hash", "payload"),
        records=records or [message_record(chain_id, m) for m in messages],
    )
    seq = await conn.fetchval(  # the last seq and the NOTIFY in one round trip
        "SELECT s FROM (SELECT currval(pg_get_serial_sequence('idx.outbox', 'seq')) AS s) q,"
        " LATERAL pg_notify('gl_outbox', $1::text || ':' || q.s)",
        str(chain_id),
    )
    return int(seq)


async def write_batch(conn: asyncpg.Connection, chain_id: int, batch: Batch) -> int | None:
    """Commits one batch atomically; returns the highest outbox seq written (None if none)."""
    ch = batch.changes
    enc = batch.encoded if batch.encoded is not None else encoded(chain_id, batch)
    async with transaction(conn):
        floor = await check_cursor(conn, chain_id, batch.start)
        if batch.raw is None and len(batch.events) <= bulk.SMALL_ROWS:
            for table, records in event_records(chain_id, batch.events).items():
                cols = OTHER_COLUMNS if table == "ev_other" else EVENT_TABLES_BY_NAME[table].columns
                await insert_arrays(conn, table, cols, records)
        else:
            payloads = batch.raw if batch.raw is not None else raw_payloads(chain_id, batch.events)
            for table, data in payloads.items():
                cols = OTHER_COLUMNS if table == "ev_other" else EVENT_TABLES_BY_NAME[table].columns
                await copy_payload(conn, table, cols, data)
        for d in enc.derived:
            await write_derived(conn, d)
        if enc.notifications:
            await write_records(conn, "notifications", NOTIFICATION_COLUMNS, enc.notifications)
        if enc.undo:
            await write_records(conn, "undo", ("chain_id", "block_number", "tbl", "key", "pre"), enc.undo)
        for name, cfg in ch.config.items():
            await conn.execute(
                "UPDATE idx.contracts SET config = config || $3::jsonb WHERE chain_id = $1 AND name = $2",
                chain_id,
                name,
                orjson.dumps(cfg).decode(),
            )
        if batch.blocks:
            bs = batch.blocks
            await conn.execute(
                "INSERT INTO idx.blocks (chain_id, block_number, block_hash, parent_hash, block_time, event_count)"
                " SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::bytea[], $5::timestamptz[], $6::int[])"
                " ON CONFLICT (chain_id, block_number) DO UPDATE SET block_hash = EXCLUDED.block_hash,"
                " parent_hash = EXCLUDED.parent_hash, block_time = EXCLUDED.block_time,"
                " event_count = EXCLUDED.event_count",
                chain_id,
                [b.number for b in bs],
                [b.hash for b in bs],
                [b.parent_hash for b in bs],
                [ts(b.time) for b in bs],
                [batch.event_counts.get(b.number, 0) for b in bs],
            )
        new_floor = max(floor, min(batch.heads.finalized, batch.end.number))
        seq = await write_outbox(conn, chain_id, enc.messages, enc.outbox)
        h = batch.heads
        # One round trip: chain head, checkpoint and, when finality moved ($4 > $8), pruning the undo
        # journal at and below it and the final blocks without events (the blocks above were written
        # by the previous statement, so the DELETE sees them exactly as a separate statement would).
        await conn.execute(
            "WITH heads AS (INSERT INTO idx.chain_heads (chain_id, head_block, safe_block, finalized_block, updated_at)"
            " VALUES ($1, $5, $6, $7, now()) ON CONFLICT (chain_id) DO UPDATE SET head_block = EXCLUDED.head_block,"
            " safe_block = EXCLUDED.safe_block, finalized_block = EXCLUDED.finalized_block, updated_at = now()),"
            " undo_pruned AS (DELETE FROM idx.undo WHERE chain_id = $1 AND block_number <= $4 AND $4 > $8),"
            " blocks_pruned AS (DELETE FROM idx.blocks WHERE chain_id = $1 AND block_number < $4"
            " AND event_count = 0 AND $4 > $8)"
            " UPDATE idx.checkpoints SET block_number = $2, block_hash = $3, finalized_block = $4, updated_at = now()"
            " WHERE chain_id = $1",
            chain_id,
            batch.end.number,
            batch.end.hash,
            new_floor,
            h.head,
            h.safe,
            h.finalized,
            floor,
        )
    return seq


def split_derived(
    chain_id: int,
    table: str,
    rows: Sequence[F.Row],
    locators: dict[tuple[str, Any], Any],
    upserts: frozenset[tuple[str, Any]] = frozenset(),
    deltas: frozenset[tuple[str, Any]] = frozenset(),
) -> Derived:
    """Splits a table's rows by how write_derived writes them: new rows by COPY; rows read in this
    transaction by an UPDATE at their ctid; rows read in the batch before (`upserts`) upserted by
    key; delta rows (`deltas`) added to by key."""
    small = len(rows) <= bulk.SMALL_ROWS
    record = WRITERS[table]
    line = LINES[table]
    chain = str(chain_id)
    fresh: list[Any] = []  # records (small) or COPY lines
    known: list[Any] = []  # (tid, *record) or "(block,offset)\t" + COPY line
    by_key: list[Any] = []  # records (small) or COPY lines, upserted by primary key
    added: list[Any] = []  # delta records (small) or COPY lines, added to by primary key
    for r in rows:
        key = (table, F.row_key(table, r))
        if key in deltas:
            added.append(record(chain_id, r) if small else line(chain, r))
            continue
        tid = locators.get(key)
        if tid is None and key in upserts:
            by_key.append(record(chain_id, r) if small else line(chain, r))
        elif small and tid is None:
            fresh.append(record(chain_id, r))
        elif small:
            known.append((tid, *record(chain_id, r)))
        elif tid is None:
            fresh.append(line(chain, r))
        else:
            known.append(f"({tid[0]},{tid[1]})\t" + line(chain, r))
    if small:
        return Derived(table, True, fresh, known, by_key, added)
    return Derived(table, False, *("".join(part).encode() for part in (fresh, known, by_key, added)))


async def write_derived(conn: asyncpg.Connection, d: Derived) -> None:
    """New rows by COPY; rows read in this transaction by an UPDATE at their ctid. Their keys never
    change, so with the tables' fillfactor the updates are HOT: no index maintenance at all. Rows
    read in the batch before are upserted by key, delta rows added to by key."""
    table, small = d.table, d.small
    cols = ("chain_id", *COLUMNS[table])
    upsert_key = ("chain_id", *COLUMNS[table][: F.TABLES[table][1]])
    for staged, delta_sets in ((d.by_key, None), (d.added, F.DELTA_SETS.get(table))):
        if not staged:
            continue
        if small:
            await insert_arrays(conn, table, cols, staged, upsert_key, delta_sets is not None)
        else:
            # COPY lines, not arrays: asyncpg encodes a numeric array element from an int in ~2 us.
            staged_table = await bulk.stage(conn, table, "by_key" if delta_sets is None else "delta")
            await copy_payload(conn, staged_table, cols, staged, schema=None)
            await conn.execute(
                f"INSERT INTO idx.{table} AS t ({', '.join(cols)}) SELECT {', '.join(cols)} FROM pg_temp.{staged_table}"
                + on_conflict_update(cols, upsert_key, delta_sets)
            )
    if small:
        if d.known:
            await update_arrays(conn, table, cols, d.known)
        if d.fresh:
            await insert_arrays(conn, table, cols, d.fresh)
        return
    if d.known:
        staged_table = await bulk.stage(conn, table, "located")
        await copy_payload(conn, staged_table, ["tid", *cols], d.known, schema=None)
        sets = ", ".join(f"{c} = s.{c}" for c in COLUMNS[table])
        await conn.execute(
            f"UPDATE idx.{table} p SET {sets} FROM pg_temp.{staged_table} s"
            f" WHERE p.ctid = ANY(ARRAY(SELECT tid FROM pg_temp.{staged_table})) AND p.ctid = s.tid"
        )
    if d.fresh:
        await copy_payload(conn, table, cols, d.fresh)
