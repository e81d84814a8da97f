"""Review hr (independent fault injector): a reorg that removes blocks of an open chain:gap stretch.

docs/indexer.md, "Stretches without feed messages": the one chain:gap message of a stretch carries
`events`, the events indexed in fromBlock..toBlock without messages of their own; docs/feed.md tells
clients to refetch what the range touched. A rollback (reorg.rollback) deletes the stretch's blocks above
the ancestor but leaves idx.outbox_gaps (and the writer's open gap) as they were: the removed branch's
events stay counted, and the re-indexed blocks are counted again."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from indexer.rows import EV_TABLES
from tests.indexer.helpers import Node, buy_request, fetch, index_to_head, make_settings, open_market, reorg, sim
from tests.indexer.test_reorg import Background, wait_indexed

pytestmark = [pytest.mark.anvil, pytest.mark.pg]


def test_a_reorg_inside_an_open_gap_does_not_count_the_removed_events(node: Node, db_dsn: str, tmp_path: Path) -> None:
    sim(node.url, node.deployment, seed=91, max_events=10)
    mid = open_market(node)
    for i in range(60):  # one trade per block at the end of the chain
        node.w3.eth.send_transaction(buy_request(node, mid, i, 1_000_000 + i))  # automine: a block each
    head = node.anvil.head()
    s = make_settings(
        node.url,
        node.deployment,
        db_dsn,
        tmp_path,
        initial_span=1,
        max_span=1,
        concurrency=1,
        tip_blocks=0,
        outbox_max_lag=10,
        rescan_interval=0,
    )
    bg = Background(s)
    try:
        wait_indexed(db_dsn, head - 30)
    finally:
        assert bg.stop() == 0
    (gap,) = fetch(db_dsn, "SELECT from_block, to_block, events FROM idx.outbox_gaps")
    assert gap["to_block"] >= head - 30  # a stretch still open, its last blocks hold trades
    reorg(node, 50)  # blocks head-49 .. head replaced by empty ones: above finality (head - 64)
    assert index_to_head(s) == 0
    msgs = fetch(db_dsn, "SELECT payload::text AS p FROM idx.outbox WHERE event = 'chain:gap' ORDER BY seq")
    assert msgs
    union = " UNION ALL ".join(f"SELECT block_number FROM idx.{t}" for t in EV_TABLES)
    for m in msgs:
        p = orjson.loads(m["p"])
        (n,) = fetch(
            db_dsn,
            f"SELECT count(*) AS n FROM ({union}) u WHERE block_number BETWEEN $1 AND $2",
            p["fromBlock"],
            p["toBlock"],
        )
        assert p["events"] == n["n"], (
            f"chain:gap {p} announces {p['events']} events, the index holds {n['n']} in that range: the"
            " removed branch's events stayed counted"
        )
