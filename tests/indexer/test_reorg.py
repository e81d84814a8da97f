"""Reorgs with anvil_reorg (no removed logs are ever emitted: detection is by hash comparison).

After each scenario the database equals a fresh index of the canonical chain, table by table."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from indexer.service import EXIT_REORG_TOO_DEEP, run
from indexer.settings import Settings
from tests.indexer.helpers import (
    Node,
    assert_same_index,
    buy_request,
    dump,
    fetch,
    index_to_head,
    make_settings,
    open_market,
    reorg,
    sim,
)

pytestmark = [pytest.mark.anvil, pytest.mark.pg]


def fresh_index(node: Node, fresh_db: Any, tmp_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    dsn = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, dsn, tmp_path)) == 0
    return dump(dsn)


def settings_for(node: Node, dsn: str, tmp_path: Path, **opts: Any) -> Settings:
    return make_settings(node.url, node.deployment, dsn, tmp_path, **opts)


def test_shallow_reorg_replacing_events(node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path) -> None:
    """A 3-block reorg whose new blocks carry other trades: old events retracted, new ones indexed."""
    sim(node.url, node.deployment, seed=11, max_events=40)
    mid = open_market(node)
    sim(node.url, node.deployment, seed=12, max_events=20)
    s = settings_for(node, db_dsn, tmp_path)
    assert index_to_head(s) == 0
    reorg(node, 3, [(buy_request(node, mid, 3, 2_000_000), 0), (buy_request(node, mid, 4, 3_000_001), 2)])
    assert index_to_head(s) == 0
    assert_same_index(dump(db_dsn), fresh_index(node, fresh_db, tmp_path))
    rows = fetch(db_dsn, "SELECT payload FROM idx.outbox WHERE event = 'chain:reorg'")
    assert len(rows) == 1
    assert len(fetch(db_dsn, "SELECT * FROM idx.reorgs WHERE depth >= 1")) == 1
    # the messages of the retracted trades stay readable (a resume replays them before chain:reorg), with
    # their own event's data, not the replacement's at the same position (sql/082)
    trades = fetch(
        db_dsn,
        "SELECT m.block_hash, m.payload::text AS p, b.block_hash IS NULL AS retracted FROM idx.outbox_messages m"
        " LEFT JOIN idx.blocks b ON b.chain_id = m.chain_id AND b.block_hash = m.block_hash"
        " WHERE m.event = 'market:trade'",
    )
    retracted = [r for r in trades if r["retracted"]]
    assert retracted
    assert len(retracted) < len(trades)
    for r in trades:
        assert orjson.loads(r["p"])["id"]["block_hash"] == "0x" + bytes(r["block_hash"]).hex()


def test_deep_reorg_up_to_finality_removing_all_events(node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path) -> None:
    """A 60-block reorg (anvil finalizes head - 64) replaced by empty blocks: every event above is gone."""
    node.anvil.mine(70)
    sim(node.url, node.deployment, seed=21, max_events=60)
    s = settings_for(node, db_dsn, tmp_path)
    assert index_to_head(s) == 0
    before = len(fetch(db_dsn, "SELECT 1 FROM idx.ev_trade"))
    reorg(node, 60)
    assert index_to_head(s) == 0
    want = fresh_index(node, fresh_db, tmp_path)
    assert_same_index(dump(db_dsn), want)
    assert len(want["ev_trade"]) < before
    (msg,) = fetch(db_dsn, "SELECT payload FROM idx.outbox WHERE event = 'chain:reorg'")
    assert '"removed"' in msg["payload"]


def test_reorg_while_indexer_stopped_is_found_at_start(node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path) -> None:
    """Stored hashes are verified on start: a reorg that happened while down is rolled back."""
    sim(node.url, node.deployment, seed=31, max_events=40)
    mid = open_market(node)
    s = settings_for(node, db_dsn, tmp_path)
    assert index_to_head(s) == 0
    reorg(node, 5, [(buy_request(node, mid, 5, 1_234_567), 1)])
    assert index_to_head(s) == 0
    assert_same_index(dump(db_dsn), fresh_index(node, fresh_db, tmp_path))


def test_several_reorgs_in_quick_succession(node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path) -> None:
    """Reorgs of varying depth one after the other, indexing in between or not, end equal to a fresh index."""
    sim(node.url, node.deployment, seed=41, max_events=30)
    mid = open_market(node)
    s = settings_for(node, db_dsn, tmp_path, initial_span=2, max_span=4)
    assert index_to_head(s) == 0
    for i, depth in enumerate((2, 7, 1, 4, 9)):
        sim(node.url, node.deployment, seed=42 + i, max_events=8)
        reorg(node, depth, [(buy_request(node, mid, 2 + i, 1_000_000 + i), depth - 1)])
        if i % 2 == 0:
            assert index_to_head(s) == 0
    assert index_to_head(s) == 0
    assert_same_index(dump(db_dsn), fresh_index(node, fresh_db, tmp_path))


class Background:
    """The indexer running in a thread (its own event loop) until stop()."""

    def __init__(self, settings: Settings) -> None:
        self.code: int | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_event: asyncio.Event | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(settings,), daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _main(self, settings: Settings) -> None:
        async def go() -> int:
            self.loop = asyncio.get_running_loop()
            self.stop_event = asyncio.Event()
            self.ready.set()
            return await run(settings, self.stop_event)

        self.code = asyncio.run(go())

    def stop(self) -> int | None:
        assert self.loop is not None
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)
        return self.code


def wait_indexed(dsn: str, block: int, timeout: float = 60, node: Node | None = None) -> None:
    """Waits until the checkpoint reaches `block` (and, given the node, equals its latest block hash)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = fetch(dsn, "SELECT block_number, block_hash FROM idx.checkpoints")
        if rows and rows[0]["block_number"] >= block:
            if node is None:
                return
            latest = node.anvil.call("eth_getBlockByNumber", "latest", False)
            if "0x" + bytes(rows[0]["block_hash"]).hex() == latest["hash"]:
                return
        time.sleep(0.05)
    raise AssertionError(f"checkpoint did not reach {block}")


def test_reorg_below_the_head_while_backfilling(node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path) -> None:
    """A reorg lands while a slow backfill (1-block ranges) is running: the result equals a fresh index."""
    sim(node.url, node.deployment, seed=51, max_events=60)
    mid = open_market(node)
    node.anvil.mine(30)
    head = node.anvil.head()
    s = settings_for(
        node, db_dsn, tmp_path, initial_span=1, max_span=1, concurrency=1, tip_blocks=0, poll_interval=0.05
    )
    bg = Background(s)
    try:
        wait_indexed(db_dsn, head - 40)
        reorg(node, 35, [(buy_request(node, mid, 6, 4_000_000), 3), (buy_request(node, mid, 7, 5_000_000), 30)])
        wait_indexed(db_dsn, node.anvil.head(), node=node)
    finally:
        assert bg.stop() == 0
    assert_same_index(dump(db_dsn), fresh_index(node, fresh_db, tmp_path))


def test_live_tail_over_websocket_with_reorgs(node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path) -> None:
    """Following the tip over newHeads: trades and reorgs at the head end equal to a fresh index."""
    sim(node.url, node.deployment, seed=61, max_events=20)
    mid = open_market(node)
    s = settings_for(node, db_dsn, tmp_path, poll_interval=0.2, ws_url=node.anvil.ws_url)
    bg = Background(s)
    try:
        wait_indexed(db_dsn, node.anvil.head())
        for i in range(4):
            sim(node.url, node.deployment, seed=62 + i, max_events=6)
            wait_indexed(db_dsn, node.anvil.head())
            reorg(node, 1 + i, [(buy_request(node, mid, 8 + i, 700_000 + i), 0)])
        wait_indexed(db_dsn, node.anvil.head(), node=node)
    finally:
        assert bg.stop() == 0
    assert_same_index(dump(db_dsn), fresh_index(node, fresh_db, tmp_path))
    assert fetch(db_dsn, "SELECT count(*) AS n FROM idx.reorgs")[0]["n"] >= 1


def test_reorg_deeper_than_finality_stops_with_exit_code_3(node: Node, db_dsn: str, tmp_path: Path) -> None:
    """With finality = head - 5, a 10-block reorg cannot be undone: the indexer stops loudly (exit 3)."""
    sim(node.url, node.deployment, seed=71, max_events=30)
    node.anvil.mine(3)
    s = settings_for(node, db_dsn, tmp_path, finality="depth")
    s = type(s)(
        s.database,
        s.redis,
        type(s.chain)(**{**{f: getattr(s.chain, f) for f in s.chain.__slots__}, "finality_depth": 5}),
        s.options,
        s.deployment,
        s.metrics_port,
    )
    assert index_to_head(s) == 0
    reorg(node, 10)
    assert asyncio.run(run(s, asyncio.Event(), until_head=True)) == EXIT_REORG_TOO_DEEP
