"""Market fees of a day that ended with no fold after its 00:00 go to the shares that earned that day: a lot that
matured at that 00:00 included, a lot maturing at the next one not (review s21 hf).

What the review found: market fees "of earlier UTC days" joined the pool as of the *last fold's* day, so after
a day without a fold they were credited to the earning supply of the last fold's day, not to the shares that
were earning when they arrived.

The fix's stated rule (CreatorShares._fold comment, docs/contracts.md): "Fees of earlier UTC days join as of
the last fold's day: joined when they arrived, they had vested by their day's end, before any lot maturing since
earns." That holds only when the fee's day is the last fold's day. When the fee arrived on a later day, lots
that matured at a 00:00 *before* the fee were earning when it arrived, yet `_fold` vests it over
`supply - pendingNext - pendingLater` of the last fold (before the maturities), and those lots mature with the
accumulator after the vest: they get nothing of it. The old earners take all of it.

This is the review s19 h5 defect ("a keeper that skipped a quiet creator gave days of market fees to the earners
of the last fold") for the market-fee half of the pool; the outcome flips at 00:00: had anyone folded at
23:59:59 of the fee's day the fee would be "today's" and B would earn 32/65 of it; folded one second after
00:00, B earns 0.

Setup (default deployment, anvil): the creator holds 1 share; A buys 32 on day 0 (earns from day 2, 00:00, when
the keeper folds); B buys 32 at 10:00 of day 2 (earns from day 4, 00:00). The keeper misses day 4's 00:00 run
(no fold on day 4). At 12:00 of day 4 a 500,000 USDC buy in the creator's market brings 5,000 USDC to the pool.
The keeper folds at 00:00:30 of day 5.

Time-fair (the contract's own "what vests is credited to the earning shares of the moment it vests", and the
fix's own promise "a lot that matured at today's 00:00 earns today's fees"): the fee arrived when 65 shares were
earning; B is owed 32/65 x 5,000 = 2,461.54 USDC. Now: B is credited 0 of it and A 32/33 x 5,000 = 4,848.48
(seen: B 0, A 5,084.85 with the day-2 pool).
"""

from __future__ import annotations

import pytest

from tests.contracts.kit import DAY, USDC, Env

pytestmark = pytest.mark.anvil

FEE_TRADE = 500_000 * USDC  # 2 % fee = 10,000 USDC, 5,000 of it to the creator's dividend pool


def test_fee_arriving_after_a_lot_matured_reaches_that_lot_when_folded_next_day(env: Env) -> None:
    creator, a, b, trader = env.traders[:4]
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator, 1_000 * USDC, 20 * DAY)
    env.buy_shares(a, creator, 32)
    day2 = env.next_day() + DAY
    env.next_block_at(day2)  # the keeper's 00:00 run: A's lot starts earning
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    env.next_block_at(day2 + 10 * 3_600)
    env.buy_shares(b, creator, 32)  # earns from 00:00 of day 4
    day4 = day2 + 2 * DAY
    # the keeper misses day 4's 00:00 run; B's lot matures at 00:00 of day 4 all the same
    env.next_block_at(day4 + 60)
    env.node.mine()
    assert env.cs.functions.warmupOf(creator, b).call()[0] == 32  # B's shares earn since 00:00 of day 4
    accrued = env.om.functions.creatorFeesAccrued(creator).call()
    env.next_block_at(day4 + 12 * 3_600)
    env.buy(trader, market, 1, FEE_TRADE)
    fee = env.om.functions.creatorFeesAccrued(creator).call() - accrued
    assert fee == 5_000 * USDC
    b_before = env.cs.functions.claimableDividends(creator, b).call()
    a_before = env.cs.functions.claimableDividends(creator, a).call()
    env.next_block_at(day4 + DAY + 30)  # the keeper is back: its 00:00 run of day 5
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    b_got = env.cs.functions.claimableDividends(creator, b).call() - b_before
    a_got = env.cs.functions.claimableDividends(creator, a).call() - a_before
    owed = fee * 32 // 65  # 2,461.538461 USDC
    assert b_got >= owed - 1 * USDC, (
        f"B, earning since 00:00 of day 4, got {b_got / USDC:,.6f} USDC of a {fee / USDC:,.0f} USDC fee that arrived"
        f" at 12:00 of day 4 (owed {owed / USDC:,.6f}); A got {a_got / USDC:,.6f}"
    )


def test_fees_of_a_day_between_two_maturities_reach_the_first_lot_only(env: Env) -> None:
    """Lots maturing at two 00:00s, a fee on the day between them, and the first fold after both: the first lot
    earns its part of the fee, the second none of it, and each lot is reported with its own accumulator (two
    PendingMatured events, two snapshot lanes)."""
    creator, h1, h2, trader = env.traders[:4]
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator, 1_000 * USDC, 20 * DAY)
    x = env.next_day() // DAY
    env.next_block_at(x * DAY + 10 * 3_600)
    env.buy_shares(h1, creator, 2)  # earns from x + 2
    env.next_block_at((x + 1) * DAY + 10 * 3_600)
    env.buy_shares(h2, creator, 3)  # earns from x + 3; the last fold (day x + 1)
    accrued = env.om.functions.creatorFeesAccrued(creator).call()
    env.next_block_at((x + 2) * DAY + 12 * 3_600)
    env.buy(trader, market, 1, FEE_TRADE)  # day x + 2: h1's lot earns, h2's does not
    fee = env.om.functions.creatorFeesAccrued(creator).call() - accrued
    before = {w: env.cs.functions.claimableDividends(creator, w).call() for w in (h1, h2)}
    env.next_block_at((x + 3) * DAY + 30)  # the first fold after both 00:00s
    receipt = env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    events = env.events(receipt, env.cs, "PendingMatured")
    assert [(e["shares"], e["fromDay"], e["toDay"]) for e in events] == [(2, x + 2, x + 2), (3, x + 3, x + 3)]
    assert events[0]["accPerShare"] < events[1]["accPerShare"]
    got = {w: env.cs.functions.claimableDividends(creator, w).call() - before[w] for w in (h1, h2)}
    assert fee * 2 // 3 - 1 <= got[h1] <= fee * 2 // 3 + 1  # 2 of the 3 shares earning on day x + 2
    assert got[h2] == 0
    paid, _ = env.send_returning(env.cs.functions.claimDividends(creator), h1)
    assert paid == before[h1] + got[h1]
