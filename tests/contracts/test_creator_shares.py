"""CreatorShares on a real anvil: the bonding curve, fees, locks, dividends (including market fees
collected from OpinionMarket), roles and pause; every revert asserted by its custom-error selector."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from web3 import Web3

from tests.contracts import model
from tests.contracts.kit import DAY, MAX_UINT, USDC, Env

pytestmark = pytest.mark.anvil

CS = "CreatorShares"
KEEPER_ROLE = Web3.keccak(text="KEEPER_ROLE")


@dataclass(frozen=True, slots=True)
class Params:
    unit: int
    protocol_bps: int
    creator_bps: int
    dividend_bps: int
    lock: int


def params(env: Env) -> Params:
    f = env.cs.functions
    return Params(
        f.curveUnit().call(),
        f.protocolFeeBps().call(),
        f.creatorFeeBps().call(),
        f.dividendFeeBps().call(),
        f.lockPeriod().call(),
    )


def buy_fn(env: Env, creator: str, amount: int, max_cost: int = MAX_UINT, deadline: int | None = None) -> object:
    return env.cs.functions.buyShares(creator, amount, max_cost, env.deadline() if deadline is None else deadline)


def sell_fn(env: Env, creator: str, amount: int, min_out: int = 0, deadline: int | None = None) -> object:
    return env.cs.functions.sellShares(creator, amount, min_out, env.deadline() if deadline is None else deadline)


def unlock(env: Env) -> None:
    env.warp(params(env).lock + 1)


# ---------------------------------------------------------------- buyShares


def test_creator_buys_first_share_for_free(env: Env) -> None:
    """The creator's first share costs 0 (R(1) = 0) and sets supply 1 with a lock."""
    creator = env.traders[0]
    before = env.balance(creator)
    cost, receipt = env.send_returning(buy_fn(env, creator, 1), creator)
    assert cost == 0
    assert env.balance(creator) == before
    assert env.cs.functions.supplyOf(creator).call() == 1
    ev = env.event(receipt, env.cs, "SharesTraded")
    assert (ev["isBuy"], ev["supply"], ev["traderShares"], ev["price"]) == (True, 1, 1, 0)
    assert ev["lockedUntil"] == env.now() + params(env).lock


def test_non_creator_cannot_buy_first_share(env: Env) -> None:
    """Before the creator's first share, anyone else gets CreatorMustBuyFirstShare(creator)."""
    creator = env.traders[0]
    assert env.reverts(buy_fn(env, creator, 1), env.traders[1], CS, "CreatorMustBuyFirstShare") == (creator,)


def test_buy_shares_charges_exactly_returned_total_cost(env: Env) -> None:
    """The buyer's USDC falls by exactly the returned totalCost = curve price + three fees (each rounded down)."""
    creator, buyer = env.traders[:2]
    p = params(env)
    env.buy_shares(creator, creator, 1)
    quote_price, quote_total = env.cs.functions.buyPrice(creator, 3).call()
    before = env.balance(buyer)
    cost, receipt = env.send_returning(buy_fn(env, creator, 3, quote_total), buyer)
    price = model.reserve_at(4, p.unit) - model.reserve_at(1, p.unit)
    pf, cf, df = model.share_fees(price, p.protocol_bps, p.creator_bps, p.dividend_bps)
    assert cost == quote_total == price + pf + cf + df
    assert quote_price == price
    assert env.balance(buyer) == before - cost
    assert env.cs.functions.sharesOf(creator, buyer).call() == 3
    assert env.cs.functions.creatorFeesOf(creator).call() == cf
    assert env.cs.functions.protocolFees().call() == pf
    assert env.cs.functions.pendingPool(creator).call() == [df, 0]
    assert env.balance(env.cs.address) == model.reserve_at(4, p.unit) + pf + cf + df
    ev = env.event(receipt, env.cs, "SharesTraded")
    assert ev == {
        "creator": creator,
        "trader": buyer,
        "isBuy": True,
        "amount": 3,
        "price": price,
        "protocolFee": pf,
        "creatorFee": cf,
        "dividendFee": df,
        "supply": 4,
        "traderShares": 3,
        "traderClaimable": 0,
        "lockedUntil": env.now() + p.lock,
        "pool": df,
        "accPerShare": 0,
        "distributed": 0,  # the creator's free first share left nothing pending
    }


def test_buy_shares_rejects_zero_amount(env: Env) -> None:
    """amount = 0 reverts ZeroAmount."""
    env.reverts(buy_fn(env, env.traders[0], 0), env.traders[0], CS, "ZeroAmount")


def test_buy_shares_rejects_expired_deadline(env: Env) -> None:
    """A deadline before the block's timestamp reverts DeadlineExpired."""
    ts = env.now() + 5
    env.next_block_at(ts)
    fn = buy_fn(env, env.traders[0], 1, deadline=ts - 1)
    assert env.reverts(fn, env.traders[0], CS, "DeadlineExpired") == (ts - 1,)


def test_buy_shares_rejects_cost_above_bound(env: Env) -> None:
    """maxTotalCost one below the quote reverts SlippageExceeded(cost, bound)."""
    creator = env.traders[0]
    env.buy_shares(creator, creator, 1)
    _, total = env.cs.functions.buyPrice(creator, 2).call()
    fn = buy_fn(env, creator, 2, total - 1)
    assert env.reverts(fn, env.traders[1], CS, "SlippageExceeded") == (total, total - 1)


def test_buy_shares_rejects_supply_beyond_uint32(env: Env) -> None:
    """A buy taking supply past 2^32 - 1 reverts SupplyCapExceeded."""
    creator = env.traders[0]
    assert env.reverts(buy_fn(env, creator, 2**32), creator, CS, "SupplyCapExceeded") == (2**32,)


def test_buy_shares_without_funds_reverts_in_token(env: Env) -> None:
    """A creator without allowance can still take the free first share, but a paid buy is refused by the token."""
    creator = env.traders[0]
    env.buy_shares(creator, creator, 1)
    env.reverts(buy_fn(env, creator, 1), env.outsider, "MockUSDC", "ERC20InsufficientAllowance")


# ---------------------------------------------------------------- sellShares


def test_sell_shares_locked_until_lock_period_passes(env: Env) -> None:
    """A sell before lockedUntil reverts SharesLocked; at lockedUntil it pays exactly price minus fees."""
    creator, holder = env.traders[:2]
    p = params(env)
    env.buy_shares(creator, creator, 1)
    env.buy_shares(holder, creator, 4)
    locked = env.cs.functions.lockedUntil(creator, holder).call()
    env.next_block_at(locked - 1)
    args = env.reverts(sell_fn(env, creator, 2), holder, CS, "SharesLocked")
    assert args == (creator, holder, locked)
    env.next_block_at(locked)
    price, proceeds_quote = env.cs.functions.sellPrice(creator, 2).call()
    before = env.balance(holder)
    proceeds, receipt = env.send_returning(sell_fn(env, creator, 2, proceeds_quote), holder)
    expected_price = model.reserve_at(5, p.unit) - model.reserve_at(3, p.unit)
    pf, cf, df = model.share_fees(expected_price, p.protocol_bps, p.creator_bps, p.dividend_bps)
    assert price == expected_price
    assert proceeds == proceeds_quote == expected_price - pf - cf - df
    assert env.balance(holder) == before + proceeds
    assert env.cs.functions.sharesOf(creator, holder).call() == 2
    ev = env.event(receipt, env.cs, "SharesTraded")
    assert (ev["isBuy"], ev["amount"], ev["supply"], ev["lockedUntil"]) == (False, 2, 3, locked)


def test_buying_more_restarts_the_lock(env: Env) -> None:
    """Each buy sets lockedUntil = now + lockPeriod for the whole holding."""
    creator, holder = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(holder, creator, 1)
    unlock(env)
    env.buy_shares(holder, creator, 1)
    locked = env.cs.functions.lockedUntil(creator, holder).call()
    assert locked == env.now() + params(env).lock
    env.reverts(sell_fn(env, creator, 1), holder, CS, "SharesLocked")


def test_creator_first_share_is_pinned_and_the_last_holder_can_always_sell(env: Env) -> None:
    """The creator can never sell their last share (CannotSellFirstShare), so another holder can sell all of
    theirs even when they hold everything else (the old rule pinned the last unit of supply instead: after
    the creator sold, the last holder could never sell)."""
    creator, holder = env.traders[:2]
    env.buy_shares(creator, creator, 3)
    env.buy_shares(holder, creator, 2)
    unlock(env)
    assert env.reverts(sell_fn(env, creator, 3), creator, CS, "CannotSellFirstShare") == (creator,)
    env.send(sell_fn(env, creator, 2), creator)
    assert env.reverts(sell_fn(env, creator, 1), creator, CS, "CannotSellFirstShare") == (creator,)
    env.send(sell_fn(env, creator, 2), holder)  # everything but the creator's share
    assert env.cs.functions.supplyOf(creator).call() == 1
    assert env.cs.functions.sharesOf(creator, holder).call() == 0


def test_sell_shares_rejects_more_than_held(env: Env) -> None:
    """Selling more than held reverts InsufficientShares(requested, held)."""
    creator, holder = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(holder, creator, 2)
    assert env.reverts(sell_fn(env, creator, 3), holder, CS, "InsufficientShares") == (3, 2)


def test_sell_shares_rejects_zero_amount(env: Env) -> None:
    """amount = 0 reverts ZeroAmount."""
    env.reverts(sell_fn(env, env.traders[0], 0), env.traders[0], CS, "ZeroAmount")


def test_sell_shares_rejects_expired_deadline(env: Env) -> None:
    """A deadline before the block's timestamp reverts DeadlineExpired."""
    ts = env.now() + 5
    env.next_block_at(ts)
    fn = sell_fn(env, env.traders[0], 1, deadline=ts - 1)
    assert env.reverts(fn, env.traders[0], CS, "DeadlineExpired") == (ts - 1,)


def test_sell_shares_rejects_proceeds_below_bound(env: Env) -> None:
    """minProceeds one above the quote reverts SlippageExceeded."""
    creator, holder = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(holder, creator, 2)
    unlock(env)
    _, proceeds = env.cs.functions.sellPrice(creator, 1).call()
    fn = sell_fn(env, creator, 1, proceeds + 1)
    assert env.reverts(fn, holder, CS, "SlippageExceeded") == (proceeds, proceeds + 1)


# ---------------------------------------------------------------- dividends


def test_distribute_requires_keeper_role(env: Env) -> None:
    """distributeDividends from anyone without KEEPER_ROLE (the admin included) is refused."""
    creator = env.traders[0]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(env.traders[1], creator, 2)
    for who in (creator, env.admin):
        args = env.reverts(env.cs.functions.distributeDividends(creator), who, CS, "AccessControlUnauthorizedAccount")
        assert args == (who, bytes(KEEPER_ROLE))


def test_distribute_with_no_supply_reverts_nothing_to_distribute(env: Env) -> None:
    """A creator without shares has nothing to distribute to."""
    creator = env.traders[0]
    args = env.reverts(env.cs.functions.distributeDividends(creator), env.keeper, CS, "NothingToDistribute")
    assert args == (creator,)


def test_distribute_with_empty_pool_reverts_nothing_to_distribute(env: Env) -> None:
    """Supply but an empty pool (the free first share pays no fee) reverts NothingToDistribute."""
    creator = env.traders[0]
    env.buy_shares(creator, creator, 1)
    args = env.reverts(env.cs.functions.distributeDividends(creator), env.keeper, CS, "NothingToDistribute")
    assert args == (creator,)


def stream(env: Env, creator: str) -> tuple[int, int, int]:
    """(pool, lastFold, streamEnd) of `creator`'s dividend stream."""
    pool, last, end, _ = env.cs.functions.dividendStream(creator).call()
    return pool, last, end


def test_distribute_credits_what_vested_pro_rata_and_claim_pays_once(env: Env) -> None:
    """a's dividend fee vests over DIVIDEND_STREAM from a's buy; b's buy a quarter of the way in credits the
    vested quarter to the holders of that quarter (creator 1, a 2). b's fee joins the pool, which then vests
    until the amount-weighted mean of the two fees' ends; at b's fee's own end (a day after b's buy, past the
    mean) the distribution credits all of it to the three. Each credit
    rounds down; each holder claims once, then NothingToClaim."""
    creator, a, b = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 2)
    pool_a, last, end = stream(env, creator)
    assert end - last == model.DIVIDEND_STREAM
    t_b = last + model.DIVIDEND_STREAM // 4
    env.next_block_at(t_b)
    receipt = env.send(buy_fn(env, creator, 3), b)
    vested = model.vested(pool_a, last, end, t_b)
    assert vested == pool_a // 4
    acc1, folded = model.fold(vested, 3)
    trade = env.event(receipt, env.cs, "SharesTraded")
    assert (trade["accPerShare"], trade["distributed"]) == (acc1, folded)
    pool, market_fees = env.cs.functions.pendingPool(creator).call()
    assert market_fees == 0
    assert pool == pool_a - folded + trade["dividendFee"] == trade["pool"]
    left = pool_a - folded
    mean = model.stream_end(left, end, trade["dividendFee"], t_b)
    assert end < mean < t_b + model.DIVIDEND_STREAM
    assert stream(env, creator) == (pool, t_b, mean)
    env.next_block_at(t_b + model.DIVIDEND_STREAM)
    amount, receipt = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
    supply = 6
    acc2, reserved = model.fold(pool, supply)
    assert amount == reserved
    assert env.event(receipt, env.cs, "DividendsDistributed") == {
        "creator": creator,
        "amount": amount,
        "marketFees": 0,
        "supply": supply,
        "accPerShare": acc1 + acc2,
        "pool": pool - amount,
    }
    claimable = {h: env.cs.functions.claimableDividends(creator, h).call() for h in (creator, a, b)}
    assert claimable == {
        creator: (acc1 + acc2) // model.ACC_PRECISION,
        a: 2 * (acc1 + acc2) // model.ACC_PRECISION,
        b: 3 * acc2 // model.ACC_PRECISION,
    }
    assert sum(claimable.values()) <= amount + folded
    before = env.balance(b)
    paid, receipt = env.send_returning(env.cs.functions.claimDividends(creator), b)
    assert paid == claimable[b]
    assert env.balance(b) == before + paid
    assert env.event(receipt, env.cs, "DividendsClaimed") == {"creator": creator, "holder": b, "amount": paid}
    env.reverts(env.cs.functions.claimDividends(creator), b, CS, "NothingToClaim")
    assert env.cs.functions.claimableDividends(creator, b).call() == 0


def test_market_creator_fees_flow_into_dividend_pool(env: Env) -> None:
    """distributeDividends collects the creator's accrued market fees from OpinionMarket into the pool,
    where they vest: a distribution a day later credits them."""
    creator, trader = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    end = env.now() + DAY
    env.send(env.om.functions.createMarket("q", "c", end, 100 * USDC), creator)
    env.send(env.om.functions.buy(1, 1, 20 * USDC, 0, env.deadline()), trader)
    accrued = env.om.functions.creatorFeesAccrued(creator).call()
    assert accrued > 0
    assert env.cs.functions.pendingPool(creator).call() == [0, accrued]
    om_before, cs_before = env.balance(env.om.address), env.balance(env.cs.address)
    amount, receipt = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
    assert amount == 0  # nothing had vested: the fees start vesting now
    assert env.event(receipt, env.om, "CreatorFeesCollected") == {
        "creator": creator,
        "collector": env.cs.address,
        "amount": accrued,
    }
    ev = env.event(receipt, env.cs, "DividendsDistributed")
    assert (ev["marketFees"], ev["amount"], ev["pool"]) == (accrued, 0, accrued)
    assert env.om.functions.creatorFeesAccrued(creator).call() == 0
    assert env.balance(env.om.address) == om_before - accrued
    assert env.balance(env.cs.address) == cs_before + accrued
    assert env.cs.functions.claimableDividends(creator, creator).call() == 0
    _, last, stream_end = stream(env, creator)
    assert stream_end == last + model.DIVIDEND_STREAM
    env.next_block_at(stream_end)
    amount, receipt = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
    assert amount == accrued  # one share: everything vested is distributable
    assert env.events(receipt, env.om, "CreatorFeesCollected") == []
    assert env.cs.functions.claimableDividends(creator, creator).call() == accrued
    paid, _ = env.send_returning(env.cs.functions.claimDividends(creator), creator)
    assert paid == accrued


def test_dividend_sniping_earns_only_its_time_share(env: Env) -> None:
    """The audit's sequence: a creator (1 share) and a holder (9) hold all day while the creator's markets
    earn fees; a sniper buys 10 shares (supply 10 -> 20) a minute before the daily distribution, claims, and
    sells after the lock. The day's fees start vesting at the sniper's buy, so the sniper earns half of what
    vests while it holds (61 minutes of a day) and loses money; the holder, holding on, gets the rest.
    (Before any fix: the whole day's pool was split at the distribution and the sniper netted +476 USDC.)"""
    creator, holder, sniper, trader = env.traders[:4]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(holder, creator, 9)
    market, _ = env.create_market(creator, 1_000 * USDC, 2 * DAY)
    for i in range(10):  # the day's trading in the creator's market: 100,000 USDC of volume
        env.buy(trader, market, i % 2, 10_000 * USDC)
    env.warp(DAY - 120)
    pool, market_fees = env.cs.functions.pendingPool(creator).call()
    day = pool + market_fees
    assert day > 900 * USDC
    sniper_before = env.balance(sniper)
    receipt = env.send(buy_fn(env, creator, 10), sniper)
    own_fee = env.event(receipt, env.cs, "SharesTraded")["dividendFee"]
    t_buy = env.now()
    env.warp(60)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    unlock(env)
    env.send(sell_fn(env, creator, 10), sniper)
    held_for = env.now() - t_buy
    sniped, _ = env.send_returning(env.cs.functions.claimDividends(creator), sniper)
    streamed = day + own_fee
    assert held_for < 2 * 3_600
    assert sniped <= streamed * held_for // model.DIVIDEND_STREAM // 2 + 2
    assert env.balance(sniper) < sniper_before  # fees and the curve: sniping loses money
    env.warp(2 * DAY)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    held, _ = env.send_returning(env.cs.functions.claimDividends(creator), holder)
    assert held >= (day - day * held_for // model.DIVIDEND_STREAM // 2) * 9 // 10 - 4
    assert held + sniped <= streamed


def test_buying_just_before_a_large_fee_earns_only_its_time_share(env: Env) -> None:
    """Just-in-time capture (audit F3), the attacker's best line: a whale buys 31 shares of a creator with one
    share, a 1,000,000 USDC trade lands in the creator's market (10,000 USDC of creator fees), the whale
    buys one more share at once (its fold starts the fee vesting, and restarts the whale's lock) and sells
    all 32 when the lock ends. The fee vests over a day, so the whale takes 32/33 of about one hour's
    worth (before: 31/32 of all of it, netting about 9,589 USDC); the creator, holding on, gets the rest."""
    creator, whale, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator, 1_000 * USDC, 2 * DAY)
    whale_before = env.balance(whale)
    first = env.event(env.send(buy_fn(env, creator, 31), whale), env.cs, "SharesTraded")
    t_in = env.now()
    env.buy(trader, market, 1, 1_000_000 * USDC)
    fee = env.om.functions.creatorFeesAccrued(creator).call()
    assert fee >= 10_000 * USDC
    second = env.event(env.send(buy_fn(env, creator, 1), whale), env.cs, "SharesTraded")
    assert second["pool"] >= fee  # the fee joined the stream
    unlock(env)
    env.send(sell_fn(env, creator, 32), whale)
    taken, _ = env.send_returning(env.cs.functions.claimDividends(creator), whale)
    streamed = first["dividendFee"] + fee + second["dividendFee"]
    assert taken <= streamed * (env.now() - t_in) // model.DIVIDEND_STREAM + 2  # at most its time's worth
    assert taken < fee * 5 // 100
    assert env.balance(whale) - whale_before < fee * 5 // 100  # net of the curve and its fees
    env.warp(DAY)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    kept, _ = env.send_returning(env.cs.functions.claimDividends(creator), creator)
    assert kept >= fee * 95 // 100


def test_claim_pulls_credited_market_fees_still_held_by_opinion_market(env: Env) -> None:
    """Market fees join the pool at the next share trade while their USDC stays in OpinionMarket; once they
    vested and a trade credited them, a claim of that creator's dividends first moves them to CreatorShares
    (CreatorFeesCollected), then pays."""
    creator, holder, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator)
    env.buy(trader, market, 1, 50 * USDC)
    accrued = env.om.functions.creatorFeesAccrued(creator).call()
    env.buy_shares(holder, creator, 1)  # the fold starts them vesting
    assert env.cs.functions.marketFeesFolded(creator).call() == accrued
    assert env.cs.functions.pendingPool(creator).call()[1] == 0
    assert env.cs.functions.claimableDividends(creator, creator).call() == 0
    pool, _, stream_end = stream(env, creator)
    env.next_block_at(stream_end)
    env.buy_shares(trader, creator, 1)  # the fold credits the pool to the creator and the holder, 1 share each
    owed = env.cs.functions.claimableDividends(creator, creator).call()
    assert owed == pool // 2
    om_before = env.balance(env.om.address)
    paid, receipt = env.send_returning(env.cs.functions.claimDividends(creator), creator)
    assert paid == owed
    assert env.event(receipt, env.om, "CreatorFeesCollected")["amount"] == accrued
    assert env.balance(env.om.address) == om_before - accrued
    assert env.cs.functions.marketFeesFolded(creator).call() == 0
    assert env.om.functions.creatorFeesAccrued(creator).call() == 0


def test_a_claim_leaves_new_market_fees_for_the_next_fold_and_vested_dividends_vested(env: Env) -> None:
    """Review s14b F1: a claim pulled all of OpinionMarket's fees for the creator, and those that had not
    joined the pool restarted its stream without a fold: a 1 USDC market trade and a claim five minutes
    before a 9,000 USDC fee finished vesting un-vested half of it for the next buyer to share. Now a claim
    pulls only what joined the pool: what vested stays vested, the new fee waits in OpinionMarket for the
    next fold, and the stream is not restarted."""
    creator, holder, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(holder, creator, 9)
    env.warp(3_600)  # an hour of the holder's own buy's fee vests: the holder will have something to claim
    market, _ = env.create_market(creator, 1_000 * USDC, 5 * DAY)
    env.buy(trader, market, 1, 900_000 * USDC)
    fee = env.om.functions.creatorFeesAccrued(creator).call()
    env.buy_shares(holder, creator, 1)  # a fold: the fee joins the pool, still held by OpinionMarket
    _, last, _ = stream(env, creator)
    env.next_block_at(last + DAY - 300)
    env.buy(trader, market, 0, USDC)  # a new market fee, not in the pool yet
    new_fee = env.om.functions.creatorFeesAccrued(creator).call() - fee
    assert new_fee > 0
    before = env.cs.functions.dividendStream(creator).call()
    receipt = env.send(env.cs.functions.claimDividends(creator), holder)
    assert env.event(receipt, env.om, "CreatorFeesCollected")["amount"] == fee
    after = env.cs.functions.dividendStream(creator).call()
    assert after[:3] == before[:3]  # pool, lastFold, streamEnd untouched
    assert after[3] >= before[3] > fee * 99 // 100  # vested stays vested (and grows with time)
    assert env.cs.functions.pendingPool(creator).call()[1] == new_fee
    assert env.om.functions.creatorFeesAccrued(creator).call() == new_fee
    assert env.cs.functions.marketFeesFolded(creator).call() == 0


def test_dust_fees_cannot_hold_back_a_vesting_pool(env: Env) -> None:
    """Review s14b F2: every fee restarted the whole pool's day, so a griefer bringing a dust fee every hour
    (a 1 USDC market trade, then a 1-share buy that folds it in) kept most of a large pool unvested: about
    (23/24)^24 = 36 % of it was still vesting when its day ended. Now a fee moves the end by its weight in
    the pool: when the large fee's day ends, all but the griefer's own dust has vested."""
    creator, holder, trader, griefer = env.traders[:4]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(holder, creator, 9)
    market, _ = env.create_market(creator, 1_000 * USDC, 5 * DAY)
    env.buy(trader, market, 1, 1_000_000 * USDC)
    env.buy_shares(holder, creator, 1)  # the fold starts the market fee vesting: a day from now
    pool, last, end = stream(env, creator)
    assert pool > 9_000 * USDC
    assert end == last + DAY
    added = 0
    for hour in range(1, 24):
        env.next_block_at(last + hour * 3_600)
        env.buy(griefer, market, hour % 2, USDC)
        receipt = env.send(buy_fn(env, creator, 1), griefer)
        trade = env.event(receipt, env.cs, "SharesTraded")
        added += trade["dividendFee"]
    _, _, grieved_end = stream(env, creator)
    assert grieved_end < end + 3_600  # the griefer's fees moved the end by their weight: minutes
    env.next_block_at(end + 3_600)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    left, _, _, _ = env.cs.functions.dividendStream(creator).call()
    assert left <= added + 23 * USDC // 10  # only the griefer's own dust (its buys' fees, 1 USDC trades') vests
    assert left < pool // 200  # restarting the day at each fee left about 36 % of it


def test_market_fees_earned_before_the_creators_first_share_are_the_creators(env: Env) -> None:
    """Review s15 F2: fees the creator's markets earned before its first share only started vesting at the
    next fold, to whoever held during the next day: a backrunner buying 30 shares right after the creator's
    free first share (supply 1 -> 31, ~650 USDC) took 30/31 of a 5,000 USDC backlog and netted +4,749.
    Now the first buy credits the backlog to the creator whole; the backrunner gets none of it."""
    creator, sniper, trader = env.traders[:3]
    market, _ = env.create_market(creator, 1_000 * USDC, 2 * DAY)
    for i in range(5):  # 500,000 USDC of volume before the creator ever touched CreatorShares
        env.buy(trader, market, i % 2, 100_000 * USDC)
    backlog = env.om.functions.creatorFeesAccrued(creator).call()
    assert backlog >= 4_000 * USDC
    first = env.event(env.send(buy_fn(env, creator, 1), creator), env.cs, "SharesTraded")
    assert first["distributed"] == first["traderClaimable"] == backlog
    assert env.cs.functions.pendingPool(creator).call() == [0, 0]  # credited, not streamed
    sniper_before = env.balance(sniper)
    own_fee = env.event(env.send(buy_fn(env, creator, 30), sniper), env.cs, "SharesTraded")["dividendFee"]
    _, _, end, _ = env.cs.functions.dividendStream(creator).call()
    env.next_block_at(end)
    env.send(sell_fn(env, creator, 30), sniper)
    taken = env.cs.functions.claimableDividends(creator, sniper).call()
    assert taken <= own_fee  # 30/31 of its own buy's dividend fee back, nothing of the backlog
    assert env.balance(sniper) < sniper_before  # the curve's fees: backrunning loses money
    paid, receipt = env.send_returning(env.cs.functions.claimDividends(creator), creator)
    assert paid >= backlog
    assert env.event(receipt, env.om, "CreatorFeesCollected")["amount"] == backlog


def test_new_holder_gets_no_dividends_vested_before_buying(env: Env) -> None:
    """A holder who buys after a distribution is settled at the current accumulator: claimable 0."""
    creator, a, late = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 2)
    env.warp(DAY // 2)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    env.buy_shares(late, creator, 2)
    assert env.cs.functions.claimableDividends(creator, late).call() == 0
    env.reverts(env.cs.functions.claimDividends(creator), late, CS, "NothingToClaim")


def test_nothing_vested_and_nothing_arrived_reverts_nothing_to_distribute(env: Env) -> None:
    """A distribution in the block after a fee joined the pool has less than one unit per share to credit
    and no market fees to start vesting: NothingToDistribute, so the keeper skips it."""
    creator, a = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 2)
    pool, last, _ = stream(env, creator)
    assert 0 < pool < model.DIVIDEND_STREAM
    env.next_block_at(last + 1)
    args = env.reverts(env.cs.functions.distributeDividends(creator), env.keeper, CS, "NothingToDistribute")
    assert args == (creator,)


def test_dividends_survive_selling_the_shares(env: Env) -> None:
    """Dividends credited before a sell stay claimable after it (settled, not forfeited)."""
    creator, a = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 3)
    env.warp(DAY // 2)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    owed = env.cs.functions.claimableDividends(creator, a).call()
    assert owed > 0
    unlock(env)
    env.send(sell_fn(env, creator, 3), a)
    assert env.cs.functions.claimableDividends(creator, a).call() >= owed  # the sell's fold credited more
    paid, _ = env.send_returning(env.cs.functions.claimDividends(creator), a)
    assert paid >= owed


def test_claim_dividends_with_nothing_credited_reverts(env: Env) -> None:
    """A holder with nothing credited gets NothingToClaim."""
    env.reverts(env.cs.functions.claimDividends(env.traders[0]), env.traders[1], CS, "NothingToClaim")


# ---------------------------------------------------------------- creator and protocol fees


def test_claim_creator_fees_pays_creator_once(env: Env) -> None:
    """The creator claims their share-trading fees; a second claim reverts NothingToClaim."""
    creator = env.traders[0]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(env.traders[1], creator, 5)
    fees = env.cs.functions.creatorFeesOf(creator).call()
    assert fees > 0
    before = env.balance(creator)
    paid, receipt = env.send_returning(env.cs.functions.claimCreatorFees(), creator)
    assert paid == fees
    assert env.balance(creator) == before + fees
    assert env.event(receipt, env.cs, "CreatorFeesClaimed") == {"creator": creator, "amount": fees}
    env.reverts(env.cs.functions.claimCreatorFees(), creator, CS, "NothingToClaim")


def test_withdraw_protocol_fees_admin_only(env: Env) -> None:
    """The admin withdraws all protocol fees; others get AccessControlUnauthorizedAccount."""
    creator = env.traders[0]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(env.traders[1], creator, 5)
    fees = env.cs.functions.protocolFees().call()
    env.reverts(env.cs.functions.withdrawProtocolFees(creator), creator, CS, "AccessControlUnauthorizedAccount")
    paid, receipt = env.send_returning(env.cs.functions.withdrawProtocolFees(env.outsider), env.admin)
    assert paid == fees > 0
    assert env.balance(env.outsider) == fees
    assert env.event(receipt, env.cs, "ProtocolFeesWithdrawn") == {"to": env.outsider, "amount": fees}


# ---------------------------------------------------------------- pause


def test_pause_blocks_buying_shares_but_never_selling_or_claims(env: Env) -> None:
    """While paused buyShares reverts EnforcedPause; sellShares, distribute and all claims still work,
    and the pause ends by itself after PAUSE_DURATION. (Before: sellShares was blocked too.)"""
    creator, a = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 3)
    env.warp(DAY // 2)
    env.send(env.cs.functions.pause(), env.admin)
    env.reverts(buy_fn(env, creator, 1), a, CS, "EnforcedPause")
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    env.send(sell_fn(env, creator, 1), a)
    env.send(env.cs.functions.claimDividends(creator), a)
    env.send(env.cs.functions.claimCreatorFees(), creator)
    env.send(env.cs.functions.withdrawProtocolFees(env.admin), env.admin)
    env.reverts(env.cs.functions.pause(), a, CS, "AccessControlUnauthorizedAccount")
    env.next_block_at(env.cs.functions.pausedUntil().call())
    env.send(buy_fn(env, creator, 1), a)
    assert env.cs.functions.paused().call() is False


# ---------------------------------------------------------------- views and constructor


def test_reserve_at_matches_sum_of_squares(env: Env) -> None:
    """reserveAt(s) = unit * sum_{i<s} i^2 for small and large supplies."""
    p = params(env)
    for s in (0, 1, 2, 3, 10, 1_000, 2**32 - 1):
        assert env.cs.functions.reserveAt(s).call() == model.reserve_at(s, p.unit)
    assert model.reserve_at(10, p.unit) == p.unit * sum(i * i for i in range(10))


def test_constructor_rejects_zero_unit_and_fees_above_twenty_percent(env: Env) -> None:
    """curveUnit = 0 or fee sum > 2000 bps reverts InvalidFeeConfig; a valid deploy logs CurveConfigured."""
    from core.contracts import load_artifact

    art = load_artifact(CS)
    factory = env.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    usdc, om, admin = env.usdc.address, env.om.address, env.admin
    for unit, fees in ((0, (0, 0, 0)), (1, (1_000, 1_000, 1))):
        env.reverts(factory.constructor(usdc, om, unit, *fees, 60, admin, DAY), admin, CS, "InvalidFeeConfig")
    receipt = env.send(factory.constructor(usdc, om, 7, 1_000, 500, 500, 60, admin, DAY), admin)
    assert env.event(receipt, factory, "CurveConfigured") == {
        "curveUnit": 7,
        "protocolFeeBps": 1_000,
        "creatorFeeBps": 500,
        "dividendFeeBps": 500,
        "lockPeriod": 60,
    }


def test_claims_never_exceed_distributions_across_rounding(env: Env) -> None:
    """Two distributions whose per-share credit each rounds: what holders can claim stays within what
    the DividendsDistributed events reserved (found by the property tests: floor-rounded `amount`
    reserved 1 unit less than the holders could claim)."""
    creator, a, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 2)  # supply 3; the pool holds the dividend fee, 15,625
    end = env.now() + DAY
    env.send(env.om.functions.createMarket("q", "c", end, USDC), creator)
    distributed = 0
    for _ in range(3):
        env.send(env.om.functions.buy(1, 1, 100, 0, env.deadline()), trader)  # creator fee: exactly 1 unit
        assert env.om.functions.creatorFeesAccrued(creator).call() == 1
        env.warp(DAY // 3)  # a third of the stream vests: rounding in the vested part and in the credit
        amount, _ = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
        distributed += amount
    claimable = [env.cs.functions.claimableDividends(creator, h).call() for h in (creator, a)]
    assert sum(claimable) <= distributed
    claimed = sum(env.send_returning(env.cs.functions.claimDividends(creator), h)[0] for h in (creator, a))
    assert claimed == sum(claimable) <= distributed
