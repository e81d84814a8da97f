"""Rolling back above a common ancestor (asyncpg), in one transaction: derived rows restored from the
undo journal, raw events, notifications and blocks above it deleted, the reorg recorded and announced
(chain:reorg on the outbox, with the identities of the removed events), the checkpoint moved back.

    rollback(conn, chain_id, cursor, ancestor, heads) -> RollbackResult
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from indexer import fold as F
from indexer import outbox_gap
from indexer.bulk import copy_payload
from indexer.chain import Cursor
from indexer.checkpoint import Heads, StaleCursor, check_cursor, set_heads
from indexer.rows import COLUMNS, DERIVED, EV_TABLES, derived_line
from indexer.write import keep_payloads, write_outbox


async def delete_keys(conn: asyncpg.Connection, chain_id: int, table: str, keys: Sequence[tuple[Any, ...]]) -> None:
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


async def replace_rows(
    conn: asyncpg.Connection, chain_id: int, table: str, keys: Sequence[tuple[Any, ...]], rows: Sequence[F.Row]
) -> None:
    await delete_keys(conn, chain_id, table, keys)
    if rows:
        lines = "".join(derived_line(chain_id, table, r) for r in rows)
        await copy_payload(conn, table, ("chain_id", *COLUMNS[table]), lines.encode())


@dataclasses.dataclass(frozen=True, slots=True)
class RollbackResult:
    removed: int
    depth: int
    seq: int | None


async def _trim_gap(
    conn: asyncpg.Connection, chain_id: int, ancestor: int, removed: Sequence[tuple[int, int, bytes]]
) -> None:
    """The open stretch without feed messages loses the blocks rolled back and their events (review s21
    hr: the removed branch's events stayed counted, and the re-indexed blocks were counted again)."""
    gap = await outbox_gap.load(conn, chain_id)
    if gap is None or gap.to_block <= ancestor:
        return
    if gap.from_block > ancestor:
        await outbox_gap.save(conn, chain_id, None)
        return
    gone = sum(1 for b, _, _ in removed if b <= gap.to_block)
    await outbox_gap.save(conn, chain_id, outbox_gap.Gap(gap.from_block, ancestor, max(0, gap.events - gone)))


async def rollback(
    conn: asyncpg.Connection, chain_id: int, start: Cursor, ancestor: int, heads: Heads
) -> RollbackResult:
    """Removes everything above `ancestor` in one transaction and announces it (chain:reorg)."""
    async with conn.transaction():
        await check_cursor(conn, chain_id, start)
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
            await replace_rows(conn, chain_id, table, keys, rows)
        await conn.execute("DELETE FROM idx.undo WHERE chain_id = $1 AND block_number > $2", chain_id, ancestor)
        await keep_payloads(conn, chain_id, ancestor)  # the removed trades' messages stay readable
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
        await _trim_gap(conn, chain_id, ancestor, removed)
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
        seq = await write_outbox(conn, chain_id, [msg])
        await set_heads(conn, chain_id, heads)
        await conn.execute(
            "UPDATE idx.checkpoints SET block_number = $2, block_hash = $3, updated_at = now() WHERE chain_id = $1",
            chain_id,
            ancestor,
            anc_hash,
        )
    return RollbackResult(len(removed), depth, seq)
