"""Review h11 (high): when retention has pruned EVERY row of the chain (a quiet chain: all rows older than
outbox_retention_hours; prune_outbox deletes the newest too), min(seq) is NULL and the `since + 1 <
oldest` check was skipped: a client that missed events answers `replayed ... events: 0` — complete in
appearance — and silently lacks them. docs/feed.md: "If the outbox no longer holds since + 1 ... the
answer is since_too_old"."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from websockets.asyncio.client import connect

from indexer.maintenance import prune_outbox
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN
from tests.api.test_api_feed import running, subscribe, trade_row
from tests.api.test_api_feed_resume_fails import frames_until_quiet

pytestmark = [pytest.mark.pg, pytest.mark.redis]


async def test_resume_after_every_missed_row_was_pruned_is_refused(db_dsn: str, redis_url: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    async with running(make_settings(db_dsn, redis_url)) as (_, rt, url):
        seqs = [await trade_row(conn, 1, b) for b in range(1, 6)]
        for _ in range(500):
            if rt.state.hub.head_seq >= seqs[-1]:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.02)
        # the client saw seqs[0] and went away for four days; the chain was quiet since seqs[-1]
        await conn.execute("UPDATE idx.outbox SET created_at = now() - interval '96 hours'")
        assert await prune_outbox(conn, CHAIN, 72) == 5  # the indexer's retention pass
        async with connect(url) as ws:
            await subscribe(ws, ["market:1"], since=seqs[0])
            frames = await frames_until_quiet(ws)
            # four events (seqs[1:]) are gone: it must not look complete
            assert [(m["type"], m.get("code")) for m in frames] == [("error", "since_too_old")], frames
    await conn.close()
