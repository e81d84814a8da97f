"""Background re-scan of finalized blocks: the events a node reports for a range, compared with the
events stored for it.

A provider that silently dropped logs (a lying or pruned node behind a load balancer) leaves a
finalized range incomplete for good: nothing else reads it again. The indexer, while idle at the
head, reads the next `rescan_span` finalized blocks again (indexer/upkeep.py: Upkeep.rescan) and
compares event identities (block number, log index, block hash) with what it stored.

    compare(stored, node) -> Diff                                     (pure)
    stored_identities(conn, chain_id, a, b) -> set[Identity]          (SQL)
    node_identities(rpc, a, b, addresses, span) -> set[Identity]      (RPC; ranges split when refused)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg

from indexer.chain import split_span
from indexer.rows import EV_TABLES
from indexer.rpc import RangeTooLarge, Rpc, TimedOut

Identity = tuple[int, int, bytes]  # (block_number, log_index, block_hash)


@dataclasses.dataclass(frozen=True, slots=True)
class Diff:
    missing: frozenset[Identity]  # the node has them, we did not store them
    extra: frozenset[Identity]  # we stored them, the node does not report them

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra)

    def first_block(self) -> int | None:
        blocks = [i[0] for i in (*self.missing, *self.extra)]
        return min(blocks) if blocks else None


def compare(stored: set[Identity], node: set[Identity]) -> Diff:
    return Diff(frozenset(node - stored), frozenset(stored - node))


async def stored_identities(conn: asyncpg.Connection, chain_id: int, a: int, b: int) -> set[Identity]:
    sql = " UNION ALL ".join(
        f"SELECT block_number, log_index, block_hash FROM idx.{t}"
        " WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3"
        for t in EV_TABLES
    )
    return {(r[0], r[1], bytes(r[2])) for r in await conn.fetch(sql, chain_id, a, b)}


async def node_identities(rpc: Rpc, a: int, b: int, addresses: Sequence[str], span: int) -> set[Identity]:
    """Identities of our logs in a..b as the node reports them (each answer from a node that has b)."""
    out: set[Identity] = set()
    start = a
    while start <= b:
        end = min(b, start + span - 1)
        try:
            logs, _ = await rpc.get_logs_checked(start, end, addresses)
        except (RangeTooLarge, TimedOut) as exc:  # a cap, or a range too heavy for the provider
            if end == start:
                raise
            suggested = exc.suggested_span if isinstance(exc, RangeTooLarge) else None
            span = split_span(min(span, end - start + 1), suggested)
            continue
        out.update((int(r.blockNumber, 16), int(r.logIndex, 16), bytes.fromhex(r.blockHash[2:])) for r in logs)
        start = end + 1
    return out
