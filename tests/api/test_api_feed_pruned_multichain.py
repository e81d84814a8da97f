"""Review h11 (low-medium): seqs come from one sequence shared by every chain (idx.outbox_seq_seq), but the pruned
check compares `since + 1` with the chain's own min(seq). A client that missed nothing — its `since` is
the chain's last pruned row and the seqs after it went to another chain — was refused since_too_old
and had to reload everything over HTTP. Now a per-chain prune watermark (sql/083) decides."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from websockets.asyncio.client import connect

from tests.api.conftest import make_settings
from tests.api.test_api_feed import running, subscribe, trade_row
from tests.api.test_api_feed_resume_fails import frames_until_quiet

pytestmark = [pytest.mark.pg, pytest.mark.redis]
OTHER = 8453


async def test_resume_is_not_refused_for_seqs_of_another_chain(db_dsn: str, redis_url: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    async with running(make_settings(db_dsn, redis_url)) as (_, rt, url):
        a1 = await trade_row(conn, 1, 1)  # the client saw this one
        for b in range(3):  # the other chain's rows take the next seqs
            await conn.execute(
                "INSERT INTO idx.outbox (chain_id, event, rooms, block_number, log_index, block_hash, payload)"
                " VALUES ($1, 'market:created', ARRAY['global:all'], $2, 0, $3, '{}'::jsonb)",
                OTHER,
                b,
                b.to_bytes(32, "big"),
            )
        a2 = await trade_row(conn, 1, 2)
        for _ in range(500):
            if rt.state.hub.head_seq >= a2:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.02)
        await conn.execute("DELETE FROM idx.outbox WHERE seq = $1", a1)  # retention pruned a1 only
        async with connect(url) as ws:
            await subscribe(ws, ["market:1"], since=a1)  # missed exactly a2, which the outbox holds
            frames = await frames_until_quiet(ws)
            assert [(m["type"], m.get("seq")) for m in frames] == [("event", a2), ("replayed", None)], frames
    await conn.close()
