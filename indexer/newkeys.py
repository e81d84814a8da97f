"""Keys of positions and share_holdings that are certainly not stored yet, so a batch can COPY their
rows instead of upserting them by key and need not read them (issue 16 item 7).

A process that found a table empty for its chain when it started (`start`, with the chain's writer
lock held: no other process writes these rows) writes every row of that table itself, through
`Tip._build`; `mark` records each key it builds a row for, before the batch is written. A key never
marked is therefore not in the table. Marks are bits of a fixed bitmap indexed by `hash(key)`: a
collision only makes a new key look written (it is then read or upserted, which is correct, only
slower), never the reverse, and the memory is bounded (2**BITS bits per table, 4 MB) however long
the chain. A reorg's rollback deletes rows or restores rows this process wrote: marks stay, which
again only costs speed. A table not empty at start gets no tracker: every key may exist.

    tracker = NewKeys.for_empty_tables(conn, chain_id)   # at start
    tracker.absent("positions", key) -> bool             # True: certainly not stored
    tracker.mark("positions", keys)                      # before the batch holding them is written
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

TABLES = ("positions", "share_holdings")
BITS = 25  # 2**25 bits = 4 MB per table: 1.5 % of new keys look written at 500k keys, 5 % at 1.7M
_MASK = (1 << BITS) - 1


class NewKeys:
    def __init__(self, tables: Iterable[str] = ()) -> None:
        self.maps: dict[str, bytearray] = {t: bytearray(1 << (BITS - 3)) for t in tables}

    @classmethod
    async def for_empty_tables(cls, conn: asyncpg.Connection, chain_id: int) -> NewKeys:
        """A tracker for each of TABLES that holds no row of `chain_id` now."""
        empty = [
            t
            for t in TABLES
            if not await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM idx.{t} WHERE chain_id = $1)", chain_id)
        ]
        return cls(empty)

    def tracks(self, table: str) -> bool:
        return table in self.maps

    def absent(self, table: str, key: Any) -> bool:
        """True only when `key` is certainly not stored in `table` (tracked, and never marked)."""
        bits = self.maps.get(table)
        if bits is None:
            return False
        h = hash(key) & _MASK
        return not bits[h >> 3] & (1 << (h & 7))

    def mark(self, table: str, keys: Iterable[Any]) -> None:
        bits = self.maps.get(table)
        if bits is None:
            return
        for key in keys:
            h = hash(key) & _MASK
            bits[h >> 3] |= 1 << (h & 7)
