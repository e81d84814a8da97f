"""The writer's bookkeeping rows (asyncpg): the checkpoint, the contracts indexed, the chain heads.

The checkpoint row is locked FOR UPDATE and compared with the cursor a batch was built on
(check_cursor), so a batch that is not the next one (a second writer, a replay) aborts instead of
applying twice.

Errors: StaleCursor — the stored checkpoint is not the batch's starting point; the caller reloads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg

from indexer.chain import BlockRef, Cursor
from indexer.rows import ts

WRITER_LOCK_BASE = 0x676C_6978_0000  # + chain_id: one indexer writer per chain


class StaleCursor(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Heads:
    head: int
    safe: int | None
    finalized: int


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


async def check_cursor(conn: asyncpg.Connection, chain_id: int, expected: Cursor | None) -> int:
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
) -> list[str]:
    """Records the deployment's contracts for a chain indexed for the first time; returns how the
    contracts the chain was indexed for differ from `contracts` ([] when they match): a redeploy or a
    corrected deploy_block must not silently continue the old index (review s20 hi)."""
    differences: list[str] = []
    for name, address, deploy_block in contracts:
        stored = await conn.fetchrow(
            "WITH ins AS (INSERT INTO idx.contracts (chain_id, name, address, deploy_block) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (chain_id, name) DO NOTHING RETURNING address)"
            " SELECT address, deploy_block FROM idx.contracts WHERE chain_id = $1 AND name = $2"
            " AND NOT EXISTS (SELECT 1 FROM ins)",
            chain_id,
            name,
            address,
            deploy_block,
        )
        if stored is not None and (bytes(stored["address"]), stored["deploy_block"]) != (address, deploy_block):
            differences.append(
                f"{name} 0x{bytes(stored['address']).hex()} from block {stored['deploy_block']} (the deployment:"
                f" 0x{address.hex()} from block {deploy_block})"
            )
    return differences


async def set_heads(conn: asyncpg.Connection, chain_id: int, heads: Heads) -> None:
    await conn.execute(
        "INSERT INTO idx.chain_heads (chain_id, head_block, safe_block, finalized_block, updated_at)"
        " VALUES ($1, $2, $3, $4, now()) ON CONFLICT (chain_id) DO UPDATE SET head_block = EXCLUDED.head_block,"
        " safe_block = EXCLUDED.safe_block, finalized_block = EXCLUDED.finalized_block, updated_at = now()",
        chain_id,
        heads.head,
        heads.safe,
        heads.finalized,
    )
