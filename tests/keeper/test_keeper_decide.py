"""Property tests of the pure deciders (keeper/decide.py): no chain, no database, no clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from keeper import decide
from keeper.decide import (
    Attempt,
    ChainView,
    CreatorView,
    FeedRound,
    FeedRule,
    FeePolicy,
    Fees,
    MarketView,
    QueueEntry,
    Receipt,
    TxView,
)

GWEI = 10**9
wei = st.integers(min_value=0, max_value=10**15)
policies = st.builds(
    lambda cap, pcap_frac, minp_frac, mult: FeePolicy(
        max_fee_cap=cap,
        priority_cap=max(1, cap * pcap_frac // 100),
        min_priority=max(1, cap * pcap_frac // 100) * minp_frac // 100,
        base_multiplier_pct=mult,
    ),
    st.integers(min_value=GWEI, max_value=10**13),
    st.integers(1, 100),
    st.integers(0, 100),
    st.integers(100, 300),
)
fees = st.builds(lambda tip, extra: Fees(tip + extra, tip), st.integers(1, 10**12), st.integers(0, 10**12))


@given(st.integers(min_value=0, max_value=10**30), st.integers(min_value=1_250, max_value=10_000))
def test_bump_is_at_least_the_percentage_and_at_least_one(value: int, bps: int) -> None:
    """bump(v) ≥ v·(1 + bps/10000) and > v, so a node never refuses it as underpriced."""
    b = decide.bump(value, bps)
    assert b * 10_000 >= value * (10_000 + bps)
    assert b > value


@given(st.integers(min_value=0, max_value=10**13), st.lists(wei, max_size=20), policies)
def test_market_fees_respect_caps_and_tip_bounds(base: int, rewards: list[int], policy: FeePolicy) -> None:
    """Market fees never exceed the caps and the tip never exceeds the max fee."""
    f = decide.market_fees(base, rewards, policy)
    assert f.max_priority_fee_per_gas <= policy.priority_cap
    assert f.max_priority_fee_per_gas <= f.max_fee_per_gas
    assert f.max_fee_per_gas <= max(policy.max_fee_cap, f.max_priority_fee_per_gas)


@given(fees, fees, policies)
def test_replacement_bumps_both_fields_by_12_5_percent_within_the_cap(old: Fees, market: Fees, p: FeePolicy) -> None:
    """A replacement raises BOTH fields by ≥ 12.5 %, follows the market up, and never passes the cap; when
    it cannot, there is no replacement at all."""
    new = decide.replacement_fees(old, market, p)
    if new is None:
        return
    assert new.max_fee_per_gas * 10_000 >= old.max_fee_per_gas * 11_250
    assert new.max_priority_fee_per_gas * 10_000 >= old.max_priority_fee_per_gas * 11_250
    assert new.max_fee_per_gas <= p.max_fee_cap
    assert new.max_priority_fee_per_gas <= new.max_fee_per_gas
    assert new.max_fee_per_gas >= market.max_fee_per_gas


@given(fees, fees, policies)
def test_a_replacement_exists_whenever_the_max_fee_cap_allows_one(old: Fees, market: Fees, p: FeePolicy) -> None:
    """Only max_fee_per_gas_cap can forbid a replacement: a tip at the priority cap goes past it by the
    bump the node requires (the tip cap blocked every bump, and the log blamed the max fee cap)."""
    needed = max(decide.bump(old.max_fee_per_gas, p.bump_bps), market.max_fee_per_gas)
    new = decide.replacement_fees(old, market, p)
    assert (new is None) == (needed > p.max_fee_cap)
    if new is not None and old.max_priority_fee_per_gas < p.priority_cap <= market.max_priority_fee_per_gas:
        assert new.max_priority_fee_per_gas >= p.priority_cap


def test_a_tip_at_the_priority_cap_still_gets_bumped_when_the_base_fee_rises() -> None:
    """The review's case: sent at (65, 5) gwei with a 5 gwei tip cap, base fee rises to 80 gwei: the
    replacement is (165, 5.625) gwei, well under the 500 gwei cap (it was None: stuck until fees fell)."""
    p = FeePolicy(max_fee_cap=500 * GWEI, priority_cap=5 * GWEI, min_priority=GWEI)
    market = decide.market_fees(80 * GWEI, [6 * GWEI], p)
    new = decide.replacement_fees(Fees(65 * GWEI, 5 * GWEI), market, p)
    assert new == Fees(165 * GWEI, 5_625_000_000)


@given(
    st.one_of(st.none(), st.integers(0, 1000)),
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.lists(st.integers(0, 1000), max_size=10),
)
def test_next_nonce_never_goes_below_a_live_nonce(
    local: int | None, pending: int, latest: int, live: list[int]
) -> None:
    """While transactions are live the allocated nonce is above all of them and never below the local
    counter; it is never below what the chain has mined."""
    n = decide.next_nonce(local, pending, latest, live)
    live_above = [x for x in live if x >= latest]
    assert n >= latest
    if live_above:
        assert n > max(live_above)
        if local is not None:
            assert n >= local


@given(st.integers(0, 50), st.sets(st.integers(0, 80), max_size=20), st.sets(st.integers(0, 80), max_size=5))
def test_gaps_are_exactly_the_missing_nonces_below_the_highest_live(
    latest: int, live: set[int], held: set[int]
) -> None:
    """A gap is a nonce below our highest pending one that no ledger row holds (a row seen mined after the
    nonce was read is never filled over)."""
    gaps = decide.nonce_gaps(latest, sorted(live), sorted(held))
    above = {n for n in live if n >= latest}
    expected = [n for n in range(latest, max(above))] if above else []
    assert gaps == [n for n in expected if n not in above and n not in held]


rules = st.builds(
    FeedRule,
    st.just(b"\x01" * 20),
    st.sampled_from(["gt", "gte", "lt", "lte"]),
    st.integers(-(10**12), 10**12),
    st.sampled_from([0, 1, 2]),
    st.sampled_from([0, 1, 2]),
)
rounds = st.one_of(
    st.none(), st.builds(FeedRound, st.integers(1, 100), st.integers(-(10**12), 10**12), st.integers(0, 10**6))
)
markets = st.builds(
    MarketView,
    st.integers(1, 10**6),
    st.integers(0, 10**6),
    st.booleans(),
    st.one_of(st.none(), st.builds(QueueEntry, st.integers(1, 100), st.sampled_from([0, 1, 2]))),
    st.one_of(st.none(), rules),
    rounds,
    st.booleans(),
)


@given(markets, st.integers(0, 2 * 10**6), st.integers(0, 10**5), st.integers(0, 10**5))
def test_resolution_decisions_never_guess(m: MarketView, now: int, grace: int, staleness: int) -> None:
    """Never resolve before end time, twice, a resolved market, or from a feed round before end time or
    later than the bound after it; the queue wins over a feed; an outcome is always 0, 1 or 2."""
    a = decide.decide_resolution(m, now, grace, staleness)
    if m.in_ledger or now < m.end_time:
        assert a is None
        return
    if m.resolved:
        assert isinstance(a, decide.Skip)
        return
    if isinstance(a, decide.Resolve):
        assert a.outcome in (0, 1, 2)
        if m.queued is not None:
            assert (a.source, a.outcome, a.queue_id) == ("queue", m.queued.outcome, m.queued.id)
        else:
            assert a.source == "feed"
            assert m.rule is not None
            assert m.feed_round is not None
            assert m.feed_round.updated_at >= m.end_time  # published once trading had closed
            assert m.feed_round.updated_at - m.end_time <= staleness
            truth = decide.compare(m.feed_round.answer, m.rule.comparison, m.rule.threshold)
            assert a.outcome == (m.rule.outcome_if_true if truth else m.rule.outcome_if_false)
    elif isinstance(a, decide.Overdue):
        assert m.queued is None
        assert now >= m.end_time + grace
    else:
        assert a is None
        assert m.queued is None


@given(
    st.binary(min_size=20, max_size=20),
    wei,
    wei,
    st.integers(0, 10**6),
    st.integers(0, 10**8),
    st.booleans(),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
def test_distribution_only_with_holders_and_something_to_credit_or_start(
    creator: bytes, pool: int, fees_: int, supply: int, vested: int, in_ledger: bool, pending: int, maturing: int
) -> None:
    """A distribution is sent only when it would not revert NothingToDistribute: holders, and either a
    vested part that credits at least one stored unit per earning share, market fees joining the pool, or
    pending shares whose 00:00 passed (the warm-up: a distribution that only matures lots succeeds)."""
    vested = min(vested, pool + fees_)
    earning = max(1, supply - pending) if supply else 0
    maturing = min(maturing, supply - earning) if supply else 0
    view = CreatorView(creator, pool, fees_, supply, vested, in_ledger, earning=earning, maturing=maturing)
    a = decide.decide_distribution(view, "2026-11-29")
    if isinstance(a, decide.Distribute):
        assert not in_ledger
        assert supply > 0
        assert fees_ > 0 or maturing > 0 or vested * 10**12 // earning > 0
        assert a.amount == vested
    elif in_ledger:
        assert a is None
    else:
        assert isinstance(a, decide.Skip)
        assert supply == 0 or (fees_ == 0 and maturing == 0 and vested * 10**12 // earning == 0)


def test_a_quiet_creator_with_lots_maturing_is_distributed() -> None:
    """The 00:00 run folds a creator whose pool is empty when lots would mature (design §2.5): the call
    starts them earning; without maturing lots the same creator is skipped."""
    c = CreatorView(b"\x01" * 20, 0, 0, 10, 0, earning=4, maturing=6)
    assert isinstance(decide.decide_distribution(c, "2026-11-29"), decide.Distribute)
    quiet = CreatorView(b"\x01" * 20, 0, 0, 10, 0, earning=4, maturing=0)
    assert decide.decide_distribution(quiet, "2026-11-29") == decide.Skip(
        decide.distribution_key(b"\x01" * 20, "2026-11-29"), "empty_pool"
    )


chains = st.builds(
    ChainView,
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.integers(0, 100),
    wei,
    fees,
    st.none() | st.integers(0, 100),
)


blocks = st.one_of(st.none(), st.integers(0, 1000))


@given(
    st.integers(0, 100),
    st.lists(st.tuples(fees, blocks, st.booleans(), blocks), min_size=1, max_size=4),
    st.sampled_from(["pending", "mined", "confirmed", "reverted"]),
    st.booleans(),
    chains,
    policies,
    st.integers(1, 10),
    st.integers(1, 10),
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, b"\x02" * 32, b"\x03" * 32]),
)
def test_tx_decisions_are_safe(
    nonce: int,
    atts: list[tuple[Fees, int | None, bool, int | None]],
    status: str,
    has_receipt: bool,
    chain: ChainView,
    p: FeePolicy,
    confirmations: int,
    replace_after: int,
    at_finalized: bool,
    lookup_failed: bool,
    block_hash_at_mined: bytes | None,
) -> None:
    """A tx is only called dropped when its nonce is consumed, no receipt exists and the grace after our
    LAST send (any attempt, rebroadcasts included) has passed; a reorg only when the node has another
    block at the mined height; a failed lookup decides nothing; a replacement is affordable, within
    the cap and a real bump."""
    attempts = tuple(Attempt(i, f, sent, known, False, last) for i, (f, sent, known, last) in enumerate(atts))
    receipt = Receipt(0, max(0, chain.head - 1), b"\x02" * 32, True, 21_000, GWEI) if has_receipt else None
    mined_hash = None if status == "pending" else b"\x02" * 32
    mined_attempt = None if status == "pending" else 0
    tx = TxView(
        status,  # type: ignore[arg-type]
        nonce,
        100_000,
        0,
        attempts,
        receipt,
        mined_hash,
        mined_attempt,
        False,
        lookup_failed,
        block_hash_at_mined,
    )
    a = decide.decide_tx(tx, chain, confirmations, replace_after, p, at_finalized)
    if receipt is None and lookup_failed:
        assert a is None
    if isinstance(a, decide.MarkMined) and a.confirmed:
        assert receipt is not None
        if at_finalized:
            assert receipt.block_number <= chain.finalized
        else:
            assert chain.head - receipt.block_number + 1 >= confirmations
    if isinstance(a, decide.Dropped):
        assert receipt is None
        assert chain.nonce_latest > nonce
        sends = [b for at in attempts for b in (at.sent_block, at.last_sent_block) if b is not None]
        assert sends
        assert chain.head - max(sends) >= decide.DROP_GRACE_BLOCKS
        assert chain.nonce_finalized is not None
        assert chain.nonce_finalized > nonce
    if isinstance(a, decide.Reorged):
        assert receipt is None
        assert status != "pending"
        assert block_hash_at_mined is not None
        assert block_hash_at_mined != mined_hash
    if isinstance(a, decide.Replace):
        last = attempts[-1].fees
        assert a.fees.max_fee_per_gas <= p.max_fee_cap
        assert a.fees.max_fee_per_gas * 10_000 >= last.max_fee_per_gas * 11_250
        assert chain.balance >= tx.gas_limit * a.fees.max_fee_per_gas
    if receipt is None and status != "pending" and not lookup_failed and block_hash_at_mined == b"\x03" * 32:
        assert isinstance(a, decide.Reorged)


P = FeePolicy(max_fee_cap=100 * GWEI, priority_cap=2 * GWEI, min_priority=GWEI)
F = Fees(10 * GWEI, GWEI)


def test_a_failed_receipt_lookup_of_a_mined_tx_is_neither_a_reorg_nor_a_drop() -> None:
    """The review's sequence: a mined tx whose receipt lookups fail on two passes, blocks later, with
    its nonce used: nothing is decided (it was Reorged, then Dropped)."""
    attempts = (Attempt(0, F, 5, True),)
    mined = TxView("mined", 3, 100_000, 0, attempts, None, b"\x02" * 32, 0, False, lookup_failed=True)
    for head in (7, 12):
        assert decide.decide_tx(mined, ChainView(head, 0, 4, 10**18, F), 4, 3, P) is None
    pending = TxView("pending", 3, 100_000, 0, attempts, None, None, None, False, lookup_failed=True)
    assert decide.decide_tx(pending, ChainView(12, 0, 4, 10**18, F), 4, 3, P) is None


def test_a_missing_receipt_is_a_reorg_only_when_the_mined_block_changed() -> None:
    """No receipt: a node behind the mined height, or with our block still there, proves no reorg; a
    different block at that height does."""
    attempts = (Attempt(0, F, 5, True),)
    chain = ChainView(12, 0, 4, 10**18, F)

    def view(at_mined: bytes | None) -> TxView:
        return TxView("confirmed", 3, 100_000, 0, attempts, None, b"\x02" * 32, 0, False, False, at_mined)

    assert decide.decide_tx(view(None), chain, 1, 3, P) is None
    assert decide.decide_tx(view(b"\x02" * 32), chain, 1, 3, P) is None
    assert decide.decide_tx(view(b"\x03" * 32), chain, 1, 3, P) == decide.Reorged(0)


def test_a_reorg_rebroadcast_restarts_the_drop_grace() -> None:
    """Back to pending after a reorg: its first send was long ago, but the rebroadcast at block 20 is our
    last send, so a used nonce without a receipt at 21 waits; at 22 it is dropped."""
    attempts = (Attempt(0, F, 5, True, False, 20),)
    tx = TxView("pending", 3, 100_000, 0, attempts, None, None, None, False)
    assert decide.decide_tx(tx, ChainView(21, 0, 4, 10**18, F, 4), 1, 3, P) is None
    assert isinstance(decide.decide_tx(tx, ChainView(22, 0, 4, 10**18, F, 4), 1, 3, P), decide.Dropped)


def test_a_used_nonce_with_no_recorded_send_is_sent_before_any_drop() -> None:
    """A send block never recorded (crash before the broadcast, or the head unreadable then): sending it
    again starts the grace instead of dropping at once."""
    tx = TxView("pending", 3, 100_000, 0, (Attempt(0, F, None, True),), None, None, None, False)
    assert decide.decide_tx(tx, ChainView(50, 0, 4, 10**18, F), 1, 3, P) == decide.Rebroadcast(0)


def test_a_mined_cancellation_frees_the_job_key() -> None:
    """A receipt for a cancel attempt (self-transfer) is reported as dropped, never as the job done, once its
    block is final; before, the row is held as mined (a reorg may yet mine the call it replaced)."""
    p = FeePolicy(max_fee_cap=100 * GWEI, priority_cap=2 * GWEI, min_priority=GWEI)
    attempts = (Attempt(0, Fees(10 * GWEI, GWEI), 5, True), Attempt(1, Fees(12 * GWEI, 2 * GWEI), 8, True, True))
    receipt = Receipt(1, 9, b"\x01" * 32, True, 21_000, GWEI)
    tx = TxView("pending", 3, 100_000, 0, attempts, receipt, None, None, False)
    fees = Fees(10 * GWEI, GWEI)
    held = decide.decide_tx(tx, ChainView(10, 8, 4, 10**18, fees), 1, 3, p)
    assert held == decide.MarkMined(receipt, False, False)
    mined = TxView("mined", 3, 100_000, 0, attempts, receipt, b"\x01" * 32, 1, False)
    assert decide.decide_tx(mined, ChainView(11, 8, 4, 10**18, fees), 1, 3, p) is None  # still not final
    assert isinstance(decide.decide_tx(mined, ChainView(80, 9, 4, 10**18, fees), 1, 3, p), decide.Dropped)


def test_a_used_nonce_without_a_receipt_waits_before_dropping() -> None:
    """The node may show the new nonce a moment before the receipt: dropped only DROP_GRACE_BLOCKS later."""
    p = FeePolicy(max_fee_cap=100 * GWEI, priority_cap=2 * GWEI, min_priority=GWEI)
    attempts = (Attempt(0, Fees(10 * GWEI, GWEI), 9, True),)
    tx = TxView("pending", 3, 100_000, 0, attempts, None, None, None, False)
    fees = Fees(10 * GWEI, GWEI)
    just_sent = decide.decide_tx(tx, ChainView(10, 0, 4, 10**18, fees, 4), 1, 3, p)
    assert just_sent is None  # nothing to do yet
    later = decide.decide_tx(tx, ChainView(9 + decide.DROP_GRACE_BLOCKS, 0, 4, 10**18, fees, 4), 1, 3, p)
    assert isinstance(later, decide.Dropped)


def test_a_used_nonce_is_dropped_only_once_used_in_finalized_state() -> None:
    """Review s15: a node whose receipts lag its nonce showed a mined distribution as "nonce used, no
    receipt" for a few blocks; calling it dropped freed the job key and the creator was distributed twice
    that day. Now it waits until the count at the finalized block has used the nonce; without that count
    (a send finalized proves nothing: the nonce may have been used later), it never drops."""
    tx = TxView("pending", 3, 100_000, 0, (Attempt(0, F, 9, True),), None, None, None, False)
    waiting = decide.decide_tx(tx, ChainView(30, 20, 4, 10**18, F, 3), 1, 3, P)
    assert waiting == decide.Wait(decide.NONCE_USED_NOT_FINAL)
    assert isinstance(decide.decide_tx(tx, ChainView(30, 20, 4, 10**18, F, 4), 1, 3, P), decide.Dropped)
    assert decide.decide_tx(tx, ChainView(30, 8, 4, 10**18, F), 1, 3, P) == decide.Wait(decide.NONCE_USED_NOT_FINAL)
    # our send final, no count to prove the nonce used there: still never dropped, but said (tx_stuck)
    assert decide.decide_tx(tx, ChainView(30, 29, 4, 10**18, F), 1, 3, P) == decide.Wait(decide.NONCE_USED_UNPROVEN)


def test_an_attempt_the_node_holds_is_never_abandoned_for_the_errors_its_broadcasts_got() -> None:
    """Review s15: a provider that broadcast the transaction and answered an error anyway (or erigon
    answering a repeat "existing tx with same hash") counted a refusal every pass, and after
    max_refusals the keeper cancelled its own transaction that the node held. While the node holds it
    (eth_getTransactionByHash), refusals decide nothing; when it does not, they still do."""
    held = TxView("pending", 3, 100_000, 0, (Attempt(0, F, 9, True, False, None, 7),), None, None, None, False)
    assert decide.decide_tx(held, ChainView(10, 0, 3, 10**18, F), 1, 3, P) is None
    lost = TxView("pending", 3, 100_000, 0, (Attempt(0, F, 9, False, False, None, 7),), None, None, None, False)
    assert isinstance(decide.decide_tx(lost, ChainView(10, 0, 3, 10**18, F), 1, 3, P, max_refusals=5), decide.Abandon)
    assert decide.broadcast_refused_for_good("INTERNAL_ERROR: existing tx with same hash") is False


def test_the_next_nonce_is_never_below_what_the_ledger_saw_mined() -> None:
    """Review s15: with nothing live, a lagging node's older count was taken as the truth and the keeper
    signed at a nonce its own mined transaction holds (every insert of the batch then failed)."""
    assert decide.next_nonce(None, 0, 0, [], mined_floor=1) == 1
    assert decide.next_nonce(None, 5, 5, [], mined_floor=1) == 5
    assert decide.next_nonce(7, 2, 2, [3, 4], mined_floor=6) == 7


@given(
    estimate=st.integers(0, 10**9),
    margin=st.integers(0, 1_000),
    block=st.one_of(st.none(), st.integers(21_000, 10**9)),
    cap=st.integers(21_000, 10**9),
)
def test_gas_limit_covers_the_estimate_and_never_passes_the_block_or_the_cap(
    estimate: int, margin: int, block: int | None, cap: int
) -> None:
    """The signed gas limit is at least the estimate, at most estimate + margin, the block's gasLimit and
    the cap; an estimate above the block's limit or the cap is refused (None), never signed."""
    bound = cap if block is None else min(cap, block)
    gas = decide.bounded_gas_limit(estimate, margin, block, cap)
    if estimate > bound:
        assert gas is None
    else:
        assert gas is not None
        assert estimate <= gas <= min(bound, estimate * (100 + margin) // 100)


def test_a_transaction_queued_behind_a_lower_nonce_is_not_fee_bumped() -> None:
    """Review s13 keeper item 6: a pending transaction above a lower nonce of ours that has not mined
    was bumped every replace_after blocks (1 -> 158 gwei tip in 129 blocks) though no fee can make it
    mine first. Only the lowest pending nonce is bumped; the ones above it wait."""
    chain = ChainView(50, 0, 4, 10**18, F)  # the sender's mined count: nonce 4 is the next to mine

    def pending(nonce: int, known: bool = True) -> TxView:
        at = (Attempt(0, F, 5, known),)
        return TxView("pending", nonce, 100_000, 0, at, None, None, None, False)

    assert isinstance(decide.decide_tx(pending(4), chain, 1, 3, P), decide.Replace)
    assert decide.decide_tx(pending(5), chain, 1, 3, P) == decide.Wait("queued_behind_lower_nonce")
    assert decide.decide_tx(pending(5, known=False), chain, 1, 3, P) == decide.Rebroadcast(0)  # not in its pool
