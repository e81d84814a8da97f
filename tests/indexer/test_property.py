"""Property: any sequence of blocks, reorgs and indexing steps ends equal to a fresh index.

Pure, on an in-memory chain of hashes: the indexer's real pure parts (fold.keys_of, fold.fold with
its undo journal, fold.restore_plan, chain.find_ancestor) driven by a model store with the same
snapshot rules as store.load_snapshot. GL_FUZZ=1 runs many more examples."""

from __future__ import annotations

import copy
import dataclasses
import os
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer import fold as F
from indexer.chain import ReorgTooDeep, find_ancestor
from indexer.decode import (
    CreatorFeesClaimed,
    CreatorFeesCollected,
    DividendsClaimed,
    DividendsDistributed,
    Event,
    LiquidityWithdrawn,
    MarketCreated,
    MarketResolved,
    Merged,
    OutcomeDisputed,
    OutcomeProposed,
    SharesTraded,
    Trade,
    WinningsClaimed,
)

FINALITY = 6
TRADERS = [bytes([i]) * 20 for i in range(1, 5)]
CREATORS = [bytes([0xC0 + i]) * 20 for i in range(2)]
EXAMPLES = 400 if os.environ.get("GL_FUZZ") == "1" else 60


@dataclasses.dataclass
class Block:
    number: int
    hash: bytes
    parent: bytes
    events: list[Event]


def random_events(rng: random.Random, number: int, bhash: bytes) -> list[Event]:
    out: list[Event] = []
    for li in range(rng.randint(0, 4)):
        h = (number, li, bhash, rng.randbytes(32), 1_000 + number)
        kind = rng.randrange(12)
        m = rng.randint(1, 3)
        t, c = rng.choice(TRADERS), rng.choice(CREATORS)
        v = lambda: rng.randint(0, 10**7)  # noqa: E731
        if kind == 0:
            out.append(MarketCreated(*h, m, c, rng.choice(["", "q\x00"]), "", v(), v(), v(), v(), None, None))
        elif kind in (1, 2):
            out.append(
                Trade(*h, m, t, rng.random() < 0.6, rng.randint(0, 1), v(), v() + 1, v(), v(), v(), v(), v(), v())
            )
        elif kind == 3:
            out.append(MarketResolved(*h, m, rng.randint(0, 2), c))
        elif kind == 4:
            out.append(WinningsClaimed(*h, m, t, v(), v(), v()))
        elif kind == 5:
            out.append(
                SharesTraded(
                    *h,
                    c,
                    t,
                    rng.random() < 0.6,
                    v(),
                    v(),
                    v(),
                    v(),
                    v(),
                    v(),
                    rng.randint(0, 3),
                    v(),
                    v(),
                    v(),
                    v() * 10**11,
                    v(),
                )
            )
        elif kind == 6:
            out.append(DividendsDistributed(*h, c, v(), v(), v(), v() * 10**12, v()))
        elif kind == 7:
            out.append(DividendsClaimed(*h, c, t, v()))
        elif kind == 8:
            out.append(CreatorFeesCollected(*h, c, t, v()) if rng.random() < 0.5 else CreatorFeesClaimed(*h, c, v()))
        elif kind == 9:
            out.append(LiquidityWithdrawn(*h, m, c, v()))
        elif kind == 10:
            out.append(Merged(*h, m, t, v(), v(), v()))
        elif rng.random() < 0.6:
            out.append(OutcomeProposed(*h, m, rng.randint(0, 2), c, v()))
        else:
            out.append(OutcomeDisputed(*h, m, rng.randint(0, 2), t))
    return out


class Chain:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.blocks = [Block(0, b"\x00" * 32, b"\x00" * 32, [])]

    def mine(self, n: int) -> None:
        for _ in range(n):
            parent = self.blocks[-1]
            number = parent.number + 1
            bh = self.rng.randbytes(32)
            self.blocks.append(Block(number, bh, parent.hash, random_events(self.rng, number, bh)))

    def reorg(self, depth: int, new: int) -> None:
        depth = min(depth, len(self.blocks) - 1 - 0)
        if depth <= 0:
            return
        del self.blocks[len(self.blocks) - depth :]
        self.mine(new)

    @property
    def head(self) -> int:
        return self.blocks[-1].number

    def finalized(self) -> int:
        return max(0, self.head - FINALITY)


class Model:
    """The store's semantics in memory."""

    def __init__(self) -> None:
        self.snap = F.Snapshot()
        self.events: dict[int, list[Event]] = {}
        self.notifications: dict[tuple[int, int, bytes], F.Notification] = {}
        self.undo: list[F.Undo] = []
        self.hashes: dict[int, bytes] = {0: b"\x00" * 32}
        self.cursor = 0
        self.floor = 0

    def load(self, keys: F.Keys) -> F.Snapshot:
        s = F.Snapshot()
        s.markets = {k: copy.copy(v) for k, v in self.snap.markets.items() if k in keys.markets}
        creators = set(keys.creators) | {m.creator for m in s.markets.values()}
        s.positions = {
            k: copy.copy(v)
            for k, v in self.snap.positions.items()
            if k in keys.positions or k[0] in keys.market_positions
        }
        s.creators = {k: copy.copy(v) for k, v in self.snap.creators.items() if k in creators}
        s.holdings = {
            k: copy.copy(v)
            for k, v in self.snap.holdings.items()
            if k in keys.holdings or k[0] in keys.creator_holdings
        }
        return s

    def apply(self, blocks: list[Block], finalized: int) -> None:
        events = [e for b in blocks for e in b.events]
        ch = F.fold(self.load(F.keys_of(events)), events, F.Context(1, journal_above=finalized, outbox_from=0))
        self.snap.markets.update(ch.markets)
        self.snap.positions.update(ch.positions)
        self.snap.creators.update(ch.creators)
        self.snap.holdings.update(ch.holdings)
        for n in ch.notifications:
            self.notifications[(n.block_number, n.log_index, n.recipient)] = n
        self.undo.extend(ch.undo)
        for b in blocks:
            self.events[b.number] = b.events
            self.hashes[b.number] = b.hash
        self.cursor = blocks[-1].number
        self.floor = max(self.floor, min(finalized, self.cursor))
        self.undo = [u for u in self.undo if u.block_number > self.floor]

    def rollback(self, ancestor: int) -> None:
        tables = {
            "markets": self.snap.markets,
            "positions": self.snap.positions,
            "creators": self.snap.creators,
            "share_holdings": self.snap.holdings,
        }
        for (table, key), row in F.restore_plan(self.undo, ancestor).items():
            k = key if len(key) > 1 else key[0]
            if row is None:
                tables[table].pop(k, None)  # type: ignore[attr-defined]
            else:
                tables[table][k] = row  # type: ignore[index]
        self.undo = [u for u in self.undo if u.block_number <= ancestor]
        for n in [n for n in self.events if n > ancestor]:
            del self.events[n]
        for n in [n for n in self.hashes if n > ancestor]:
            del self.hashes[n]
        self.notifications = {k: v for k, v in self.notifications.items() if k[0] <= ancestor}
        self.cursor = ancestor

    def index(self, chain: Chain, batch: int) -> None:
        canonical = {b.number: b.hash for b in chain.blocks}
        ancestor = find_ancestor({n: h for n, h in self.hashes.items() if n >= self.floor}, canonical, self.floor)
        if ancestor is not None:
            self.rollback(ancestor)
        elif self.cursor > chain.head:
            return
        while self.cursor < chain.head:
            blocks = chain.blocks[self.cursor + 1 : self.cursor + 1 + batch]
            assert blocks[0].parent == self.hashes[self.cursor]
            self.apply(blocks, chain.finalized())

    def state(self) -> tuple[Any, ...]:
        return (
            sorted((k, F.row_values(v)) for k, v in self.snap.markets.items()),
            sorted((k, F.row_values(v)) for k, v in self.snap.positions.items()),
            sorted((k, F.row_values(v)) for k, v in self.snap.creators.items()),
            sorted((k, F.row_values(v)) for k, v in self.snap.holdings.items()),
            sorted(self.notifications.items()),
        )


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("mine"), st.integers(1, 8)),
        st.tuples(st.just("reorg"), st.integers(1, FINALITY - 1), st.integers(0, 7)),
        st.tuples(st.just("index"), st.integers(1, 5)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), ops=OPS)
def test_any_reorg_sequence_ends_equal_to_a_fresh_index(seed: int, ops: list[tuple[Any, ...]]) -> None:
    """Mining, reorgs (shallower than finality) and indexing in any order converge on a fresh index."""
    chain = Chain(seed)
    chain.mine(3)
    model = Model()
    for op in ops:
        if op[0] == "mine":
            chain.mine(op[1])
        elif op[0] == "reorg":
            if op[1] < chain.head - model.floor:
                chain.reorg(op[1], op[2])
        else:
            model.index(chain, op[1])
    # A chain that got shorter looks exactly like a lagging node until it grows past our checkpoint
    # (the indexer waits rather than guess); chains grow, so let it.
    if chain.head <= model.cursor:
        chain.mine(model.cursor - chain.head + 1)
    model.index(chain, 3)
    fresh = Model()
    fresh.index(chain, 10**9)
    assert model.state() == fresh.state()


def test_reorg_at_the_finalized_block_is_too_deep() -> None:
    """A disagreement at or below the floor raises ReorgTooDeep instead of guessing."""
    stored = {10: b"a", 11: b"b", 12: b"c"}
    try:
        find_ancestor(stored, {10: b"x", 11: b"y", 12: b"z"}, floor=10)
    except ReorgTooDeep:
        return
    raise AssertionError("expected ReorgTooDeep")


def test_lagging_node_is_not_a_reorg() -> None:
    """Blocks the node does not have yet are not disagreements."""
    assert find_ancestor({10: b"a", 11: b"b", 12: b"c"}, {10: b"a", 11: b"b"}, floor=5) is None
    assert find_ancestor({10: b"a", 11: b"b", 12: b"c"}, {10: b"a", 11: b"B"}, floor=5) == 10
