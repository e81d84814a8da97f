"""The outbox's "chain:gap" message: a stretch indexed without per-event messages, announced once.

Events more than outbox_max_lag blocks behind the head get no outbox rows (a backfill would
otherwise format and publish millions of stale messages). Feed clients and the API's cache must
still learn that something changed: when such a stretch ends (the first batch that reaches into
the window again), that batch's transaction writes ONE message before its own:

    event "chain:gap", rooms ["global:all"], payload {chainId, fromBlock, toBlock, events}

While the stretch is open its extent is kept in idx.outbox_gaps, written in each batch's own
transaction, so a restart in the middle announces the whole stretch, not only its last part.

    advance(gap, first, last, outbox_from, counts) -> (open gap, gap closed by this batch)   (pure)
    load(conn, chain_id) / save(conn, chain_id, gap | None)                                   (SQL)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import asyncpg

from indexer.fold import Message

EVENT = "chain:gap"


@dataclasses.dataclass(frozen=True, slots=True)
class Gap:
    from_block: int
    to_block: int
    events: int


def advance(
    gap: Gap | None, first: int, last: int, outbox_from: int, counts: Mapping[int, int]
) -> tuple[Gap | None, Gap | None]:
    """After a batch of blocks first..last whose events below `outbox_from` got no messages: the gap
    still open, and the gap this batch closes (it reaches outbox_from) if any."""
    skipped_to = min(last, outbox_from - 1)
    if skipped_to >= first:
        n = sum(c for b, c in counts.items() if first <= b <= skipped_to)
        gap = Gap(first if gap is None else min(gap.from_block, first), skipped_to, n + (gap.events if gap else 0))
    if gap is not None and last >= outbox_from:
        return None, gap
    return gap, None


def message(chain_id: int, gap: Gap) -> Message:
    payload = {"chainId": chain_id, "fromBlock": gap.from_block, "toBlock": gap.to_block, "events": gap.events}
    return Message(EVENT, ("global:all",), None, None, None, payload)


async def load(conn: asyncpg.Connection, chain_id: int) -> Gap | None:
    r = await conn.fetchrow("SELECT from_block, to_block, events FROM idx.outbox_gaps WHERE chain_id = $1", chain_id)
    return None if r is None else Gap(r["from_block"], r["to_block"], r["events"])


async def save(conn: asyncpg.Connection, chain_id: int, gap: Gap | None) -> None:
    """The open gap (None: closed), inside the batch's transaction."""
    if gap is None:
        await conn.execute("DELETE FROM idx.outbox_gaps WHERE chain_id = $1", chain_id)
        return
    await conn.execute(
        "INSERT INTO idx.outbox_gaps (chain_id, from_block, to_block, events) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (chain_id) DO UPDATE SET from_block = EXCLUDED.from_block, to_block = EXCLUDED.to_block,"
        " events = EXCLUDED.events",
        chain_id,
        gap.from_block,
        gap.to_block,
        gap.events,
    )
