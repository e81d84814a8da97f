"""Review of 3a07a05 (replica behind the primary): the guard compares only outbox seqs. Claims and
withdrawals have no outbox row: the pump invalidates their keys from the checkpoint
(api/outbox.py _unannounced). An answer read on a replica that does not hold the claim yet has
held_seq == pump.last_seq, is cached after the only invalidation the claim gets, and is served
after the replica caught up."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings
from tests.api.rows import CHAIN, NOW, TRADER, h, head

pytestmark = [pytest.mark.pg, pytest.mark.redis]

ADDR = "0x" + TRADER.hex()


async def _claim(dsn: str) -> None:
    """The indexer's commit of a WinningsClaimed at block 101 (no outbox row, the checkpoint moves)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """INSERT INTO idx.ev_winnings_claimed (chain_id, block_number, log_index, block_hash, tx_hash,
                   block_time, market_id, holder, payout, yes_burned, no_burned)
               VALUES ($1, 101, 0, $2, $3, $4, 2, $5, 7000000, 10000000, 0)""",
            CHAIN,
            h(101),
            h(0xC1A1),
            NOW,
            TRADER,
        )
        await head(conn, 101, safe=90, finalized=80)
    finally:
        await conn.close()


def _kinds(c: TestClient) -> list[str]:
    r = c.get(f"/v1/users/{ADDR}/activity")
    assert r.status_code == 200, r.text
    return [item["kind"] for item in r.json()["data"]] + ["x-cache=" + r.headers.get("x-cache", "")]


def test_a_claim_invalidation_is_not_undone_by_a_replica_behind_the_primary(
    db_dsn: str, replica_dsn: str, redis_url: str
) -> None:
    settings = dataclasses.replace(make_settings(db_dsn, redis_url), read_dsn=replica_dsn)
    with TestClient(create_app(settings, serve_feed=False), raise_server_exceptions=False) as c:
        state = c.app.state.runtime.state  # type: ignore[attr-defined]
        assert "winnings_claimed" not in _kinds(c)
        key = f"user:{ADDR}"
        generation = state.cache.generation

        asyncio.run(_claim(db_dsn))  # committed on the primary; the pump sees the checkpoint move
        state.chains[CHAIN].pump.wake()
        for _ in range(300):
            if state.cache.key_generation.get(key, 0) > generation or state.cache.all_generation > generation:
                break
            time.sleep(0.05)
        assert state.cache.key_generation.get(key, 0) > generation, "the pump did not invalidate the user"
        assert "winnings_claimed" not in _kinds(c)  # the replica lags: the pre-claim answer, fair enough

        asyncio.run(_claim(replica_dsn))  # the replica replays the claim
        kinds = _kinds(c)
        assert "winnings_claimed" in kinds, "pre-claim activity kept from the replica's lag: " + repr(kinds)
