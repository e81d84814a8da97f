"""Outbox retention (indexer.outbox_retention_hours): the writer deletes its chain's rows older than
the retention while idle at the head, a bounded number per pass; younger rows, other chains' rows
and everything with retention 0 stay."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from indexer import maintenance
from tests.indexer.helpers import Node, fetch, index_to_head, make_settings, sim

pytestmark = [pytest.mark.anvil, pytest.mark.pg]

OTHER_CHAIN = 999


def add_rows(dsn: str, chain_id: int, hours_ago: float, n: int) -> None:
    fetch(
        dsn,
        "INSERT INTO idx.outbox (chain_id, event, rooms, payload, created_at)"
        " SELECT $1, 'chain:finalized', '{global:all}', '{}', now() - make_interval(secs => $2)"
        " FROM generate_series(1, $3)",
        chain_id,
        hours_ago * 3600.0,
        n,
    )


def ages(dsn: str) -> list[tuple[int, bool]]:
    """(chain_id, older than 48 hours) per row."""
    rows = fetch(dsn, "SELECT chain_id, created_at < now() - interval '48 hours' AS old FROM idx.outbox ORDER BY seq")
    return [(r["chain_id"], r["old"]) for r in rows]


def test_old_rows_of_the_chain_are_deleted_at_the_head(node: Node, db_dsn: str, tmp_path: Path) -> None:
    chain_id = node.deployment["chain_id"]
    sim(node.url, node.deployment, seed=3, max_events=20)
    add_rows(db_dsn, chain_id, 100, 5)
    add_rows(db_dsn, chain_id, 1, 2)
    add_rows(db_dsn, OTHER_CHAIN, 100, 1)

    keep_all = make_settings(node.url, node.deployment, db_dsn, tmp_path, outbox_retention_hours=0)
    assert index_to_head(keep_all) == 0
    before = ages(db_dsn)
    assert before.count((chain_id, True)) == 5
    written = before.count((chain_id, False)) - 2
    assert written > 0  # the indexer's own messages for the simulated trades

    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path, outbox_retention_hours=48)) == 0
    after = ages(db_dsn)
    assert (chain_id, True) not in after
    assert after.count((chain_id, False)) == written + 2
    assert after.count((OTHER_CHAIN, True)) == 1


def test_a_pass_deletes_at_most_prune_rows(db_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(maintenance, "PRUNE_ROWS", 2)
    add_rows(db_dsn, 31337, 10, 5)
    add_rows(db_dsn, 31337, 0, 1)

    async def passes() -> list[int]:
        conn = await asyncpg.connect(db_dsn)
        try:
            return [await maintenance.prune_outbox(conn, 31337, 5.0) for _ in range(4)]
        finally:
            await conn.close()

    assert asyncio.run(passes()) == [2, 2, 1, 0]
    assert ages(db_dsn) == [(31337, False)]
