"""Review hr (independent fault injector): a reorg whose first replaced block is the one just above the
finalized block the checkpoint stores (its floor).

A backfill batch that straddles finality keeps the headers above the finalized block, its last block and
its blocks with events; the finalized block itself (the floor, the common ancestor of any reorg that is
still allowed) is stored only if it had events or ended the batch. A reorg replacing floor + 1 .. head
is above finality, so it must be rolled back; the indexer cannot find its ancestor and exits 3
(ReorgTooDeep) instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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


@pytest.mark.parametrize("finality", ["tag", "depth"])
def test_a_reorg_just_above_the_floor_of_a_straddling_backfill_batch_is_rolled_back(
    finality: str, node: Node, db_dsn: str, fresh_db: Any, tmp_path: Path
) -> None:
    sim(node.url, node.deployment, seed=71, max_events=20)
    mid = open_market(node)
    node.anvil.mine(100)  # the finalized block (head - 64) is an empty block in the middle of one range
    s = make_settings(node.url, node.deployment, db_dsn, tmp_path, finality=finality)
    assert index_to_head(s) == 0
    (cp,) = fetch(db_dsn, "SELECT block_number, finalized_block FROM idx.checkpoints")
    floor = cp["finalized_block"]
    assert floor == cp["block_number"] - 64, cp
    stored = {r["block_number"] for r in fetch(db_dsn, "SELECT block_number FROM idx.blocks")}
    # every block above the floor is a block we may be asked to roll back to; the floor is its lowest
    reorg(node, 64, [(buy_request(node, mid, 3, 2_000_000), 0)])  # replaces floor + 1 .. head: not final
    code = index_to_head(s)
    assert code == 0, (
        f"exit {code} (3 = ReorgTooDeep) on a reorg above the finalized block {floor}: the floor block"
        f" stored? {floor in stored}"
    )
    want_dsn = fresh_db()
    assert index_to_head(make_settings(node.url, node.deployment, want_dsn, tmp_path)) == 0
    assert_same_index(dump(db_dsn), dump(want_dsn))
