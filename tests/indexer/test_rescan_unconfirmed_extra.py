"""Review hr (independent fault injector): the re-scan's repair of finalized ranges.

docs/indexer.md, Completeness: "Stored logs the node does not report (a phantom a lying provider added)
are repaired the same way only when a read from another provider confirms it; with one provider they
are alerted on (rescan_extra_unconfirmed): a node dropping logs would otherwise make the indexer wipe
true events." """

from __future__ import annotations

from pathlib import Path

import pytest

from tests.indexer.faultproxy import Faults
from tests.indexer.helpers import Node, fetch, index_to_head, make_settings, sim
from tests.indexer.lying_proxies import HidingProxy
from tests.indexer.test_faults import QUIET, execute, run_until_head

pytestmark = [pytest.mark.anvil, pytest.mark.pg]


def test_one_provider_dropping_a_stored_log_cannot_wipe_it_when_another_log_is_missing(
    node: Node, db_dsn: str, tmp_path: Path
) -> None:
    """One provider. The index lacks one true trade M (an earlier drop: deleted here) and holds another
    true trade L. Now the only provider reports M but drops L (consistently). The extra L is unconfirmed
    (one provider: no second provider can confirm it is not on the chain), so L must stay. The missing M
    is confirmed by the second read, and the repair re-indexes from the deploy block through the same
    provider: L, a true stored event, is wiped on the word of the one provider that drops it."""
    sim(node.url, node.deployment, seed=81, max_events=30)
    assert index_to_head(make_settings(node.url, node.deployment, db_dsn, tmp_path, rescan_interval=0)) == 0
    trades = fetch(db_dsn, "SELECT block_number, log_index FROM idx.ev_trade ORDER BY block_number, log_index")
    assert len(trades) >= 4
    m, lost = trades[1], trades[-1]
    assert m["block_number"] != lost["block_number"]
    execute(
        db_dsn, f"DELETE FROM idx.ev_trade WHERE block_number = {m['block_number']} AND log_index = {m['log_index']}"
    )
    node.anvil.mine(70)  # every event final
    proxy = HidingProxy(node.url, 81, Faults(**QUIET, range_cap=10**6))
    proxy.hidden = {(lost["block_number"], lost["log_index"])}
    try:
        s = make_settings(proxy.url, node.deployment, db_dsn, tmp_path, rescan_interval=1e-6)
        assert run_until_head(s) == 0
    finally:
        proxy.stop()
    assert proxy.counts.get("hidden", 0) > 0
    kept = fetch(
        db_dsn,
        "SELECT 1 FROM idx.ev_trade WHERE block_number = $1 AND log_index = $2",
        lost["block_number"],
        lost["log_index"],
    )
    assert kept, (
        f"true trade {lost['block_number']}:{lost['log_index']}, stored, was wiped by a re-index on the word of"
        " the only provider, which drops it (its absence was never confirmed by another provider)"
    )
