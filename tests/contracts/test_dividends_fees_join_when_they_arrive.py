"""Review hc: market fees that waited in OpinionMarket join the dividend pool *backdated to the last fold*
(CreatorShares._fold adds the backlog to `pool` before `_vested(pool, lastFold, dayEnd)`), so the part of a
fee that "vested" between the last fold and the fee's arrival is credited the moment the fee lands.

An earner that sells in the block after someone else's large market trade therefore takes its pro-rata share
of that fee's backdated part without holding through any of its vesting, and the holders that stay lose it:
- same day: with the keeper's fold at 00:00 and a fee at 18:00, 18/24 of it vests at once;
- a quiet creator (the keeper skips an empty pool at 00:00, so `lastFold` is a day or more old): all of it.

Time-fair rule the contract states for its pool ("What vests is credited to the earning shares of the moment it
vests"; the fuzz model's "entitlement is earning shares x time held"): a fee that arrives at t vests over
[t, end of day], so an earner that leaves one second after t is owed about 1/21,600 of its share, not 3/4 or all.

Setup for both tests (default deployment, anvil): the creator holds 1 share, E buys 31 and S buys 32 on day 0
(both earn from day 2, 00:00, when the keeper folds); a 500,000 USDC buy in the creator's market brings
5,000 USDC of creator fees (2 % fee, half to the creator's pool); E sells its 31 shares one second later.
"""

from __future__ import annotations

import pytest

from tests.contracts.kit import DAY, USDC, Env

pytestmark = pytest.mark.anvil

FEE_TRADE = 500_000 * USDC  # 2 % fee = 10,000 USDC, 5,000 of it to the creator's dividend pool


def _claimable(env: Env, creator: str, holder: str) -> int:
    return int(env.cs.functions.claimableDividends(creator, holder).call())


def _setup(env: Env) -> tuple[str, str, str, str, int, int]:
    """Returns (creator, earner E, stayer S, market trader, market id, 00:00 of day 2)."""
    creator, e, s, trader = env.traders[:4]
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator, 1_000 * USDC, 20 * DAY)
    env.buy_shares(e, creator, 31)
    env.buy_shares(s, creator, 32)
    day2 = env.next_day() + DAY
    env.next_block_at(day2)  # the keeper's 00:00 run: E's and S's lots start earning
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    earning = env.cs.functions.warmupOf(creator, e).call()[0], env.cs.functions.warmupOf(creator, s).call()[0]
    assert earning == (31, 32)
    assert _claimable(env, creator, e) == 0  # the day-0 pool vested to the creator's one earning share
    return creator, e, s, trader, market, day2


def _sell_right_after_fee(env: Env, creator: str, e: str, trader: str, market: int, at: int) -> int:
    """The fee lands at `at`; E sells all 31 shares in the next block (one second later). Returns E's claimable."""
    accrued = env.om.functions.creatorFeesAccrued(creator).call()
    env.next_block_at(at)
    env.buy(trader, market, 1, FEE_TRADE)
    assert env.om.functions.creatorFeesAccrued(creator).call() - accrued == 5_000 * USDC
    env.next_block_at(at + 1)
    fn = env.cs.functions.sellShares(creator, 31, 0, env.deadline())
    env.send(fn, e)
    assert env.cs.functions.sharesOf(creator, e).call() == 0
    return _claimable(env, creator, e)


def test_earner_selling_right_after_a_same_day_market_fee_gets_none_of_it(env: Env) -> None:
    """lastFold = 00:00 (keeper), fee at 18:00, E sells at 18:00:01.

    Now: the fee joins as if it had arrived at 00:00, 18h/24h of it vests in E's sell's fold:
    vested = 5,000 x 64,801 / 86,400 = 3,750.057870 USDC over 64 earning shares, E credited
    31/64 of it = 1,816.43 USDC and gone; S (who stays) and the creator share the remaining 1,249.94.
    Time-fair: the fee vests from 18:00 to 24:00; E held it one second: 31/64 x 5,000 / 21,600 = 0.11 USDC.
    """
    creator, e, _s, trader, market, day2 = _setup(env)
    got = _sell_right_after_fee(env, creator, e, trader, market, day2 + 18 * 3_600)
    assert got <= 1 * USDC, f"E took {got / USDC:,.6f} USDC of a fee that arrived one second before it sold"


def test_earner_selling_right_after_a_market_fee_of_a_quiet_creator_gets_none_of_it(env: Env) -> None:
    """A quiet creator: nothing happens on day 2 after the 00:00 fold; at 00:00 of day 3 the pool is empty and no
    market fee waits, so the keeper skips it (decide_distribution: "empty_pool") and lastFold stays on day 2.
    The fee lands at 18:00 of day 3, E sells at 18:00:01.

    Now: the fee joins day 2's pool, which ended; all 5,000 USDC vest in E's sell's fold, E credited
    31/64 x 5,000 = 2,421.875 USDC and gone; S gets 2,500 of it instead of 32/33 x 5,000 = 4,848.48.
    Time-fair: 31/64 x 5,000 / 21,600 = 0.11 USDC for E.
    """
    creator, e, _s, trader, market, day2 = _setup(env)
    day3 = day2 + DAY
    env.next_block_at(day3 + 60)
    env.node.mine()
    stream = env.cs.functions.dividendStream(creator).call()
    pool, _last, _end, vested, _earning, maturing = stream
    fees_waiting = env.cs.functions.pendingPool(creator).call()[1]
    assert (pool, vested, maturing, fees_waiting) == (0, 0, 0, 0)  # the keeper has nothing to send
    got = _sell_right_after_fee(env, creator, e, trader, market, day3 + 18 * 3_600)
    assert got <= 1 * USDC, f"E took {got / USDC:,.6f} USDC of a fee that arrived one second before it sold"
