"""An initial sync drops the readers' secondary indexes and builds them at the head (maintenance.defer_indexes):
every index comes back with its definition, a sync interrupted while they are deferred finishes the job,
and a database shared with other chains keeps them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from indexer import maintenance, rows
from indexer.metrics import Metrics
from indexer.service import Indexer, Status
from tests.indexer.helpers import Node, fetch, index_definitions, index_to_head, indexes, make_settings, sim

pytestmark = [pytest.mark.anvil, pytest.mark.pg]


def test_initial_sync_rebuilds_every_deferred_index(node: Node, db_dsn: str, tmp_path: Path) -> None:
    sim(node.url, node.deployment, seed=3, max_events=40, resolve=True)
    before = indexes(db_dsn)
    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path, initial_span=5)) == 0
    after = indexes(db_dsn)
    assert {n: d for n, (d, _) in after.items()} == {n: d for n, (d, _) in before.items()}
    assert fetch(db_dsn, "SELECT * FROM idx.deferred_indexes") == []
    rebuilt = {n for n in before if after[n][1] != before[n][1]}  # a new oid: dropped and built again
    assert "ev_trade_trader" in rebuilt
    assert "markets_question_trgm" in rebuilt
    assert not rebuilt & {*maintenance.KEPT_INDEXES, "ev_trade_pkey", "positions_pkey"}
    # analyzed once the indexes are back (not while deferred): the readers' plans have statistics
    analyzed = fetch(db_dsn, "SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = 'idx'")
    assert {r["tablename"] for r in analyzed} >= set(rows.DERIVED)


def test_sync_interrupted_while_deferred_builds_them_at_the_head(node: Node, db_dsn: str, tmp_path: Path) -> None:
    """A run that stopped with indexes deferred (a crash mid-sync): the next one builds them."""
    sim(node.url, node.deployment, seed=4, max_events=30)
    defs = index_definitions(db_dsn)

    async def defer() -> list[str]:
        conn = await asyncpg.connect(db_dsn)
        try:
            return await maintenance.defer_indexes(conn, node.deployment["chain_id"])
        finally:
            await conn.close()

    dropped = asyncio.run(defer())
    assert "ev_trade_market" in dropped
    assert index_definitions(db_dsn) == defs  # nothing lost: built or remembered
    assert not set(dropped) & set(indexes(db_dsn))
    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path, initial_span=5)) == 0
    assert {n: d for n, (d, _) in indexes(db_dsn).items()} == defs
    assert fetch(db_dsn, "SELECT * FROM idx.deferred_indexes") == []


def test_a_reader_holding_a_table_keeps_the_indexes(node: Node, db_dsn: str, tmp_path: Path) -> None:
    """A DROP INDEX waits for every reader of its table, and readers arriving later queue behind it:
    with an analyst's transaction open on idx.ev_trade the initial sync gives up deferring after
    maintenance.DROP_LOCK_WAIT, drops nothing (every index keeps its oid) and indexes to the head."""
    sim(node.url, node.deployment, seed=6, max_events=20)
    before = indexes(db_dsn)

    async def main() -> int:
        analyst = await asyncpg.connect(db_dsn)
        try:
            async with analyst.transaction():
                await analyst.fetch("SELECT count(*) FROM idx.ev_trade")  # ACCESS SHARE until commit
                settings = make_settings(node.url, node.deployment, db_dsn, tmp_path, initial_span=5)
                return await asyncio.to_thread(index_to_head, settings)
        finally:
            await analyst.close()

    assert asyncio.run(main()) == 0
    assert indexes(db_dsn) == before  # nothing dropped, nothing rebuilt
    assert fetch(db_dsn, "SELECT * FROM idx.deferred_indexes") == []
    assert fetch(db_dsn, "SELECT count(*) AS n FROM idx.ev_trade")[0]["n"] > 0


def test_other_chains_in_the_database_keep_the_indexes(node: Node, db_dsn: str, tmp_path: Path) -> None:
    sim(node.url, node.deployment, seed=5, max_events=20)
    fetch(db_dsn, "INSERT INTO idx.checkpoints (chain_id, block_number, block_hash) VALUES (8453, 0, '\\x00')")
    before = indexes(db_dsn)
    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path, initial_span=5)) == 0
    assert indexes(db_dsn) == before  # same oids: never dropped


def test_stop_while_building_leaves_the_rest_deferred(
    node: Node, db_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the indexes are built (two connections at once): the builds in flight are
    cancelled or finish, every index is built or still remembered, and the next call builds the rest."""
    sim(node.url, node.deployment, seed=6, max_events=30)
    defs = index_definitions(db_dsn)
    settings = make_settings(node.url, node.deployment, db_dsn, tmp_path)
    stop = asyncio.Event()
    real_restore = maintenance.restore_index
    built: list[str] = []

    async def restore_then_stop(conn: asyncpg.Connection, name: str, sort_memory: str = "256MB") -> bool:
        done = await real_restore(conn, name, sort_memory)
        built.append(name)
        stop.set()  # the operator's SIGTERM arrives after the first build
        return done

    async def scenario() -> tuple[list[str], list[str]]:
        monkeypatch.setattr(maintenance, "restore_index", restore_then_stop)
        conn = await asyncpg.connect(db_dsn)
        try:
            indexer = Indexer(settings, None, Metrics(31337, CollectorRegistry()), Status())  # type: ignore[arg-type]
            indexer.deferred = await maintenance.defer_indexes(conn, node.deployment["chain_id"])
            await indexer.restore_indexes(conn, stop)
            left = list(indexer.deferred)
            monkeypatch.setattr(maintenance, "restore_index", real_restore)
            await indexer.restore_indexes(conn, asyncio.Event())
            return left, indexer.deferred
        finally:
            await conn.close()

    left, after = asyncio.run(scenario())
    assert 1 <= len(built) <= 2  # one build per connection at most was under way
    assert left
    assert not set(left) & set(built)
    assert after == []
    assert {n: d for n, (d, _) in indexes(db_dsn).items()} == defs
    assert fetch(db_dsn, "SELECT * FROM idx.deferred_indexes") == []
