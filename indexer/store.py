"""PostgreSQL side of the indexer (asyncpg): snapshot reads, one transaction per batch, rollbacks.

Every write path is ONE transaction holding: raw events (binary COPY), derived rows (delete the
batch's keys + COPY), notifications, blocks, undo journal, outbox rows (after
pg_advisory_xact_lock so seq order = commit order) + NOTIFY gl_outbox, chain head, checkpoint.
The checkpoint row is locked FOR UPDATE and compared with the cursor the batch was built on, so a
batch that is not the next one (a second writer, a replay) aborts instead of applying twice.

Errors: StaleCursor — the stored checkpoint is not the batch's starting point; the caller reloads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import asyncpg
import orjson

from core.outbox import OUTBOX_LOCK
from indexer import fold as F
from indexer.chain import BlockRef, Cursor
from indexer.decode import (
    CreatorFeesClaimed,
    CreatorFeesCollected,
    DividendsClaimed,
    DividendsDistributed,
    Event,
    LiquidityWithdrawn,
    MarketCreated,
    MarketResolved,
    Merged,
    Other,
    OutcomeDisputed,
    OutcomeProposed,
    SharesTraded,
    Trade,
    WinningsClaimed,
)

WRITER_LOCK_BASE = 0x676C_6978_0000  # + chain_id: one indexer writer per chain
HEADER = ("chain_id", "block_number", "log_index", "block_hash", "tx_hash", "block_time")


class StaleCursor(RuntimeError):
    pass


@lru_cache(maxsize=65_536)
def ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def seconds(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


# ---------------------------------------------------------------- COPY in text format
# Binary COPY makes asyncpg encode every numeric(78,0) in Python (~30k rows/s for ev_trade's eight
# numerics); in text format str(int) is one C call and PostgreSQL parses the digits on its own
# core, so the hot tables go about 4x faster this way.

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@lru_cache(maxsize=65_536)
def _time_text(value: datetime) -> str:
    return value.isoformat()


_TEXT: dict[type[Any], Callable[[Any], str]] = {
    int: str,
    bool: lambda v: "t" if v else "f",
    bytes: lambda v: "\\\\x" + v.hex(),
    str: lambda v: v.translate(_ESCAPES),
    type(None): lambda v: "\\N",
    datetime: _time_text,
}


def copy_text_payload(records: Iterable[Sequence[Any]]) -> bytes:
    fmt = _TEXT
    return "".join(["\t".join([fmt[type(v)](v) for v in r]) + "\n" for r in records]).encode()


async def copy_payload(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], data: bytes, schema: str | None = "idx"
) -> None:
    """COPY a text payload. A memoryview, because asyncpg takes bytes for a file path, and wraps a
    file-like source in a class made per call (a reference cycle holding the payload until the next
    garbage collection) that reads it in 512 KB chunks on a thread pool."""
    source: Any = memoryview(data)  # asyncpg documents buffers; its type stub does not list them
    await conn.copy_to_table(table, schema_name=schema, columns=list(columns), source=source, format="text")


# ---------------------------------------------------------------- small batches: one statement per table
# At the tip a batch is a block or two: COPY costs two round trips (COPY, then the data) and the
# staged UPDATE three, so statements that take each column as an array (one round trip, the
# statement prepared once) are faster there. Measured on the tip path: 35 -> 20 round trips.

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


def _arrays(width: int, records: Sequence[Sequence[Any]]) -> list[list[Any]]:
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
        sql += _on_conflict_update(columns, upsert_key, F.DELTA_SETS[table] if deltas else None)
    await conn.execute(sql, *_arrays(len(columns), records))


def _on_conflict_update(columns: Sequence[str], key: Sequence[str], delta_sets: frozenset[str] | None = None) -> str:
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
        *_arrays(len(columns) + 1, records),
    )
    if result != f"UPDATE {len(records)}":
        raise RuntimeError(f"{table}: {result} for {len(records)} rows located in this transaction")


# ---------------------------------------------------------------- raw event tables


@dataclasses.dataclass(frozen=True, slots=True)
class EventTable:
    table: str
    columns: tuple[str, ...]
    getter: Callable[[Any], tuple[Any, ...]]


def _event_table(cls: type[Any], table: str, extra: tuple[str, ...] = ()) -> EventTable:
    fields = [f.name for f in dataclasses.fields(cls)]
    body = tuple(fields[5:])
    getter = operator.attrgetter(*fields)
    return EventTable(table, HEADER + body + extra, getter)


EVENT_TABLES: dict[type[Any], EventTable] = {
    MarketCreated: _event_table(MarketCreated, "ev_market_created"),
    Trade: _event_table(Trade, "ev_trade"),
    MarketResolved: _event_table(MarketResolved, "ev_market_resolved"),
    WinningsClaimed: _event_table(WinningsClaimed, "ev_winnings_claimed"),
    LiquidityWithdrawn: _event_table(LiquidityWithdrawn, "ev_liquidity_withdrawn"),
    CreatorFeesCollected: _event_table(CreatorFeesCollected, "ev_creator_fees_collected"),
    SharesTraded: _event_table(SharesTraded, "ev_shares_traded"),
    DividendsDistributed: _event_table(DividendsDistributed, "ev_dividends_distributed"),
    DividendsClaimed: _event_table(DividendsClaimed, "ev_dividends_claimed"),
    CreatorFeesClaimed: _event_table(CreatorFeesClaimed, "ev_creator_fees_claimed"),
    Merged: _event_table(Merged, "ev_merged"),
    OutcomeProposed: _event_table(OutcomeProposed, "ev_outcome_proposed"),
    OutcomeDisputed: _event_table(OutcomeDisputed, "ev_outcome_disputed"),
}
OTHER_COLUMNS = (*HEADER, "address", "event", "args")
EV_TABLES = (*(t.table for t in EVENT_TABLES.values()), "ev_other")
DERIVED = ("markets", "positions", "creators", "share_holdings")


def event_records(chain_id: int, events: Iterable[Event]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for e in events:
        t = type(e)
        if t is Other:
            o: Other = e  # type: ignore[assignment]
            out.setdefault("ev_other", []).append(
                (
                    chain_id,
                    o.block_number,
                    o.log_index,
                    o.block_hash,
                    o.tx_hash,
                    ts(o.block_time),
                    o.address,
                    o.event,
                    orjson.dumps(o.args).decode(),
                )
            )
            continue
        spec = EVENT_TABLES[t]
        v = spec.getter(e)
        out.setdefault(spec.table, []).append((chain_id, v[0], v[1], v[2], v[3], ts(v[4]), *v[5:]))
    return out


def raw_payloads(chain_id: int, events: Iterable[Event]) -> dict[str, bytes]:
    """COPY text payloads of the raw event tables (pure; the backfill prepares them while fetching)."""
    return {table: copy_text_payload(records) for table, records in event_records(chain_id, events).items()}


# ---------------------------------------------------------------- derived rows

_COLUMNS: dict[str, tuple[str, ...]] = {t: tuple(f.name for f in dataclasses.fields(F.TABLES[t][0])) for t in DERIVED}
_INT_IDX: dict[str, tuple[int, ...]] = {t: tuple(i for i, k in enumerate(F.KINDS[t]) if k == "int") for t in DERIVED}


# Row <-> database record converters, generated once per table: one expression per column instead of
# a loop over index lists (they run for every row a batch reads or writes; ~3x faster).


def _record_writer(table: str) -> Callable[[int, Any], tuple[Any, ...]]:
    parts = []
    for name, kind in zip(_COLUMNS[table], F.KINDS[table], strict=True):
        parts.append(f"(None if row.{name} is None else ts(row.{name}))" if kind == "time" else f"row.{name}")
    source = f"lambda chain_id, row: (chain_id, {', '.join(parts)})"
    fn: Callable[[int, Any], tuple[Any, ...]] = eval(source, {"ts": ts})
    return fn


def _record_reader(table: str, skip: int) -> Callable[[Any], F.Row]:
    parts = []
    for i, kind in enumerate(F.KINDS[table]):
        v = f"r[{i + skip}]"
        if kind == "time":
            parts.append(f"seconds({v})")
        elif kind == "int":
            parts.append(f"(None if {v} is None else int({v}))")
        else:
            parts.append(v)
    env = {"seconds": seconds, "cls": F.TABLES[table][0]}
    fn: Callable[[Any], F.Row] = eval(f"lambda r: cls({', '.join(parts)})", env)
    return fn


def _line_writer(table: str) -> Callable[[str, Any], str]:
    """Row -> its COPY text line (chain_id first), one generated expression per table: the backfill
    writes every row a batch changes, and a type dispatch per value (copy_text_payload) costs more."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(F.TABLES[table][0])}
    parts = []
    for name, kind in zip(_COLUMNS[table], F.KINDS[table], strict=True):
        v = f"row.{name}"
        text = {
            "int": f"str({v})",
            "bool": f"('t' if {v} else 'f')",
            "bytes": f"BYTEA + {v}.hex()",
            "str": f"{v}.translate(ESC)",
            "time": f"time_text(ts({v}))",
        }[kind]
        parts.append(f"(NULL if {v} is None else {text})" if "None" in fields[name] else text)
    source = f"lambda chain, row: TAB.join((chain, {', '.join(parts)})) + NL"
    env = {"ts": ts, "time_text": _time_text, "ESC": _ESCAPES, "BYTEA": "\\\\x", "NULL": "\\N", "TAB": "\t", "NL": "\n"}
    fn: Callable[[str, Any], str] = eval(source, env)
    return fn


_WRITERS = {t: _record_writer(t) for t in DERIVED}
_LINES = {t: _line_writer(t) for t in DERIVED}


def derived_line(chain_id: int, table: str, row: F.Row) -> str:
    return _LINES[table](str(chain_id), row)


_READERS: dict[tuple[str, int], Callable[[Any], F.Row]] = {}


def derived_record(chain_id: int, table: str, row: F.Row) -> tuple[Any, ...]:
    return _WRITERS[table](chain_id, row)


def row_from_record(table: str, rec: asyncpg.Record, skip: int = 0) -> F.Row:
    reader = _READERS.get((table, skip))
    if reader is None:
        reader = _READERS[(table, skip)] = _record_reader(table, skip)
    return reader(rec)


def _columns(table: str, prefix: str = "") -> str:
    """The select list of a derived table. Integer columns come back as text: asyncpg turns numeric
    into Decimal, and int(Decimal) costs about 1 us per value against 0.1 us for int(str)."""
    ints = set(_INT_IDX[table])
    return ", ".join(
        f"{prefix}{c}::text AS {c}" if i in ints else f"{prefix}{c}" for i, c in enumerate(_COLUMNS[table])
    )


def _select(table: str) -> str:
    return f"SELECT ctid, {_columns(table)} FROM idx.{table}"


def _lateral(table: str, first_is_int: bool, first: str, second: str) -> str:
    """Rows for a list of two-column keys, one primary-key probe per key (a plain join of unnest()
    with the table is planned as a hash join over a scan of the whole table; OFFSET 0 keeps the
    subquery from being flattened, so each key is one index probe).

    The keys arrive packed (`packed_keys`): asyncpg encodes an array parameter with an ABC isinstance
    check per element: 2.8 ms of the writer's CPU for 4,000 keys, against 0.9 ms for one text and one
    bytea. Key n's address is bytes 20n-19..20n of its parameter."""
    if first_is_int:
        keys = "unnest(string_to_array($2, ',')::bigint[]) WITH ORDINALITY AS k(a, n)"
        a = "k.a"
    else:
        keys = "generate_series(1, length($3::bytea) / 20) AS k(n)"
        a = "substring($2::bytea FROM k.n::int * 20 - 19 FOR 20)"
    cols = _columns(table, "p.")
    return (
        f"SELECT p.tid, {cols} FROM {keys} CROSS JOIN LATERAL"
        f" (SELECT x.ctid AS tid, x.* FROM idx.{table} x WHERE x.chain_id = $1 AND x.{first} = {a}"
        f" AND x.{second} = substring($3::bytea FROM k.n::int * 20 - 19 FOR 20) OFFSET 0) p"
    )


def packed_addresses(addresses: Sequence[bytes]) -> bytes:
    blob = b"".join(addresses)
    if len(blob) != 20 * len(addresses):
        raise ValueError("snapshot keys: every address must be 20 bytes")
    return blob


def packed_keys(keys: Iterable[tuple[Any, bytes]]) -> tuple[str | bytes, bytes]:
    """(first column, second column) of two-column keys for `_lateral`: integers as comma-separated
    text, addresses concatenated."""
    firsts, seconds = zip(*keys, strict=True)
    first: str | bytes = ",".join(map(str, firsts)) if isinstance(firsts[0], int) else packed_addresses(firsts)
    return first, packed_addresses(seconds)


async def load_snapshot(conn: asyncpg.Connection, chain_id: int, keys: F.Keys) -> F.Snapshot:
    snap = F.Snapshot(blind=keys.blind, blind_holdings=keys.blind_holdings)  # folded as deltas, not read
    if keys.markets:
        for r in await conn.fetch(
            _select("markets") + " WHERE chain_id = $1 AND market_id = ANY($2::bigint[])", chain_id, list(keys.markets)
        ):
            mrow: F.MarketRow = row_from_record("markets", r, 1)  # type: ignore[assignment]
            snap.markets[mrow.market_id] = mrow
            snap.locators[("markets", (mrow.market_id,))] = r[0]
    creators = set(keys.creators) | {m.creator for m in snap.markets.values()}
    if keys.positions:
        for r in await conn.fetch(
            _lateral("positions", True, "market_id", "holder"), chain_id, *packed_keys(keys.positions)
        ):
            pos: F.PositionRow = row_from_record("positions", r, 1)  # type: ignore[assignment]
            snap.positions[(pos.market_id, pos.holder)] = pos
            snap.locators[("positions", (pos.market_id, pos.holder))] = r[0]
    if keys.market_positions:
        for r in await conn.fetch(
            _select("positions") + " WHERE chain_id = $1 AND market_id = ANY($2::bigint[])",
            chain_id,
            list(keys.market_positions),
        ):
            pos = row_from_record("positions", r, 1)  # type: ignore[assignment]
            snap.positions[(pos.market_id, pos.holder)] = pos
            snap.locators[("positions", (pos.market_id, pos.holder))] = r[0]
    if creators:
        for r in await conn.fetch(
            _select("creators") + " WHERE chain_id = $1 AND creator = ANY($2::bytea[])", chain_id, list(creators)
        ):
            c: F.CreatorRow = row_from_record("creators", r, 1)  # type: ignore[assignment]
            snap.creators[c.creator] = c
            snap.locators[("creators", (c.creator,))] = r[0]
    if keys.holdings:
        for r in await conn.fetch(
            _lateral("share_holdings", False, "creator", "holder"), chain_id, *packed_keys(keys.holdings)
        ):
            h: F.HoldingRow = row_from_record("share_holdings", r, 1)  # type: ignore[assignment]
            snap.holdings[(h.creator, h.holder)] = h
            snap.locators[("share_holdings", (h.creator, h.holder))] = r[0]
    if keys.creator_holdings:
        for r in await conn.fetch(
            _select("share_holdings") + " WHERE chain_id = $1 AND creator = ANY($2::bytea[])",
            chain_id,
            list(keys.creator_holdings),
        ):
            h = row_from_record("share_holdings", r, 1)  # type: ignore[assignment]
            snap.holdings[(h.creator, h.holder)] = h
            snap.locators[("share_holdings", (h.creator, h.holder))] = r[0]
    return snap


async def _delete_keys(conn: asyncpg.Connection, chain_id: int, table: str, keys: Sequence[tuple[Any, ...]]) -> None:
    if not keys:
        return
    if table == "markets":
        await conn.execute(
            "DELETE FROM idx.markets WHERE chain_id = $1 AND market_id = ANY($2::bigint[])",
            chain_id,
            [k[0] for k in keys],
        )
    elif table == "creators":
        await conn.execute(
            "DELETE FROM idx.creators WHERE chain_id = $1 AND creator = ANY($2::bytea[])",
            chain_id,
            [k[0] for k in keys],
        )
    elif table == "positions":
        await conn.execute(
            "DELETE FROM idx.positions p USING unnest($2::bigint[], $3::bytea[]) AS k(m, h)"
            " WHERE p.chain_id = $1 AND p.market_id = k.m AND p.holder = k.h",
            chain_id,
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
    else:
        await conn.execute(
            "DELETE FROM idx.share_holdings p USING unnest($2::bytea[], $3::bytea[]) AS k(c, h)"
            " WHERE p.chain_id = $1 AND p.creator = k.c AND p.holder = k.h",
            chain_id,
            [k[0] for k in keys],
            [k[1] for k in keys],
        )


async def _replace_rows(
    conn: asyncpg.Connection, chain_id: int, table: str, keys: Sequence[tuple[Any, ...]], rows: Sequence[F.Row]
) -> None:
    await _delete_keys(conn, chain_id, table, keys)
    if rows:
        lines = "".join(derived_line(chain_id, table, r) for r in rows)
        await copy_payload(conn, table, ("chain_id", *_COLUMNS[table]), lines.encode())


# ---------------------------------------------------------------- batches


@dataclasses.dataclass(frozen=True, slots=True)
class Heads:
    head: int
    safe: int | None
    finalized: int


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


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    cursor: Cursor | None
    final_floor: int  # highest block treated as final (undo pruned at and below it)


async def load_cursor(conn: asyncpg.Connection, chain_id: int) -> Stored:
    r = await conn.fetchrow(
        "SELECT block_number, block_hash, finalized_block FROM idx.checkpoints WHERE chain_id = $1", chain_id
    )
    if r is None:
        return Stored(None, 0)
    return Stored(Cursor(r["block_number"], bytes(r["block_hash"])), r["finalized_block"])


async def _check_cursor(conn: asyncpg.Connection, chain_id: int, expected: Cursor | None) -> int:
    r = await conn.fetchrow(
        "SELECT block_number, block_hash, finalized_block FROM idx.checkpoints WHERE chain_id = $1 FOR UPDATE", chain_id
    )
    have = None if r is None else Cursor(r["block_number"], bytes(r["block_hash"]))
    if have != expected:
        raise StaleCursor(f"checkpoint is {have}, batch starts at {expected}")
    return 0 if r is None else int(r["finalized_block"])


async def init_cursor(conn: asyncpg.Connection, chain_id: int, base: BlockRef) -> Cursor:
    """The first checkpoint: the block before the deployment (its header stored as the anchor)."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO idx.blocks (chain_id, block_number, block_hash, parent_hash, block_time) VALUES"
            " ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            chain_id,
            base.number,
            base.hash,
            base.parent_hash,
            ts(base.time),
        )
        await conn.execute(
            "INSERT INTO idx.checkpoints (chain_id, block_number, block_hash) VALUES ($1, $2, $3)"
            " ON CONFLICT (chain_id) DO NOTHING",
            chain_id,
            base.number,
            base.hash,
        )
    return Cursor(base.number, base.hash)


async def ensure_contracts(
    conn: asyncpg.Connection, chain_id: int, contracts: Sequence[tuple[str, bytes, int]]
) -> None:
    for name, address, deploy_block in contracts:
        await conn.execute(
            "INSERT INTO idx.contracts (chain_id, name, address, deploy_block) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (chain_id, name) DO NOTHING",
            chain_id,
            name,
            address,
            deploy_block,
        )


def _message_record(chain_id: int, m: F.Message) -> tuple[Any, ...]:
    return (
        chain_id,
        m.event,
        list(m.rooms),
        m.block_number,
        m.log_index,
        m.block_hash,
        orjson.dumps(m.payload).decode(),
    )


async def _write_outbox(conn: asyncpg.Connection, chain_id: int, messages: Sequence[F.Message]) -> int | None:
    if not messages:
        return None
    await conn.execute("SELECT pg_advisory_xact_lock($1)", OUTBOX_LOCK)
    if len(messages) <= SMALL_ROWS:  # insert, last seq and NOTIFY in one round trip
        records = [_message_record(chain_id, m) for m in messages]
        rooms = [
            "{" + ",".join('"' + r.replace("\\", "\\\\").replace('"', '\\"') + '"' for r in m.rooms) + "}"
            for m in messages
        ]
        cols = _arrays(7, records)
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
        records=[_message_record(chain_id, m) for m in messages],
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
    async with _transaction(conn):
        floor = await _check_cursor(conn, chain_id, batch.start)
        if batch.raw is None and len(batch.events) <= SMALL_ROWS:
            for table, records in event_records(chain_id, batch.events).items():
                cols = OTHER_COLUMNS if table == "ev_other" else EVENT_TABLES_BY_NAME[table].columns
                await insert_arrays(conn, table, cols, records)
        else:
            payloads = batch.raw if batch.raw is not None else raw_payloads(chain_id, batch.events)
            for table, data in payloads.items():
                cols = OTHER_COLUMNS if table == "ev_other" else EVENT_TABLES_BY_NAME[table].columns
                await copy_payload(conn, table, cols, data)
        for table, rows in ch.derived():
            if rows:
                await _write_derived(
                    conn, chain_id, table, list(rows.values()), batch.locators, batch.upserts, batch.deltas
                )
        if ch.notifications:
            await _write_records(
                conn,
                "notifications",
                NOTIFICATION_COLUMNS,
                [
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
                ],
            )
        if ch.undo:
            await _write_records(
                conn,
                "undo",
                ("chain_id", "block_number", "tbl", "key", "pre"),
                [
                    (
                        chain_id,
                        u.block_number,
                        u.table,
                        orjson.dumps(F.encode_values(u.key)).decode(),
                        None if u.pre is None else orjson.dumps(F.encode_values(F.row_values(u.pre))).decode(),
                    )
                    for u in _dedupe_undo(ch.undo)
                ],
            )
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
        seq = await _write_outbox(conn, chain_id, [*ch.messages, *batch.extra_messages])
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


NOTIFICATION_COLUMNS = (
    "chain_id",
    "block_number",
    "log_index",
    "recipient",
    "kind",
    "title",
    "message",
    "market_id",
    "creator",
    "amount",
    "block_time",
)


async def _write_records(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], records: Sequence[Sequence[Any]]
) -> None:
    if len(records) <= SMALL_ROWS:
        await insert_arrays(conn, table, columns, records)
    else:
        await conn.copy_records_to_table(table, schema_name="idx", columns=columns, records=records)


_STAGED: weakref.WeakKeyDictionary[asyncpg.Connection, set[str]] = weakref.WeakKeyDictionary()


async def _write_derived(
    conn: asyncpg.Connection,
    chain_id: int,
    table: str,
    rows: Sequence[F.Row],
    locators: dict[tuple[str, Any], Any],
    upserts: frozenset[tuple[str, Any]] = frozenset(),
    deltas: frozenset[tuple[str, Any]] = frozenset(),
) -> None:
    """New rows by COPY; rows read in this transaction by an UPDATE at their ctid. Their keys never
    change, so with the tables' fillfactor the updates are HOT: no index maintenance at all. Rows
    read in the batch before (`upserts`) are upserted by key, delta rows (`deltas`) added by key."""
    cols = ("chain_id", *_COLUMNS[table])
    small = len(rows) <= SMALL_ROWS
    record = _WRITERS[table]
    line = _LINES[table]
    chain = str(chain_id)
    fresh: list[Any] = []  # records (small) or COPY lines
    known: list[Any] = []  # (tid, *record) or "(block,offset)\t" + COPY line
    by_key: list[Any] = []  # records (small) or COPY lines, upserted by primary key
    added: list[Any] = []  # delta records (small) or COPY lines, added to by primary key
    upsert_key = ("chain_id", *_COLUMNS[table][: F.TABLES[table][1]])
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
    for staged, delta_sets in ((by_key, None), (added, F.DELTA_SETS.get(table))):
        if not staged:
            continue
        if small:
            await insert_arrays(conn, table, cols, staged, upsert_key, delta_sets is not None)
        else:
            # COPY lines, not arrays: asyncpg encodes a numeric array element from an int in ~2 us.
            stage = await _stage(conn, table, "by_key" if delta_sets is None else "delta")
            await copy_payload(conn, stage, cols, "".join(staged).encode(), schema=None)
            await conn.execute(
                f"INSERT INTO idx.{table} AS t ({', '.join(cols)}) SELECT {', '.join(cols)} FROM pg_temp.{stage}"
                + _on_conflict_update(cols, upsert_key, delta_sets)
            )
    if small:
        if known:
            await update_arrays(conn, table, cols, known)
        if fresh:
            await insert_arrays(conn, table, cols, fresh)
        return
    if known:
        stage = await _stage(conn, table, "located")
        await copy_payload(conn, stage, ["tid", *cols], "".join(known).encode(), schema=None)
        sets = ", ".join(f"{c} = s.{c}" for c in _COLUMNS[table])
        await conn.execute(
            f"UPDATE idx.{table} p SET {sets} FROM pg_temp.{stage} s"
            f" WHERE p.ctid = ANY(ARRAY(SELECT tid FROM pg_temp.{stage})) AND p.ctid = s.tid"
        )
    if fresh:
        await copy_payload(conn, table, cols, "".join(fresh).encode())


async def _stage(conn: asyncpg.Connection, table: str, kind: str) -> str:
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


def _transaction(conn: asyncpg.Connection) -> Any:
    """The caller's transaction when there is one (snapshot read + write in one), else a new one."""
    if conn.is_in_transaction():
        return contextlib.nullcontext()
    return conn.transaction()


def _dedupe_undo(undo: Sequence[F.Undo]) -> list[F.Undo]:
    seen: set[tuple[int, str, tuple[Any, ...]]] = set()
    out = []
    for u in undo:
        k = (u.block_number, u.table, u.key)
        if k not in seen:
            seen.add(k)
            out.append(u)
    return out


EVENT_TABLES_BY_NAME = {t.table: t for t in EVENT_TABLES.values()}


async def _set_heads(conn: asyncpg.Connection, chain_id: int, heads: Heads) -> None:
    await conn.execute(
        "INSERT INTO idx.chain_heads (chain_id, head_block, safe_block, finalized_block, updated_at)"
        " VALUES ($1, $2, $3, $4, now()) ON CONFLICT (chain_id) DO UPDATE SET head_block = EXCLUDED.head_block,"
        " safe_block = EXCLUDED.safe_block, finalized_block = EXCLUDED.finalized_block, updated_at = now()",
        chain_id,
        heads.head,
        heads.safe,
        heads.finalized,
    )


async def update_heads(conn: asyncpg.Connection, chain_id: int, heads: Heads) -> None:
    await _set_heads(conn, chain_id, heads)


async def stored_hashes(conn: asyncpg.Connection, chain_id: int, above: int) -> dict[int, bytes]:
    rows = await conn.fetch(
        "SELECT block_number, block_hash FROM idx.blocks WHERE chain_id = $1 AND block_number >= $2", chain_id, above
    )
    return {r["block_number"]: bytes(r["block_hash"]) for r in rows}


@dataclasses.dataclass(frozen=True, slots=True)
class RollbackResult:
    removed: int
    depth: int
    seq: int | None


async def rollback(
    conn: asyncpg.Connection, chain_id: int, start: Cursor, ancestor: int, heads: Heads
) -> RollbackResult:
    """Removes everything above `ancestor` in one transaction and announces it (chain:reorg)."""
    async with conn.transaction():
        await _check_cursor(conn, chain_id, start)
        anc = await conn.fetchrow(
            "SELECT block_hash FROM idx.blocks WHERE chain_id = $1 AND block_number = $2", chain_id, ancestor
        )
        if anc is None:
            raise StaleCursor(f"ancestor block {ancestor} is not stored")
        undo_rows = await conn.fetch(
            "SELECT block_number, tbl, key, pre FROM idx.undo WHERE chain_id = $1 AND block_number > $2",
            chain_id,
            ancestor,
        )
        undo = [
            F.Undo(
                r["block_number"],
                r["tbl"],
                F.decode_values(r["tbl"], orjson.loads(r["key"])),
                None
                if r["pre"] is None
                else F.row_from_values(r["tbl"], F.decode_values(r["tbl"], orjson.loads(r["pre"]))),
            )
            for r in undo_rows
        ]
        plan = F.restore_plan(undo, ancestor)
        for table in DERIVED:
            keys = [k for (t, k) in plan if t == table]
            rows = [r for (t, _), r in plan.items() if t == table and r is not None]
            await _replace_rows(conn, chain_id, table, keys, rows)
        await conn.execute("DELETE FROM idx.undo WHERE chain_id = $1 AND block_number > $2", chain_id, ancestor)
        removed: list[tuple[int, int, bytes]] = []
        for table in EV_TABLES:
            for r in await conn.fetch(
                f"DELETE FROM idx.{table} WHERE chain_id = $1 AND block_number > $2"
                " RETURNING block_number, log_index, block_hash",
                chain_id,
                ancestor,
            ):
                removed.append((r["block_number"], r["log_index"], bytes(r["block_hash"])))
        removed.sort()
        await conn.execute(
            "DELETE FROM idx.notifications WHERE chain_id = $1 AND block_number > $2", chain_id, ancestor
        )
        rooms = {"global:all"} | {
            r[0]
            for r in await conn.fetch(
                "SELECT DISTINCT unnest(rooms) FROM idx.outbox WHERE chain_id = $1 AND block_number > $2"
                " AND event <> 'chain:reorg'",
                chain_id,
                ancestor,
            )
        }
        await conn.execute("DELETE FROM idx.blocks WHERE chain_id = $1 AND block_number > $2", chain_id, ancestor)
        depth = start.number - ancestor
        await conn.execute(
            "INSERT INTO idx.reorgs (chain_id, common_ancestor, old_head, depth, removed_events)"
            " VALUES ($1, $2, $3, $4, $5)",
            chain_id,
            ancestor,
            start.number,
            depth,
            len(removed),
        )
        anc_hash = bytes(anc["block_hash"])
        msg = F.Message(
            "chain:reorg",
            tuple(sorted(rooms)),
            None,
            None,
            None,
            {
                "chain_id": chain_id,
                "common_ancestor": {"block_number": ancestor, "block_hash": "0x" + anc_hash.hex()},
                "old_head": start.number,
                "depth": depth,
                "removed": [[chain_id, b, li, "0x" + h.hex()] for b, li, h in removed],
            },
        )
        seq = await _write_outbox(conn, chain_id, [msg])
        await _set_heads(conn, chain_id, heads)
        await conn.execute(
            "UPDATE idx.checkpoints SET block_number = $2, block_hash = $3, updated_at = now() WHERE chain_id = $1",
            chain_id,
            ancestor,
            anc_hash,
        )
    return RollbackResult(len(removed), depth, seq)


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


async def reset_chain(conn: asyncpg.Connection, chain_id: int) -> None:
    """Deletes everything the indexer wrote for a chain (re-index from scratch). The outbox is kept."""
    async with conn.transaction():
        for table in (
            *EV_TABLES,
            *DERIVED,
            "notifications",
            "blocks",
            "undo",
            "checkpoints",
            "chain_heads",
            "reorgs",
            "contracts",
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


async def defer_indexes(conn: asyncpg.Connection, chain_id: int) -> list[str]:
    """Drops the readers' secondary indexes of schema idx, keeping their definitions, in one transaction."""
    async with conn.transaction():
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
