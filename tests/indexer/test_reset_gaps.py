"""Review hi: `python -m indexer reset` ("delete everything the indexer wrote for the chain", cli.py; also
the re-scan's repair, upkeep.py) keeps the chain's open outbox gap (idx.outbox_gaps). The re-index
from the deploy block then merges into that stale stretch (outbox_gap.advance adds the old `events` to
the new count), so the `chain:gap` message finally announced counts the skipped stretch's events twice."""

from __future__ import annotations

import asyncpg
import pytest

from indexer import outbox_gap
from indexer.maintenance import reset_chain

pytestmark = [pytest.mark.pg]


async def test_reset_forgets_the_open_outbox_gap(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        # a backfill was interrupted inside a stretch without messages: blocks 1..5000, 1200 events
        await outbox_gap.save(conn, 31337, outbox_gap.Gap(1, 5000, 1200))
        await reset_chain(conn, 31337)
        left = await outbox_gap.load(conn, 31337)
        # the re-index then skips the same blocks again (say blocks 1..5000, the same 1200 events)
        again, _ = outbox_gap.advance(left, 1, 5000, 6000, {b: 1 for b in range(1, 1201)})
        assert left is None, (
            f"reset kept the chain's open outbox gap {left}: after re-indexing the same stretch the gap"
            f" says {again.events if again else None} events, not 1200"
        )
    finally:
        await conn.close()
