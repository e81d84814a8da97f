"""Rows as PostgreSQL takes them (pure: no I/O). The event-table map, COPY text lines, and the
converters between fold's row dataclasses and database records.

    EVENT_TABLES       event class -> raw table and its columns (one line per event type)
    raw_payloads(chain_id, events) -> {table: COPY text}
    derived_line, WRITERS, row_from_record   fold rows <-> COPY lines / records

COPY in text format: binary COPY makes asyncpg encode every numeric(78,0) in Python (~30k rows/s for
ev_trade's eight numerics); in text format str(int) is one C call and PostgreSQL parses the digits on
its own core, so the hot tables go about 4x faster this way.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

from indexer import fold as F
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
    PendingMatured,
    SharesTraded,
    Trade,
    WinningsClaimed,
)

HEADER = ("chain_id", "block_number", "log_index", "block_hash", "tx_hash", "block_time")


@lru_cache(maxsize=65_536)
def ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def seconds(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


# ---------------------------------------------------------------- COPY text

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
    PendingMatured: _event_table(PendingMatured, "ev_pending_matured"),
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


EVENT_TABLES_BY_NAME = {t.table: t for t in EVENT_TABLES.values()}


# ---------------------------------------------------------------- derived rows

COLUMNS: dict[str, tuple[str, ...]] = {t: tuple(f.name for f in dataclasses.fields(F.TABLES[t][0])) for t in DERIVED}
INT_IDX: dict[str, tuple[int, ...]] = {t: tuple(i for i, k in enumerate(F.KINDS[t]) if k == "int") for t in DERIVED}


# Row <-> database record converters, built once per table from the column kinds: an attrgetter
# for the values and the indexes of the few columns that need converting, so each row costs one
# C-level getter plus a short loop (plain code: bench/codegen.py measures it against the
# eval-generated expressions this replaced, docs/benchmarks.md "Plain code vs generated").


def _positions(table: str, kind: str) -> tuple[int, ...]:
    return tuple(i for i, k in enumerate(F.KINDS[table]) if k == kind)


def _record_writer(table: str) -> Callable[[int, Any], tuple[Any, ...]]:
    """Row -> the tuple asyncpg writes (chain_id first; times as datetimes)."""
    get = operator.attrgetter(*COLUMNS[table])
    times = _positions(table, "time")
    if not times:

        def record_plain(chain_id: int, row: Any) -> tuple[Any, ...]:
            return (chain_id, *get(row))

        return record_plain

    def record(chain_id: int, row: Any) -> tuple[Any, ...]:
        values = list(get(row))
        for i in times:
            if values[i] is not None:
                values[i] = ts(values[i])
        return (chain_id, *values)

    return record


def _record_reader(table: str, skip: int) -> Callable[[Any], F.Row]:
    """A database record (integers as text, times as datetimes; `skip` leading columns) -> the row."""
    cls = F.TABLES[table][0]
    ints = tuple(i + skip for i in _positions(table, "int"))
    times = tuple(i + skip for i in _positions(table, "time"))

    def read(r: Any) -> F.Row:
        values = list(r)
        for i in ints:
            v = values[i]
            if v is not None:
                values[i] = int(v)
        for i in times:
            values[i] = seconds(values[i])
        row: F.Row = cls(*values[skip:])
        return row

    return read


def _bytea_text(v: bytes) -> str:
    return "\\\\x" + v.hex()


def _bool_text(v: bool) -> str:
    return "t" if v else "f"


def _str_text(v: str) -> str:
    return v.translate(_ESCAPES)


def _timestamp_text(v: int) -> str:
    return _time_text(ts(v))


NULL = "\\N"
_KIND_TEXT: dict[str, Callable[[Any], str]] = {
    "int": str,
    "bool": _bool_text,
    "bytes": _bytea_text,
    "str": _str_text,
    "time": _timestamp_text,
}


def _line_writer(table: str) -> Callable[[str, Any], str]:
    """Row -> its COPY text line (chain_id first): the backfill writes every row a batch changes, and
    a dispatch on each value's type (copy_text_payload) costs more than one by column kind."""
    get = operator.attrgetter(*COLUMNS[table])
    kinds = F.KINDS[table]
    if set(kinds) <= {"int", "bytes"} and not any(
        "None" in str(f.type) for f in dataclasses.fields(F.TABLES[table][0])
    ):
        return _number_line_writer(get, kinds)
    encoders = tuple(_KIND_TEXT[k] for k in kinds)

    def line(chain: str, row: Any) -> str:
        texts = [NULL if v is None else enc(v) for enc, v in zip(encoders, get(row), strict=True)]
        return chain + "\t" + "\t".join(texts) + "\n"

    return line


def _number_line_writer(get: Callable[[Any], Any], kinds: tuple[str, ...]) -> Callable[[str, Any], str]:
    """Rows of integers and addresses only, never NULL (positions, holdings, creators: most of what a
    backfill writes): one %-format per line, 1.1 us against 2.1 for a positions row. %d refuses a
    text or a None, so such a value fails here, not as a COPY error for the whole batch."""
    template = "%s\t" + "\t".join("%d" if k == "int" else "\\\\x%s" for k in kinds) + "\n"
    hexed = tuple(i for i, k in enumerate(kinds) if k == "bytes")

    def line(chain: str, row: Any) -> str:
        values = list(get(row))
        for i in hexed:
            values[i] = values[i].hex()
        return template % (chain, *values)

    return line


WRITERS = {t: _record_writer(t) for t in DERIVED}
LINES = {t: _line_writer(t) for t in DERIVED}


def derived_line(chain_id: int, table: str, row: F.Row) -> str:
    return LINES[table](str(chain_id), row)


_READERS: dict[tuple[str, int], Callable[[Any], F.Row]] = {}


def row_from_record(table: str, rec: Any, skip: int = 0) -> F.Row:
    reader = _READERS.get((table, skip))
    if reader is None:
        reader = _READERS[(table, skip)] = _record_reader(table, skip)
    return reader(rec)


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


def dedupe_undo(undo: Sequence[F.Undo]) -> list[F.Undo]:
    seen: set[tuple[int, str, tuple[Any, ...]]] = set()
    out = []
    for u in undo:
        k = (u.block_number, u.table, u.key)
        if k not in seen:
            seen.add(k)
            out.append(u)
    return out
