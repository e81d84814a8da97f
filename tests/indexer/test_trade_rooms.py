"""A market trade's feed message goes to its market's creator's room too: the trade moves what the creator's
page shows (market volume, pending dividends), and the API's cache follows the rooms (review s21 hy: that
page was served stale for cache_ttl_s after the trade was announced)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import fold as F
from indexer.decode import MarketCreated, Trade
from tests.indexer.test_property import random_events


def trades_checked(seed: int) -> int:
    """Folds a random chain; asserts every trade of a known market names its creator's room; returns how
    many it checked."""
    rng = random.Random(seed)
    events = [e for n in range(1, 30) for e in random_events(rng, n, rng.randbytes(32))]
    changes = F.fold(F.Snapshot(), events, F.Context(1, journal_above=10**9, outbox_from=0))
    rooms = {(m.block_number, m.log_index): m.rooms for m in changes.messages if m.event == "market:trade"}
    created: dict[int, bytes] = {}
    checked = 0
    for e in events:
        if isinstance(e, MarketCreated):
            created[e.market_id] = e.creator  # the generator may create an id twice: the fold keeps the last
        elif isinstance(e, Trade) and e.market_id in created:  # a trade of a market the index knows
            assert "creator:0x" + created[e.market_id].hex() in rooms[(e.block_number, e.log_index)]
            checked += 1
    return checked


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_a_trade_message_names_its_markets_creator(seed: int) -> None:
    trades_checked(seed)


def test_the_generated_chains_trade_in_known_markets() -> None:
    """The property above is not vacuous: its chains hold trades of markets created before them."""
    assert sum(trades_checked(seed) for seed in range(20)) > 20
