"""Rows folded blind (fold.Keys.blind / blind_holdings: positions a batch below finality only buys
into, holdings it only trades) equal rows folded over their stored values, once fold.apply_delta adds
the delta."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import fold as F
from indexer.decode import DividendsClaimed, DividendsDistributed, Event, MarketResolved, SharesTraded, Trade
from tests.indexer.test_property import random_events

NO_JOURNAL = F.Context(1, journal_above=10**9, outbox_from=0)


def snapshot_for(keys: F.Keys, state: F.Changes, blind: bool) -> F.Snapshot:
    """What store.load_snapshot reads for `keys` from a database holding `state`."""
    wanted = keys.positions if blind else keys.positions | keys.blind
    wanted_holdings = keys.holdings if blind else keys.holdings | keys.blind_holdings
    positions = {k: F.clone(r) for k, r in state.positions.items() if k in wanted or k[0] in keys.market_positions}
    holdings = {
        k: F.clone(r) for k, r in state.holdings.items() if k in wanted_holdings or k[0] in keys.creator_holdings
    }
    creators = {c: F.clone(r) for c, r in state.creators.items()}
    markets = {m: F.clone(r) for m, r in state.markets.items()}
    if not blind:
        return F.Snapshot(markets, positions, creators, holdings)
    return F.Snapshot(markets, positions, creators, holdings, blind=keys.blind, blind_holdings=keys.blind_holdings)


def chain(seed: int, blocks: range) -> list[Event]:
    rng = random.Random(seed)
    return [e for n in blocks for e in random_events(rng, n, rng.randbytes(32))]


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), history=st.integers(0, 40), batch=st.integers(1, 30))
def test_blind_fold_plus_stored_row_equals_fold_over_stored_row(seed: int, history: int, batch: int) -> None:
    stored = F.fold(F.Snapshot(), chain(seed, range(1, history + 1)), NO_JOURNAL)
    events = chain(seed + 1, range(history + 1, history + batch + 1))
    keys = F.keys_of(events, blind=True)
    want = F.fold(snapshot_for(keys, stored, blind=False), events, NO_JOURNAL)
    got = F.fold(snapshot_for(keys, stored, blind=True), events, NO_JOURNAL)
    assert got.positions.keys() == want.positions.keys()
    for k, row in want.positions.items():
        assert (
            F.apply_delta(stored.positions.get(k), got.positions[k]) if k in keys.blind else got.positions[k]
        ) == row
    assert got.holdings.keys() == want.holdings.keys()
    for k, h in want.holdings.items():
        blind = k in keys.blind_holdings
        assert (F.apply_delta(stored.holdings.get(k), got.holdings[k]) if blind else got.holdings[k]) == h
    assert (got.markets, got.creators) == (want.markets, want.creators)
    assert got.notifications == want.notifications
    assert got.messages == want.messages


def trade(block: int, trader: bytes, is_buy: bool) -> Trade:
    h = (block, 0, b"\x01" * 32, b"\x02" * 32, 1_000 + block)
    return Trade(*h, 1, trader, is_buy, 1, 10, 9, 1, 100, 100, 9, 0, 0)


def test_only_buy_only_positions_are_blind() -> None:
    a, b, c = b"\xaa" * 20, b"\xbb" * 20, b"\xcc" * 20
    events: list[Event] = [trade(1, a, True), trade(1, b, True), trade(2, b, False), trade(2, c, True)]
    assert F.keys_of(events, blind=True).blind == {(1, a), (1, c)}
    assert F.keys_of(events, blind=True).positions == {(1, b)}
    assert F.keys_of(events).blind == frozenset()  # only when the caller says the batch is final
    resolved = [*events, MarketResolved(3, 0, b"\x01" * 32, b"\x02" * 32, 1_003, 1, 1, a)]
    assert F.keys_of(resolved, blind=True).blind == frozenset()  # its holders are all read


def shares(block: int, creator: bytes, trader: bytes, is_buy: bool) -> SharesTraded:
    h = (block, 1, b"\x01" * 32, b"\x02" * 32, 1_000 + block)
    return SharesTraded(*h, creator, trader, is_buy, 1, 10, 1, 1, 1, 5, 2 if is_buy else 0, 3, 4, 7, 8, 0)


def test_only_traded_holdings_are_blind() -> None:
    c, d, a, b = b"\xc0" * 20, b"\xd0" * 20, b"\xaa" * 20, b"\xbb" * 20
    events: list[Event] = [shares(1, c, a, True), shares(1, c, b, True), shares(2, c, b, False), shares(2, d, a, True)]
    assert F.keys_of(events, blind=True).blind_holdings == {(c, a), (c, b), (d, a)}
    claim = DividendsClaimed(3, 0, b"\x01" * 32, b"\x02" * 32, 1_003, c, a, 5)
    assert F.keys_of([*events, claim], blind=True).blind_holdings == {(c, b), (d, a)}  # a claim reads the row
    distribution = DividendsDistributed(3, 0, b"\x01" * 32, b"\x02" * 32, 1_003, c, 1, 2, 3, 4, 5)
    assert F.keys_of([*events, distribution], blind=True).blind_holdings == {(d, a)}  # c's holders are all read
    assert F.keys_of(events).blind_holdings == frozenset()


def test_a_blind_position_above_the_journal_floor_is_refused() -> None:
    a = b"\xaa" * 20
    keys = F.keys_of([trade(5, a, True)], blind=True)
    snap = F.Snapshot(blind=keys.blind)
    with pytest.raises(ValueError, match="above the journal floor"):
        F.fold(snap, [trade(5, a, True)], F.Context(1, journal_above=4, outbox_from=0))


def test_apply_delta_adds_amounts_and_takes_balances() -> None:
    base = F.PositionRow(1, b"\xaa" * 20, 5, 6, 7, 8, 9, 10, -11, 12, 13, 14)
    delta = F.PositionRow(1, b"\xaa" * 20, 50, 60, 70, 80, 90, 0, 0, 0, 2, 20)
    got = F.apply_delta(base, delta)
    assert dataclasses.astuple(got) == (1, b"\xaa" * 20, 50, 60, 77, 88, 99, 10, -11, 12, 15, 20)
    assert F.apply_delta(None, delta) == delta
    assert F.apply_delta(None, delta) is not delta
    columns: Any = {f.name for f in dataclasses.fields(F.PositionRow)}
    assert F.DELTA_SETS["positions"] <= columns


def test_apply_delta_to_a_holding_sets_all_but_claimed_total() -> None:
    """Every holding column a share trade sets from the event's post-state (the warm-up's lots and their marks
    included: a pending lot is never added to a stored one) takes the delta's value; claimed_total adds."""
    base = F.HoldingRow(b"\xc0" * 20, b"\xaa" * 20, 5, 6, 7, 8, 9, 10, 3, 4, 86_400, 11, 12)
    delta = F.HoldingRow(b"\xc0" * 20, b"\xaa" * 20, 50, 60, 70, 80, 0, 20, 1, 2, 172_800, None, None)
    assert dataclasses.astuple(F.apply_delta(base, delta)) == (
        b"\xc0" * 20,
        b"\xaa" * 20,
        *(50, 60, 70, 80, 9, 20, 1, 2, 172_800, None, None),
    )
    columns: Any = {f.name for f in dataclasses.fields(F.HoldingRow)}
    assert F.DELTA_SETS["share_holdings"] <= columns


def test_a_distribution_notifies_only_the_holders_it_credited() -> None:
    """A DividendsDistributed notifies each holder credited at least one unit; one that only started
    market fees vesting (amount 0) notifies nobody, and a holder whose credit rounds to 0 is skipped
    (before: every holder got "0.000000 USDC to you")."""
    c, big, small = b"\xc0" * 20, b"\xaa" * 20, b"\xbb" * 20
    events: list[Event] = [shares(1, c, big, True), shares(1, c, small, True)]
    stored = F.fold(F.Snapshot(), events, NO_JOURNAL)
    stored.holdings[(c, big)].shares = 10**6
    stored.holdings[(c, small)].shares = 1
    h = (2, 0, b"\x01" * 32, b"\x02" * 32, 1_002)
    acc = stored.creators[c].acc_per_share
    snapshot = F.Snapshot({}, {}, dict(stored.creators), dict(stored.holdings))
    started = F.fold(snapshot, [DividendsDistributed(*h, c, 0, 5, 10**6 + 1, acc, 5)], NO_JOURNAL)
    assert started.notifications == []
    snapshot = F.Snapshot({}, {}, dict(stored.creators), dict(stored.holdings))
    tiny = F.fold(snapshot, [DividendsDistributed(*h, c, 1, 0, 10**6 + 1, acc + 10**12, 0)], NO_JOURNAL)
    assert [n.recipient for n in tiny.notifications] == [big]  # 10**6 x 1e-6 = 1 unit; 1 x 1e-6 rounds to 0
    assert tiny.notifications[0].amount == 1
