"""Review hr (independent fault injector): finality across a restart.

docs/indexer.md, Finality: "The highest finalized block seen is never lowered (a lagging node does not
un-finalize)". Within a process it is not (chain.next_finality keeps the highest); a new process starts
from Heads(0, None, 0), not from the finalized block it stored, so the first node that lags on its
`finalized` tag after a restart lowers idx.chain_heads.finalized_block: the feed and the API
(docs/feed.md: `finality` is computed from idx.chain_heads when a message is sent) then call blocks
`unsafe` that were announced with chain:finalized before the restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.indexer.faultproxy import Faults
from tests.indexer.helpers import Node, fetch, index_to_head, make_settings, sim
from tests.indexer.lying_proxies import LaggingTagsProxy
from tests.indexer.test_faults import QUIET

pytestmark = [pytest.mark.anvil, pytest.mark.pg]


def test_a_node_lagging_on_its_finalized_tag_after_a_restart_does_not_unfinalize(
    node: Node, db_dsn: str, tmp_path: Path
) -> None:
    sim(node.url, node.deployment, seed=95, max_events=15)
    node.anvil.mine(100)
    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path, rescan_interval=0)) == 0
    (before,) = fetch(
        db_dsn,
        "SELECT c.finalized_block AS floor, h.finalized_block AS fin FROM idx.checkpoints c"
        " JOIN idx.chain_heads h USING (chain_id)",
    )
    assert before["fin"] > 0
    proxy = LaggingTagsProxy(node.url, 95, Faults(**QUIET, range_cap=10**6))
    proxy.behind = 50
    try:
        s = make_settings(proxy.url, node.deployment, db_dsn, tmp_path, rescan_interval=0)
        assert index_to_head(s) == 0  # restarted; nothing new to index, idle at the head
    finally:
        proxy.stop()
    assert proxy.counts.get("tag_behind", 0) > 0
    (after,) = fetch(db_dsn, "SELECT finalized_block AS fin FROM idx.chain_heads")
    assert after["fin"] >= before["fin"], (
        f"idx.chain_heads.finalized_block went from {before['fin']} to {after['fin']} across a restart"
        f" (the stored floor is {before['floor']}): blocks announced final are unsafe again"
    )
