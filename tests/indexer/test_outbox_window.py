"""Review h9 (medium): one `latest` answered far ahead (a backend of another network, a proxy's glitch: the case
review h2 made finality immune to) still decides which events get feed messages. outbox_from is
heads.head - outbox_max_lag with the head taken from that single answer, so the live events committed
while the lie is current get no per-event outbox message at all: a chain:gap is written instead, and
the feed's subscribers (market:{id}, user:{a} rooms) never see those trades and creations. A fresh
index of the same chain with honest answers writes their messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.indexer.faultproxy import Faults
from tests.indexer.helpers import Node, fetch, index_to_head, make_settings, open_market
from tests.indexer.test_provider_lies import CLEAN, ForgingProxy


def _messages(dsn: str) -> tuple[int, int]:
    rows = fetch(dsn, "SELECT event FROM idx.outbox WHERE chain_id = 31337")
    return sum(r["event"] == "market:created" for r in rows), sum(r["event"] == "chain:gap" for r in rows)


@pytest.mark.anvil
@pytest.mark.pg
@pytest.mark.parametrize("lies", [0, 4])  # 0: the honest control (passes)
def test_one_head_answer_far_ahead_does_not_silence_the_feed(
    lies: int, node: Node, db_dsn: str, tmp_path: Path
) -> None:
    node.anvil.mine(5)
    proxy = ForgingProxy(node.url, 9, Faults(**CLEAN))
    try:
        s = make_settings(proxy.url, node.deployment, db_dsn, tmp_path)
        assert index_to_head(s) == 0  # honest: at the head
        before, gaps_before = _messages(db_dsn)
        open_market(node)  # a live MarketCreated, well inside outbox_max_lag (256) of the head
        node.anvil.mine(80)  # the indexer was down a few minutes: more than one range behind
        # the start-up check's and start's two head reads, and the first step's: one backend 1000 ahead
        proxy.ahead = {"latest": lies}
        assert index_to_head(s) == 0
        assert proxy.counts.get("ahead_latest", 0) == lies
    finally:
        proxy.stop()
    created, gaps = _messages(db_dsn)
    assert (created - before, gaps - gaps_before) == (1, 0), (
        f"live market creation: {created - before} market:created message(s), {gaps - gaps_before} chain:gap"
        f" after {lies} head read(s) 1000 blocks ahead (an honest index writes 1 and 0)"
    )
