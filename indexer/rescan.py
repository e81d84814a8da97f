"""Background re-scan of finalized blocks: the events a node reports for a range, compared with the
events stored for it.

A provider that silently dropped logs (a lying or pruned node behind a load balancer) leaves a
finalized range incomplete for good: nothing else reads it again. The indexer, while idle at the
head, reads the next `rescan_span` finalized blocks again (indexer/upkeep.py: Upkeep.rescan) and
compares event identities (block number, log index, block hash) with what it stored.

    compare(stored, node) -> Diff                                     (pure)
    stored_identities(conn, chain_id, a, b) -> set[Identity]          (SQL)
    node_identities(rpc, a, b, addresses, span, avoid) -> (set[Identity], providers that answered)
                                                                      (RPC; ranges split when refused)

A log the node reports whose topic0 is not an event of abi/ for its address is a bad answer (asked
again, of another provider when there is one), never a "missing" event: a lying provider could
otherwise make the repair wipe the index with a log it made up. The repair needs a second read that
confirms the missing logs, from another provider than the first read's when several are configured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg

from indexer.chain import split_span
from indexer.decode import DECODERS
from indexer.rows import EV_TABLES
from indexer.rpc import RangeTooLarge, Rpc, TimedOut, TransientRpcError

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


def our_topics(addresses: Sequence[str]) -> frozenset[tuple[str, str]]:
    """(lowercase address, topic0) of every event of abi/ our two contracts (in that order) emit."""
    names = dict(zip(("OpinionMarket", "CreatorShares"), (a.lower() for a in addresses), strict=False))
    return frozenset(
        (names[contract], "0x" + topic.hex())
        for topic, per in DECODERS.items()
        for contract in per
        if contract in names
    )


async def node_identities(
    rpc: Rpc, a: int, b: int, addresses: Sequence[str], span: int, avoid: frozenset[int] = frozenset()
) -> tuple[set[Identity], frozenset[int]]:
    """Identities of our logs in a..b as the node reports them (each answer from a node that has b),
    and the providers that answered. `avoid`: providers not asked while another is configured."""
    out: set[Identity] = set()
    by: set[int] = set()
    topics = our_topics(addresses)
    start = a
    while start <= b:
        end = min(b, start + span - 1)
        try:
            logs, _ = await rpc.get_logs_checked(start, end, addresses, avoid=avoid, answered_by=by, topics=topics)
        except (RangeTooLarge, TimedOut) as exc:  # a cap, or a range too heavy for the provider
            if end == start:
                raise TransientRpcError(f"re-scan of block {start}: {exc}", exc.code) from None
            suggested = exc.suggested_span if isinstance(exc, RangeTooLarge) else None
            span = split_span(min(span, end - start + 1), suggested)
            continue
        out.update((int(r.blockNumber, 16), int(r.logIndex, 16), bytes.fromhex(r.blockHash[2:])) for r in logs)
        start = end + 1
    return out, frozenset(by)
