"""How rows get into PostgreSQL fast (asyncpg): COPY of text payloads for large batches, one
statement per table with a column array per parameter for small ones, and per-connection temporary
staging tables for rows updated or upserted in bulk.

At the tip a batch is a block or two: COPY costs two round trips (COPY, then the data) and the staged
UPDATE three, so statements that take each column as an array (one round trip, the statement prepared
once) are faster there (tip path: 35 -> 20 round trips).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence
from typing import Any

import asyncpg

from indexer import fold as F


async def copy_payload(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], data: bytes, schema: str | None = "idx"
) -> None:
    """COPY a text payload. A memoryview, because asyncpg takes bytes for a file path, and wraps a
    file-like source in a class made per call (a reference cycle holding the payload until the next
    garbage collection) that reads it in 512 KB chunks on a thread pool."""
    source: Any = memoryview(data)  # asyncpg documents buffers; its type stub does not list them
    await conn.copy_to_table(table, schema_name=schema, columns=list(columns), source=source, format="text")


# ---------------------------------------------------------------- small batches: one statement per table

SMALL_ROWS = 200  # rows per table up to which the array statements are used

_TYPES: dict[str, dict[str, str]] = {}


async def column_types(conn: asyncpg.Connection, table: str) -> dict[str, str]:
    """Column name -> SQL type of idx.<table> (read from the catalog once per process)."""
    types = _TYPES.get(table)
    if types is None:
        rows = await conn.fetch(
            "SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute"
            " WHERE attrelid = ('idx.' || $1)::regclass AND attnum > 0 AND NOT attisdropped",
            table,
        )
        types = _TYPES[table] = {r["attname"]: r["t"] for r in rows}
    return types


def arrays(width: int, records: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Records (rows) -> one list per column."""
    return [list(col) for col in zip(*records, strict=True)] if records else [[] for _ in range(width)]


async def insert_arrays(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    records: Sequence[Sequence[Any]],
    upsert_key: Sequence[str] = (),
    deltas: bool = False,
) -> None:
    """Rows as one array per column; with `upsert_key`, rows that exist are updated by primary key
    (one index probe each, whatever the statistics say): replaced, or with `deltas` added to."""
    types = await column_types(conn, table)
    params = ", ".join(f"${i + 1}::{types[c]}[]" for i, c in enumerate(columns))
    sql = f"INSERT INTO idx.{table} AS t ({', '.join(columns)}) SELECT * FROM unnest({params})"
    if upsert_key:
        sql += on_conflict_update(columns, upsert_key, F.DELTA_SETS[table] if deltas else None)
    await conn.execute(sql, *arrays(len(columns), records))


def on_conflict_update(columns: Sequence[str], key: Sequence[str], delta_sets: frozenset[str] | None = None) -> str:
    """Rows that exist are updated by primary key (one index probe each). For delta rows
    (fold.apply_delta) the columns in `delta_sets` take the new value and the others are added."""
    if delta_sets is None:
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    else:
        sets = ", ".join(
            f"{c} = EXCLUDED.{c}" if c in delta_sets else f"{c} = t.{c} + EXCLUDED.{c}" for c in columns if c not in key
        )
    return f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"


async def update_arrays(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], records: Sequence[Sequence[Any]]
) -> None:
    """Rows by ctid: each record is (tid, *values of columns)."""
    types = await column_types(conn, table)
    params = ", ".join(f"${i + 2}::{types[c]}[]" for i, c in enumerate(columns))
    sets = ", ".join(f"{c} = u.{c}" for c in columns)
    result = await conn.execute(
        f"UPDATE idx.{table} p SET {sets} FROM unnest($1::tid[], {params}) AS u(tid, {', '.join(columns)})"
        " WHERE p.ctid = ANY($1::tid[]) AND p.ctid = u.tid",
        *arrays(len(columns) + 1, records),
    )
    if result != f"UPDATE {len(records)}":
        raise RuntimeError(f"{table}: {result} for {len(records)} rows located in this transaction")


async def write_records(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], records: Sequence[Sequence[Any]]
) -> None:
    if len(records) <= SMALL_ROWS:
        await insert_arrays(conn, table, columns, records)
    else:
        await conn.copy_records_to_table(table, schema_name="idx", columns=columns, records=records)


_STAGED: weakref.WeakKeyDictionary[asyncpg.Connection, set[str]] = weakref.WeakKeyDictionary()


async def stage(conn: asyncpg.Connection, table: str, kind: str) -> str:
    """This connection's temporary staging table for `table`'s rows (emptied at each commit): with
    a ctid column for rows updated where they were read ("located"), without one for rows upserted
    ("by_key") or added to ("delta") by key."""
    name = f"stage_{table}" if kind == "located" else f"stage_{table}_{kind}"
    staged = _STAGED.setdefault(conn, set())
    if name not in staged:
        tid = "tid tid, " if kind == "located" else ""
        await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({tid}LIKE idx.{table}) ON COMMIT DELETE ROWS")
        staged.add(name)
    return name


def transaction(conn: asyncpg.Connection) -> Any:
    """The caller's transaction when there is one (snapshot read + write in one), else a new one."""
    if conn.is_in_transaction():
        return contextlib.nullcontext()
    return conn.transaction()
