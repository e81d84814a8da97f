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


def test_distribute_credits_holders_pro_rata_and_claim_pays_once(env: Env) -> None:
    """a's dividend fee is credited to the holders after a's buy (creator 1, a 2) when b's buy changes the
    supply; b's fee, pending after that, goes to all three at the distribution. Each credit rounds down; each
    holder claims once, then NothingToClaim."""
    creator, a, b = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 2)
    pool_a, _ = env.cs.functions.pendingPool(creator).call()
    receipt = env.send(buy_fn(env, creator, 3), b)
    acc1, folded = model.fold(pool_a, 3)
    trade = env.event(receipt, env.cs, "SharesTraded")
    assert (trade["accPerShare"], trade["distributed"]) == (acc1, folded)
    pool, market_fees = env.cs.functions.pendingPool(creator).call()
    assert market_fees == 0
    assert pool == pool_a - folded + trade["dividendFee"]
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
    """distributeDividends collects the creator's accrued market fees from OpinionMarket into the pool."""
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
    assert amount == accrued  # one share: everything is distributable
    assert env.event(receipt, env.om, "CreatorFeesCollected") == {
        "creator": creator,
        "collector": env.cs.address,
        "amount": accrued,
    }
    ev = env.event(receipt, env.cs, "DividendsDistributed")
    assert (ev["marketFees"], ev["amount"], ev["pool"]) == (accrued, accrued, 0)
    assert env.om.functions.creatorFeesAccrued(creator).call() == 0
    assert env.balance(env.om.address) == om_before - accrued
    assert env.balance(env.cs.address) == cs_before + accrued
    assert env.cs.functions.claimableDividends(creator, creator).call() == accrued
    paid, _ = env.send_returning(env.cs.functions.claimDividends(creator), creator)
    assert paid == accrued


def test_dividend_sniping_earns_only_what_arrived_while_held(env: Env) -> None:
    """The audit's sequence: a creator (1 share) and a holder (9) hold all day while the creator's markets
    earn fees; a sniper buys 10 shares (supply 10 -> 20) a minute before the daily distribution, claims, and
    sells after the lock. The sniper's dividends are its half of its own buy's dividend fee (the only fee
    that arrived while it held) and it loses money; the holder keeps 9/10 of the day. (Before: the whole
    day's pool was split at the distribution, the sniper took half of it and netted +476 USDC.)"""
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
    env.warp(60)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    sniped, _ = env.send_returning(env.cs.functions.claimDividends(creator), sniper)
    assert sniped <= own_fee * 10 // 20 + 1
    unlock(env)
    env.send(sell_fn(env, creator, 10), sniper)
    assert env.balance(sniper) < sniper_before  # fees and the curve: sniping loses money
    held, _ = env.send_returning(env.cs.functions.claimDividends(creator), holder)
    assert held >= day * 9 // 10 - 2
    assert held + sniped <= day + own_fee


def test_claim_pulls_credited_market_fees_still_held_by_opinion_market(env: Env) -> None:
    """Market fees are credited at the next share trade while their USDC stays in OpinionMarket; a claim
    of that creator's dividends first moves them to CreatorShares (CreatorFeesCollected), then pays."""
    creator, holder, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator)
    env.buy(trader, market, 1, 50 * USDC)
    accrued = env.om.functions.creatorFeesAccrued(creator).call()
    env.buy_shares(holder, creator, 1)  # the fold credits the creator (the only holder until now)
    assert env.cs.functions.marketFeesFolded(creator).call() == accrued
    assert env.cs.functions.pendingPool(creator).call()[1] == 0
    assert env.cs.functions.claimableDividends(creator, creator).call() == accrued
    om_before = env.balance(env.om.address)
    paid, receipt = env.send_returning(env.cs.functions.claimDividends(creator), creator)
    assert paid == accrued
    assert env.event(receipt, env.om, "CreatorFeesCollected")["amount"] == accrued
    assert env.balance(env.om.address) == om_before - accrued
    assert env.cs.functions.marketFeesFolded(creator).call() == 0
    assert env.om.functions.creatorFeesAccrued(creator).call() == 0


def test_new_holder_gets_no_dividends_distributed_before_buying(env: Env) -> None:
    """A holder who buys after a distribution is settled at the current accumulator: claimable 0."""
    creator, a, late = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 2)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    env.buy_shares(late, creator, 2)
    assert env.cs.functions.claimableDividends(creator, late).call() == 0
    env.reverts(env.cs.functions.claimDividends(creator), late, CS, "NothingToClaim")


def test_dividends_survive_selling_the_shares(env: Env) -> None:
    """Dividends credited before a sell stay claimable after it (settled, not forfeited)."""
    creator, a = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 3)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    owed = env.cs.functions.claimableDividends(creator, a).call()
    assert owed > 0
    unlock(env)
    env.send(sell_fn(env, creator, 3), a)
    assert env.cs.functions.claimableDividends(creator, a).call() == owed
    paid, _ = env.send_returning(env.cs.functions.claimDividends(creator), a)
    assert paid == owed


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
    unlock(env)
    env.send(env.cs.functions.pause(), env.admin)
    env.reverts(buy_fn(env, creator, 1), a, CS, "EnforcedPause")
    env.send(sell_fn(env, creator, 1), a)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
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
    for _ in range(2):
        env.send(env.om.functions.buy(1, 1, 100, 0, env.deadline()), trader)  # creator fee: exactly 1 unit
        assert env.om.functions.creatorFeesAccrued(creator).call() == 1
        amount, _ = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
        distributed += amount
    claimable = [env.cs.functions.claimableDividends(creator, h).call() for h in (creator, a)]
    assert sum(claimable) <= distributed
    claimed = sum(env.send_returning(env.cs.functions.claimDividends(creator), h)[0] for h in (creator, a))
    assert claimed == sum(claimable) <= distributed
