"""Review hr (independent fault injector): what the feed hears when the re-scan's repair removes an event.

A provider added a phantom log (a copy of a true one at another log index); it was indexed and its
message (market:trade, shares:trade, …) went out on the outbox. Once final, the re-scan finds it and,
a second provider confirming, repairs by re-indexing from the deploy block (maintenance.reset_chain then
a backfill). docs/feed.md: a client de-duplicates and *retracts by id*; the only retraction is
chain:reorg's `removed` list, and the only "refetch this range" is chain:gap. The repair writes neither
for an event inside the feed window (outbox_max_lag, 256 blocks: finalized blocks are 64 behind), so
every client and the API's caches keep the phantom event for good."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.indexer.faultproxy import Faults
from tests.indexer.helpers import Node, fetch, index_to_head, make_settings, sim
from tests.indexer.test_faults import run_until_head
from tests.indexer.test_provider_lies import CLEAN, ForgingProxy

pytestmark = [pytest.mark.anvil, pytest.mark.pg]


def test_a_phantom_event_the_rescan_removes_is_retracted_on_the_feed(node: Node, db_dsn: str, tmp_path: Path) -> None:
    sim(node.url, node.deployment, seed=62, max_events=25)
    proxy = ForgingProxy(node.url, 62, Faults(**CLEAN))
    proxy.phantom = 0.3
    try:
        s = make_settings(proxy.url, node.deployment, db_dsn, tmp_path, rescan_interval=0, initial_span=4, max_span=4)
        assert index_to_head(s) == 0
        proxy.phantom = 0.0
        phantoms = fetch(
            db_dsn,
            "SELECT seq, event, block_number, log_index, block_hash FROM idx.outbox WHERE log_index >= 1000",
        )
        assert phantoms, "no phantom got a feed message"
        node.anvil.mine(70)
        s = make_settings([proxy.url, node.url], node.deployment, db_dsn, tmp_path, rescan_interval=1e-6)
        assert run_until_head(s) == 0
    finally:
        proxy.stop()
    assert not fetch(db_dsn, "SELECT 1 FROM idx.ev_trade WHERE log_index >= 1000"), "repaired"
    later = fetch(
        db_dsn,
        "SELECT event, payload::text AS p FROM idx.outbox WHERE seq > $1 AND event IN ('chain:reorg', 'chain:gap')",
        max(p["seq"] for p in phantoms),
    )
    retracted: set[tuple[int, int]] = set()
    refetch: list[tuple[int, int]] = []
    for r in later:
        p: dict[str, Any] = orjson.loads(r["p"])
        if r["event"] == "chain:reorg":
            retracted |= {(b, li) for _, b, li, _ in p["removed"]}
        else:
            refetch.append((p["fromBlock"], p["toBlock"]))
    unannounced = [
        (p["event"], p["block_number"], p["log_index"])
        for p in phantoms
        if (p["block_number"], p["log_index"]) not in retracted
        and not any(a <= p["block_number"] <= b for a, b in refetch)
    ]
    assert not unannounced, (
        f"{len(unannounced)} of {len(phantoms)} phantom events the repair removed were announced on the feed and"
        f" never retracted (no chain:reorg listing them, no chain:gap over their blocks): {unannounced[:5]}"
    )
