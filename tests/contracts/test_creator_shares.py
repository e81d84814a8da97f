"""CreatorShares on a real anvil: the bonding curve, fees, locks, dividends (including market fees
collected from OpinionMarket), roles and pause; every revert asserted by its custom-error selector."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.contracts import model
from tests.contracts.kit import DAY, MAX_UINT, USDC, Env

pytestmark = pytest.mark.anvil

CS = "CreatorShares"


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
        "traderPendingOld": 0,
        "traderPendingNew": 3,  # warm-up: earns from 00:00 of the second day after today
        "traderEarnsFrom": model.earns_from(env.now()),
        "pendingSupply": 3,
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


def test_buy_shares_rejects_supply_beyond_uint24(env: Env) -> None:
    """A buy taking supply past 2^24 - 1 reverts SupplyCapExceeded."""
    creator = env.traders[0]
    assert env.reverts(buy_fn(env, creator, 2**24), creator, CS, "SupplyCapExceeded") == (2**24,)


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


def test_a_holder_starts_its_matured_shares_earning_without_the_keeper(env: Env) -> None:
    """Review s19 h5 F1: a lot earns from the first fold after its 00:00, and only the keeper (or a share trade)
    folded. A keeper that skipped a quiet creator (down, late, or on purpose: it or the creator held the old
    earning shares) gave every market fee of those days to the earners of the last fold: the fan below, 99 % of
    the supply for two days, got 0 of 2,000 USDC. Anyone may fold now: the fan starts its own shares earning.

    The creator holds 1 share, a fan buys 99 on day 0 (earning from day 2, 00:00); the keeper folds on day 1 and
    then skips the creator; on days 2 and 3, 2,000 USDC of creator fees arrive from the creator's market."""
    creator, fan, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator, 1_000 * USDC, 10 * DAY)
    env.buy_shares(fan, creator, 99)
    env.next_block_at(env.next_day(60))  # day 1: the keeper's run
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    day2 = env.next_day()
    env.next_block_at(day2 + 60)
    receipt = env.send(env.cs.functions.distributeDividends(creator), fan)  # the keeper is silent: the fan folds
    assert env.event(receipt, env.cs, "DividendsDistributed")["creator"] == creator
    assert warmup(env, creator, fan)[:3] == (99, 0, 0)
    before = claimable(env, creator, fan), claimable(env, creator, creator)  # the share buys' dividend fees
    fees_before = env.om.functions.creatorFeesAccrued(creator).call()
    env.next_block_at(day2 + 12 * 3_600)
    env.buy(trader, market, 1, 100_000 * USDC)  # day 2, 12:00: 1,000 USDC of creator fees
    env.next_block_at(day2 + DAY + 12 * 3_600)
    env.buy(trader, market, 0, 100_000 * USDC)  # day 3, 12:00: another 1,000
    fees = env.om.functions.creatorFeesAccrued(creator).call() - fees_before
    assert fees == 2_000 * USDC
    env.next_block_at(day2 + 2 * DAY + 60)  # day 4: the keeper comes back
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    fan_got = claimable(env, creator, fan) - before[0]
    creator_got = claimable(env, creator, creator) - before[1]
    assert fan_got + creator_got <= fees
    assert fan_got >= fees * 99 // 100 - 1, (fan_got, creator_got)  # its 99 % of both days


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
    pool, last, end, *_ = env.cs.functions.dividendStream(creator).call()
    return pool, last, end


def warmup(env: Env, creator: str, holder: str) -> tuple[int, int, int, int]:
    """warmupOf: (earning, pendingOld, pendingNew, earnsFrom) of `holder` now."""
    return tuple(env.cs.functions.warmupOf(creator, holder).call())  # type: ignore[return-value]


def claimable(env: Env, creator: str, holder: str) -> int:
    return int(env.cs.functions.claimableDividends(creator, holder).call())


def test_distribute_credits_what_vested_over_the_earning_supply_and_claim_pays_once(env: Env) -> None:
    """a's dividend fee vests from a's buy until the end of that UTC day; a's 2 shares are pending until 00:00
    two days later, so b's buy a quarter of the way in credits the vested part to the creator's 1 earning share
    alone. b's fee joins the same day's pool. The 00:00 distribution credits the rest of the day's pool to the
    creator and matures nothing (a's lot is two 00:00s away); the next day's 00:00 one matures a and b
    (PendingMatured), and a day of fees after that is shared 1/2/3. Each holder claims once."""
    creator, a, b = env.traders[:3]
    t0 = env.next_day(6 * 3_600)  # day k, 06:00
    env.next_block_at(t0)
    env.buy_shares(creator, creator, 1)
    env.next_block_at(t0 + 1)
    receipt = env.send(buy_fn(env, creator, 2), a)
    trade_a = env.event(receipt, env.cs, "SharesTraded")
    day = t0 // DAY
    assert (trade_a["traderPendingOld"], trade_a["traderPendingNew"]) == (0, 2)
    assert trade_a["traderEarnsFrom"] == (day + 2) * DAY == model.earns_from(t0 + 1)
    assert trade_a["pendingSupply"] == 2
    assert warmup(env, creator, a) == (0, 0, 2, (day + 2) * DAY)
    pool_a, last, end = stream(env, creator)
    assert end == (day + 1) * DAY
    t_b = last + (end - last) // 4
    env.next_block_at(t_b)
    receipt = env.send(buy_fn(env, creator, 3), b)
    vested = model.vested(pool_a, last, t_b)
    acc1, folded = model.fold(vested, 1)  # over the creator's one earning share
    trade = env.event(receipt, env.cs, "SharesTraded")
    assert (trade["accPerShare"], trade["distributed"], trade["pendingSupply"]) == (acc1, folded, 5)
    pool = pool_a - folded + trade["dividendFee"]
    assert stream(env, creator) == (pool, t_b, end)
    assert env.cs.functions.dividendStream(creator).call()[4:] == [1, 0]  # earning supply 1, nothing maturing
    env.next_block_at(end)
    amount, receipt = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
    acc2, reserved = model.fold(pool, 1)
    assert amount == reserved == pool
    assert env.events(receipt, env.cs, "PendingMatured") == []  # a's and b's lots earn from 00:00 of day k+2
    assert env.event(receipt, env.cs, "DividendsDistributed") == {
        "creator": creator,
        "amount": amount,
        "marketFees": 0,
        "supply": 6,
        "accPerShare": acc1 + acc2,
        "pool": 0,
        "earningSupply": 1,
        "pendingSupply": 5,
    }
    assert claimable(env, creator, a) == claimable(env, creator, b) == 0
    env.next_block_at(end + DAY)
    with_fee = env.send(buy_fn(env, creator, 1), env.traders[3])  # day k+2: matures a and b, its fee vests
    assert env.event(with_fee, env.cs, "PendingMatured") == {
        "creator": creator,
        "shares": 5,
        "fromDay": day + 2,
        "toDay": day + 2,
        "accPerShare": acc1 + acc2,
    }
    fee = env.event(with_fee, env.cs, "SharesTraded")["dividendFee"]
    env.next_block_at(end + 2 * DAY)
    amount, receipt = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
    acc3, reserved = model.fold(fee, 6)  # the new buyer's share is pending
    assert amount == reserved
    assert env.events(receipt, env.cs, "PendingMatured") == []  # the new buyer's lot earns from day k+4
    owed = {h: claimable(env, creator, h) for h in (creator, a, b)}
    assert owed == {
        creator: (acc1 + acc2 + acc3) // model.ACC_PRECISION,
        a: 2 * acc3 // model.ACC_PRECISION,
        b: 3 * acc3 // model.ACC_PRECISION,
    }
    before = env.balance(b)
    paid, receipt = env.send_returning(env.cs.functions.claimDividends(creator), b)
    assert paid == owed[b]
    assert env.balance(b) == before + paid
    assert env.event(receipt, env.cs, "DividendsClaimed") == {"creator": creator, "holder": b, "amount": paid}
    env.reverts(env.cs.functions.claimDividends(creator), b, CS, "NothingToClaim")
    assert claimable(env, creator, b) == 0


def test_market_creator_fees_flow_into_dividend_pool(env: Env) -> None:
    """Market fees of today waiting in OpinionMarket join the pool at the next fold and vest from it until the
    end of the day: the fold that joins them credits none and collects their USDC; one half-way from it to
    midnight credits half; the 00:00 one credits the rest."""
    creator, trader = env.traders[:2]
    t0 = env.next_day(6 * 3_600)
    env.next_block_at(t0)
    env.buy_shares(creator, creator, 1)
    end = (t0 // DAY + 1) * DAY
    env.send(env.om.functions.createMarket("q", "c", end + DAY, 100 * USDC), creator)
    env.send(env.om.functions.buy(1, 1, 20 * USDC, 0, env.deadline()), trader)
    accrued = env.om.functions.creatorFeesAccrued(creator).call()
    assert accrued > 0
    assert env.cs.functions.pendingPool(creator).call() == [0, accrued]
    om_before, cs_before = env.balance(env.om.address), env.balance(env.cs.address)
    half = t0 + (end - t0) // 2
    env.next_block_at(half)
    amount, receipt = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
    assert amount == 0  # today's fee vests from this fold on, not from the last one (06:00)
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
    assert claimable(env, creator, creator) == 0
    assert list(stream(env, creator)[1:3]) == [half, end]
    env.next_block_at(half + (end - half) // 2)
    amount, _ = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
    assert amount == accrued // 2
    assert claimable(env, creator, creator) == amount
    env.next_block_at(end)
    amount, receipt = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
    assert amount == accrued - accrued // 2  # one earning share: everything vested is distributable
    assert env.events(receipt, env.om, "CreatorFeesCollected") == []
    assert claimable(env, creator, creator) == accrued
    paid, _ = env.send_returning(env.cs.functions.claimDividends(creator), creator)
    assert paid == accrued


def test_dividend_sniping_earns_nothing(env: Env) -> None:
    """The audit's sequence: a creator (1 share) and a holder (9, bought two days before) hold while the
    creator's markets earn fees; a sniper buys 10 shares (supply 10 -> 20) a minute before the 00:00
    distribution and sells after the lock. Its shares never earn: the day's fees vest by 00:00 to the
    earning 10, and the sniper's claim reverts NothingToClaim; it loses its curve fees. The holder gets 9/10
    of the day. (Before any fix: +476 USDC to the sniper; with the day-long stream: half its hold time's share.)"""
    creator, holder, sniper, trader = env.traders[:4]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(holder, creator, 9)
    env.next_block_at(env.next_day(DAY))  # the holder's lot earns from this 00:00
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    assert warmup(env, creator, holder)[0] == 9
    market, _ = env.create_market(creator, 1_000 * USDC, 2 * DAY)
    for i in range(10):  # the day's trading in the creator's market: 100,000 USDC of volume
        env.buy(trader, market, i % 2, 10_000 * USDC)
    day_fees = env.om.functions.creatorFeesAccrued(creator).call()
    midnight = env.next_day()
    env.next_block_at(midnight - 120)
    sniper_before = env.balance(sniper)
    cost = env.buy_shares(sniper, creator, 10)
    env.next_block_at(midnight)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    unlock(env)
    proceeds, _ = env.send_returning(sell_fn(env, creator, 10), sniper)
    env.reverts(env.cs.functions.claimDividends(creator), sniper, CS, "NothingToClaim")
    assert env.balance(sniper) == sniper_before - cost + proceeds < sniper_before
    held, _ = env.send_returning(env.cs.functions.claimDividends(creator), holder)
    assert held >= day_fees * 9 // 10


WHALE_NET = -143 * USDC  # 31 + 1 shares bought (716.1 + 70.4), 32 sold (643.5): the curve's fees, no dividends


def whale_line(env: Env, variant: str) -> dict[str, int]:
    """Design §3: creator's first share at K+09:00, whale buys 31 at K+10:00:00, a 1,000,000 USDC trade in the
    creator's market (10,000 USDC of creator fees) at +12 s, the whale buys 1 more at +24 s and sells all 32
    once its lots earn (K+2d+01:00). `variant`: "line" as said; "mempool": the trade in the whale's buy's
    block; "backlog": the trade before the whale's first buy; "holder": a 9-share holder (earning) also dumps.
    Returns the whale's USDC change and dividends, and the creator's claim."""
    creator, whale, trader, holder = env.traders[:4]
    k = env.next_day()
    env.next_block_at(k + 9 * 3_600)
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator, 1_000 * USDC, 5 * DAY)
    if variant == "holder":
        env.buy_shares(holder, creator, 9)
        k += 2 * DAY  # the holder's lot earns from here; the line starts on this day
        env.next_block_at(k)
        env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    whale_before = env.balance(whale)
    if variant == "backlog":
        env.next_block_at(k + 10 * 3_600 - 12)
        env.buy(trader, market, 1, 1_000_000 * USDC)
    env.next_block_at(k + 10 * 3_600)
    if variant == "mempool":  # the pending trade and the whale's buy mined in one block, the buy first
        env.node.call("evm_setAutomine", False)
        try:
            buy = buy_fn(env, creator, 31).transact({"from": whale, "gas": 6_000_000})
            trade = env.om.functions.buy(market, 1, 1_000_000 * USDC, 0, env.deadline())
            trade_tx = trade.transact({"from": trader, "gas": 6_000_000})
            env.node.mine()
        finally:
            env.node.call("evm_setAutomine", True)
        for tx in (buy, trade_tx):
            assert env.w3.eth.get_transaction_receipt(tx)["status"] == 1
    else:
        env.buy_shares(whale, creator, 31)
    if variant in ("line", "holder"):
        env.next_block_at(k + 10 * 3_600 + 12)
        env.buy(trader, market, 1, 1_000_000 * USDC)
    env.next_block_at(k + 10 * 3_600 + 24)
    env.buy_shares(whale, creator, 1)
    if variant == "holder":
        unlock(env)
        env.send(sell_fn(env, creator, 9), holder)
    env.next_block_at(k + 2 * DAY + 3_600)
    env.send(sell_fn(env, creator, 32), whale)
    whale_dividends = claimable(env, creator, whale)
    kept, _ = env.send_returning(env.cs.functions.claimDividends(creator), creator)
    return {"net": env.balance(whale) - whale_before, "dividends": whale_dividends, "creator": kept}


@pytest.mark.parametrize("variant", ["line", "mempool", "backlog", "holder"])
def test_whale_buying_before_a_known_fee_gets_none_of_it(env: Env, variant: str) -> None:
    """Audit s15 F1, the whale line (design §3, §6 repros 1-2): shares bought before a known 10,000 USDC fee
    (its own trade, a pending one in the mempool, or fees waiting in OpinionMarket) are pending until 00:00 of
    the second day, by which the fee has vested to the earning shares: the whale gets no dividends and loses
    exactly its curve fees, 143 USDC (before: +9,588.6 USDC, the creator 304.1). The creator, the only earning
    holder, gets the whole fee plus the whale's buys' dividend fees, 10,035.75 USDC, to the unit."""
    got = whale_line(env, variant)
    assert got["dividends"] == 0
    if variant == "holder":
        assert got["net"] < 0  # bought at supply 10: more curve fees
    else:
        assert got["net"] == WHALE_NET
    if variant == "holder":  # what vested before the dump is shared 1/9; after it, the creator's alone
        assert got["creator"] >= 10_035_750_000 // 10 - 2
    else:
        assert got["creator"] == 10_035_750_000
    env.reverts(env.cs.functions.claimDividends(env.traders[0]), env.traders[1], CS, "NothingToClaim")


def test_lazy_join_after_a_late_buy_gives_the_whale_nothing(env: Env) -> None:
    """Design §1, the briefed candidate's first hole: the whale buys at 23:59:59 of day 0 (earns from day 2),
    the keeper folds at 00:00 of day 1, the fee lands at 00:06 and waits in OpinionMarket until a fold after
    the whale's 00:00 (its own sell). The fee joins day 1's pool (the last fold's), all vested to day 1's
    earners before the whale's lot matures: the whale gets 0."""
    creator, whale, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator, 1_000 * USDC, 5 * DAY)
    day1 = env.next_day()
    env.next_block_at(day1 - 1)
    before = env.balance(whale)
    env.buy_shares(whale, creator, 31)
    env.next_block_at(day1)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    env.next_block_at(day1 + 360)
    env.buy(trader, market, 1, 1_000_000 * USDC)
    env.next_block_at(day1 + DAY + 60)
    receipt = env.send(sell_fn(env, creator, 31), whale)
    assert env.event(receipt, env.cs, "PendingMatured")["shares"] == 31
    assert claimable(env, creator, whale) == 0
    assert env.balance(whale) < before
    assert claimable(env, creator, creator) >= 10_000 * USDC


def test_steady_market_flow_leaves_nothing_for_a_just_in_time_buyer(env: Env) -> None:
    """Design §1, the weighted-mean end's drift: with fees arriving every hour, a large fee used to keep
    vesting for days. Now each day's pool vests by its 00:00: a whale buying just before a 10,000 USDC fee in
    a steady flow, folded every hour, gets nothing of the fee, only of the fees that arrive after its lot
    earns (their share of its 32/33)."""
    creator, whale, trader = env.traders[:3]
    env.send(env.usdc.functions.mint(trader, 10_000 * USDC), trader)
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator, 1_000 * USDC, 10 * DAY)
    k = env.next_day()
    env.next_block_at(k + 10 * 3_600)
    env.buy_shares(whale, creator, 32)
    env.buy(trader, market, 1, 1_000_000 * USDC)
    flow = 0
    for hour in range(11, 48):  # 100 USDC of volume an hour (1 USDC of creator fees), folded every hour
        env.next_block_at(k + hour * 3_600)
        before = env.om.functions.creatorFeesAccrued(creator).call()
        env.buy(trader, market, hour % 2, 100 * USDC)
        flow += env.om.functions.creatorFeesAccrued(creator).call() - before
        env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    env.next_block_at(k + 3 * DAY)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    assert claimable(env, creator, whale) == 0  # everything arrived before K+2d


def test_creator_buying_before_a_known_fee_warms_up_like_anyone(env: Env) -> None:
    """Design §3: a creator (1 share) expecting a 10,000 USDC fee buys 90 shares first; had later creator
    buys been exempt from the warm-up it would take 91 % of the fee from a 9-share holder. Its 90 are pending:
    the holder gets 9/10 of the fee, the creator 1/10."""
    creator, holder, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(holder, creator, 9)
    market, _ = env.create_market(creator, 1_000 * USDC, 5 * DAY)
    env.next_block_at(env.next_day(DAY + 10 * 3_600))
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)  # the holder's lot matures
    env.buy_shares(creator, creator, 90)
    assert warmup(env, creator, creator)[:3] == (1, 0, 90)
    env.buy(trader, market, 1, 1_000_000 * USDC)
    env.next_block_at(env.next_day())
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    held, kept = claimable(env, creator, holder), claimable(env, creator, creator)
    assert held >= 9_000 * USDC  # 9/10 of the fee (and of the creator's buy's dividend fee)
    assert kept < held // 8  # exempt, the creator would have taken 91 % of the fee


def test_patient_whale_residual_is_pinned(env: Env) -> None:
    """Design §3's residual, not fixable by accounting: a whale that holds 32 shares for more than a day before
    its own 1,000,000 USDC trade takes 32/33 of the fee it pays: 9,696.969696 USDC of dividends, +9,553.97 net
    of the curve's fees (a rebate on its own trading, documented)."""
    creator, whale = env.traders[:2]
    env.send(env.usdc.functions.mint(whale, 1_000_000 * USDC), whale)
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator, 1_000 * USDC, 10 * DAY)
    k = env.next_day()
    env.next_block_at(k + 10 * 3_600)
    before = env.balance(whale)
    env.buy_shares(whale, creator, 32)
    env.next_block_at(k + 2 * DAY)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)  # 00:00: the whale's lot earns
    env.next_block_at(k + 2 * DAY + 3_600)
    env.buy(whale, market, 1, 1_000_000 * USDC)
    env.next_block_at(k + 3 * DAY)
    env.send(sell_fn(env, creator, 32), whale)
    assert claimable(env, creator, whale) == 9_696_969_696
    curve = env.balance(whale) - before + 1_000_000 * USDC  # the market position is not counted here
    assert curve == WHALE_NET


def test_claim_pulls_credited_market_fees_still_held_by_opinion_market(env: Env) -> None:
    """Market fees join the pool at the next share trade while their USDC stays in OpinionMarket; once they
    vested and a trade credited them, a claim of that creator's dividends first moves them to CreatorShares
    (CreatorFeesCollected), then pays. The holder's share is pending: all of it goes to the creator."""
    creator, holder, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator)
    env.buy(trader, market, 1, 50 * USDC)
    accrued = env.om.functions.creatorFeesAccrued(creator).call()
    env.buy_shares(holder, creator, 1)  # the fold adds them to today's pool
    assert env.cs.functions.marketFeesFolded(creator).call() == accrued
    assert env.cs.functions.pendingPool(creator).call()[1] == 0
    pool, _, stream_end = stream(env, creator)
    env.next_block_at(stream_end)
    env.buy_shares(trader, creator, 1)  # the fold credits the pool to the one earning share, the creator's
    owed = claimable(env, creator, creator)
    assert owed == pool
    assert claimable(env, creator, holder) == 0
    om_before = env.balance(env.om.address)
    paid, receipt = env.send_returning(env.cs.functions.claimDividends(creator), creator)
    assert paid == owed
    assert env.event(receipt, env.om, "CreatorFeesCollected")["amount"] == accrued
    assert env.balance(env.om.address) == om_before - accrued
    assert env.cs.functions.marketFeesFolded(creator).call() == 0
    assert env.om.functions.creatorFeesAccrued(creator).call() == 0


def test_a_claim_leaves_new_market_fees_for_the_next_fold_and_vested_dividends_vested(env: Env) -> None:
    """Review s14b F1: a claim pulls only the market fees that joined the pool: what vested stays vested, a fee
    that arrived since the last fold waits in OpinionMarket for the next fold, and the stream is not moved."""
    creator, holder, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(holder, creator, 9)
    k = env.next_day(DAY)
    env.next_block_at(k + 3_600)
    env.buy_shares(trader, creator, 1)  # matures the holder's lot; its fee gives the holder something to claim
    market, _ = env.create_market(creator, 1_000 * USDC, 5 * DAY)
    env.buy(trader, market, 1, 900_000 * USDC)
    fee = env.om.functions.creatorFeesAccrued(creator).call()
    env.warp(60)
    env.buy_shares(trader, creator, 1)  # a fold: the fee joins the pool, still held by OpinionMarket
    env.next_block_at(k + DAY - 300)
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


def test_a_pool_always_vests_by_the_end_of_its_day(env: Env) -> None:
    """Review s14b F2 (dust fees restarting a pool's day) cannot happen: a pool vests until 00:00 whatever
    joins it. A griefer's hourly dust fees leave nothing of a 10,000 USDC fee unvested at midnight; what is
    left is the rounding dust of the day (less than a unit a fold)."""
    creator, holder, trader, griefer = env.traders[:4]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(holder, creator, 9)
    market, _ = env.create_market(creator, 1_000 * USDC, 5 * DAY)
    k = env.next_day()
    env.next_block_at(k + 3_600)
    env.buy(trader, market, 1, 1_000_000 * USDC)
    env.buy_shares(holder, creator, 1)
    for hour in range(2, 24):
        env.next_block_at(k + hour * 3_600)
        env.buy(griefer, market, hour % 2, USDC)
        env.send(buy_fn(env, creator, 1), griefer)
    env.next_block_at(k + DAY)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    left, last, end, *_ = env.cs.functions.dividendStream(creator).call()
    assert (last, end) == (k + DAY, k + 2 * DAY)
    assert left <= 24  # dust only


def test_market_fees_earned_before_the_creators_first_share_are_the_creators(env: Env) -> None:
    """Review s15 F2: fees the creator's markets earned before its first share are credited to the creator
    whole by that first buy; a backrunner buying 30 shares right after it gets none of them (nor anything
    else: its shares are pending until 00:00 two days later, and it sells before)."""
    creator, sniper, trader = env.traders[:3]
    market, _ = env.create_market(creator, 1_000 * USDC, 2 * DAY)
    for i in range(5):  # 500,000 USDC of volume before the creator ever touched CreatorShares
        env.buy(trader, market, i % 2, 100_000 * USDC)
    backlog = env.om.functions.creatorFeesAccrued(creator).call()
    assert backlog >= 4_000 * USDC
    first = env.event(env.send(buy_fn(env, creator, 1), creator), env.cs, "SharesTraded")
    assert first["distributed"] == first["traderClaimable"] == backlog
    assert (first["traderPendingNew"], first["pendingSupply"]) == (0, 0)  # the first buy earns at once
    assert env.cs.functions.pendingPool(creator).call() == [0, 0]  # credited, not streamed
    sniper_before = env.balance(sniper)
    env.buy_shares(sniper, creator, 30)
    _, _, end = stream(env, creator)
    env.next_block_at(end)
    env.send(sell_fn(env, creator, 30), sniper)
    assert claimable(env, creator, sniper) == 0
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
    assert claimable(env, creator, late) == 0
    env.reverts(env.cs.functions.claimDividends(creator), late, CS, "NothingToClaim")


def test_nothing_vested_arrived_or_matured_reverts_nothing_to_distribute(env: Env) -> None:
    """A distribution in the block after a fee joined the pool, early in the day, has less than one unit to
    credit, no market fees and no lots to mature: NothingToDistribute, so the keeper skips it."""
    creator, a = env.traders[:2]
    env.next_block_at(env.next_day(3_600))
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 2)
    pool, last, end = stream(env, creator)
    assert 0 < pool < end - last
    env.next_block_at(last + 1)
    args = env.reverts(env.cs.functions.distributeDividends(creator), env.keeper, CS, "NothingToDistribute")
    assert args == (creator,)


def test_distribute_that_only_matures_lots_succeeds(env: Env) -> None:
    """A quiet creator whose pool is empty: the first distribution after a lot's 00:00 has nothing to vest but
    matures the lot (PendingMatured, amount 0); the next one in the same day reverts NothingToDistribute."""
    creator, a = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 2)
    env.next_block_at(env.next_day())
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)  # vests a's fee to the creator
    env.next_block_at(env.next_day(60))
    env.node.mine()  # views run at the latest block's time
    assert env.cs.functions.dividendStream(creator).call()[3:] == [0, 1, 2]  # nothing vests, 2 maturing
    amount, receipt = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
    assert amount == 0
    assert env.event(receipt, env.cs, "PendingMatured")["shares"] == 2
    ev = env.event(receipt, env.cs, "DividendsDistributed")
    assert (ev["earningSupply"], ev["pendingSupply"]) == (1, 0)
    env.reverts(env.cs.functions.distributeDividends(creator), env.keeper, CS, "NothingToDistribute")


def test_dividends_survive_selling_the_shares(env: Env) -> None:
    """Dividends credited before a sell stay claimable after it (settled, not forfeited)."""
    creator, a, b = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(a, creator, 3)
    env.next_block_at(env.next_day(DAY + 60))
    env.buy_shares(b, creator, 1)  # matures a's lot; b's fee vests today to the creator and a
    env.warp(DAY // 4)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    owed = claimable(env, creator, a)
    assert owed > 0
    env.send(sell_fn(env, creator, 3), a)
    assert claimable(env, creator, a) >= owed  # the sell's fold credited more
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
    env.next_block_at(env.next_day(DAY + 60))  # a's lot earns; its pending lot is sold first below
    env.buy_shares(a, creator, 2)
    unlock(env)
    env.send(env.cs.functions.pause(), env.admin)
    env.reverts(buy_fn(env, creator, 1), a, CS, "EnforcedPause")
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    receipt = env.send(sell_fn(env, creator, 1), a)  # a pending share, while paused
    trade = env.event(receipt, env.cs, "SharesTraded")
    assert (trade["traderShares"], trade["traderPendingNew"], trade["pendingSupply"]) == (4, 1, 1)
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
    for s in (0, 1, 2, 3, 10, 1_000, 2**24 - 1, 2**32 - 1):
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
    env.next_block_at(env.next_day(DAY + 3_600))  # a's shares earn: three earning shares
    env.node.mine()
    end = env.now() + DAY
    env.send(env.om.functions.createMarket("q", "c", end, USDC), creator)
    distributed = 0
    for _ in range(3):
        env.send(env.om.functions.buy(1, 1, 100, 0, env.deadline()), trader)  # creator fee: exactly 1 unit
        assert env.om.functions.creatorFeesAccrued(creator).call() == 1
        env.warp(DAY // 3)  # a third of the stream vests: rounding in the vested part and in the credit
        amount, _ = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
        distributed += amount
    owed = [claimable(env, creator, h) for h in (creator, a)]
    assert sum(owed) <= distributed
    claimed = sum(env.send_returning(env.cs.functions.claimDividends(creator), h)[0] for h in (creator, a))
    assert claimed == sum(owed) <= distributed


# ---------------------------------------------------------------- warm-up edges (design §6)


def test_lots_of_two_days_mature_at_their_own_midnight_and_sells_take_the_newest_first(env: Env) -> None:
    """A buy on day d and one on d+1 are two lots (earning from d+2 and d+3); a buy the same day merges.
    A sell takes pendingNew first, then pendingOld, then earning shares, and the creator's counters follow."""
    creator, h = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    d = env.next_day(3_600) // DAY
    env.next_block_at(d * DAY + 3_600)
    env.buy_shares(h, creator, 2)
    env.buy_shares(h, creator, 1)  # same day: merged
    assert warmup(env, creator, h) == (0, 0, 3, (d + 2) * DAY)
    env.next_block_at((d + 1) * DAY + 3_600)
    env.buy_shares(h, creator, 4)
    assert warmup(env, creator, h) == (0, 3, 4, (d + 3) * DAY)
    unlock(env)
    trade = env.event(env.send(sell_fn(env, creator, 5), h), env.cs, "SharesTraded")  # 4 new + 1 old
    assert (trade["traderPendingOld"], trade["traderPendingNew"], trade["pendingSupply"]) == (2, 0, 2)
    assert trade["traderEarnsFrom"] == (d + 3) * DAY  # pendingOld: one day earlier
    env.next_block_at((d + 2) * DAY)  # exactly 00:00: the old lot earns
    env.node.mine()
    assert warmup(env, creator, h) == (2, 0, 0, 0)
    receipt = env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    matured = env.event(receipt, env.cs, "PendingMatured")
    assert (matured["shares"], matured["fromDay"], matured["toDay"]) == (2, d + 2, d + 2)
    env.buy_shares(h, creator, 1)
    env.warp(3_600)
    trade = env.event(env.send(sell_fn(env, creator, 2), h), env.cs, "SharesTraded")  # the pending 1, 1 earning
    assert (trade["traderShares"], trade["traderPendingNew"], trade["pendingSupply"]) == (1, 0, 0)


def test_a_daily_buyer_earns_each_lot_two_days_after_it(env: Env) -> None:
    """Bob buys one share every day at noon for five days: each lot earns from 00:00 two days after it (two
    lots at most are pending at once), none waits longer."""
    creator, bob = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    d = env.next_day() // DAY
    for i in range(5):
        env.next_block_at((d + i) * DAY + 12 * 3_600)
        env.buy_shares(bob, creator, 1)
        earning, old, new, since = warmup(env, creator, bob)
        assert (earning, old, new) == (max(0, i - 1), 1 if i else 0, 1)
        assert since == (d + i + 2) * DAY


def test_an_idle_holder_settles_from_the_day_snapshot_a_month_later(env: Env) -> None:
    """A holder whose lot matured at a keeper fold and who then does nothing for 30 days is credited from the
    accumulator kept at its 00:00: claimableDividends before the claim equals what the claim pays."""
    creator, h, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(h, creator, 4)
    market, _ = env.create_market(creator, 1_000 * USDC, 40 * DAY)
    start = env.next_day(DAY)
    for i in range(30):
        env.next_block_at(start + i * DAY + 600)
        env.buy(trader, market, i % 2, 1_000 * USDC)
        env.next_block_at(start + (i + 1) * DAY)
        env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    owed = claimable(env, creator, h)
    # 4/5 of 10 USDC a day, day 1's too: its fee arrived after h's 00:00 and before any fold, and goes to the
    # shares earning that day (it was the creator's alone before review s21 hf)
    assert owed == 30 * 8 * USDC
    paid, _ = env.send_returning(env.cs.functions.claimDividends(creator), h)
    assert paid == owed


@pytest.mark.parametrize("hour", [0, 23])
def test_a_fold_passing_two_midnights_matures_both_lots_with_one_snapshot(env: Env, hour: int) -> None:
    """With lots maturing on both of two 00:00s and no fold between, one fold passes both: one snapshot lane
    is written and the later lot reads it through the fallback; both lots earn from that fold on, and what
    they are credited equals the contract's view (days even or odd: the lanes share slots)."""
    creator, h1, h2, trader = env.traders[:4]
    env.buy_shares(creator, creator, 1)
    d = env.next_day() // DAY + hour % 2
    env.next_block_at(d * DAY + hour * 3_600)
    env.buy_shares(h1, creator, 2)  # earns from d+2
    env.next_block_at((d + 1) * DAY + hour * 3_600)
    env.buy_shares(h2, creator, 3)  # earns from d+3
    env.next_block_at((d + 3) * DAY + 60)  # passes d+2 and d+3 at once
    receipt = env.send(buy_fn(env, creator, 1), trader)
    matured = env.event(receipt, env.cs, "PendingMatured")
    assert (matured["shares"], matured["fromDay"], matured["toDay"]) == (5, d + 2, d + 3)
    fee = env.event(receipt, env.cs, "SharesTraded")["dividendFee"]
    env.next_block_at((d + 4) * DAY)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    acc, _ = model.fold(fee, 6)
    assert claimable(env, creator, h1) == 2 * acc // model.ACC_PRECISION
    assert claimable(env, creator, h2) == 3 * acc // model.ACC_PRECISION


def test_a_claim_after_midnight_before_any_fold_leaves_the_lot_pending(env: Env) -> None:
    """The 00:00 of a lot passed but nothing folded yet: warmupOf already counts it as earning, but a claim
    credits it nothing (it matures at the next fold, consistently with the counters); after the fold it earns."""
    creator, h = env.traders[:2]
    env.buy_shares(creator, creator, 1)
    env.buy_shares(h, creator, 2)
    env.buy_shares(creator, creator, 1)  # something for the creator to claim
    boundary = env.next_day(DAY)
    env.next_block_at(boundary + 1)
    env.node.mine()
    assert warmup(env, creator, h)[0] == 2
    env.reverts(env.cs.functions.claimDividends(creator), h, CS, "NothingToClaim")
    env.buy_shares(env.traders[2], creator, 1)  # the fold matures h's lot
    env.warp(3_600)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    assert claimable(env, creator, h) > 0


def test_the_creators_first_buy_earns_at_once_and_its_later_buys_warm_up(env: Env) -> None:
    """The creator's first buy (5 shares) earns at once; a later creator buy is pending; the creator can sell
    down to one share, pending shares first, and the earning supply never reaches 0."""
    creator, h = env.traders[:2]
    first = env.event(env.send(buy_fn(env, creator, 5), creator), env.cs, "SharesTraded")
    assert (first["traderPendingNew"], first["pendingSupply"]) == (0, 0)
    env.buy_shares(h, creator, 2)
    env.buy_shares(creator, creator, 3)
    assert warmup(env, creator, creator)[:3] == (5, 0, 3)
    unlock(env)
    env.send(sell_fn(env, creator, 7), creator)  # 3 pending, then 4 earning
    assert warmup(env, creator, creator)[:3] == (1, 0, 0)
    assert env.reverts(sell_fn(env, creator, 1), creator, CS, "CannotSellFirstShare") == (creator,)
    stream_now = env.cs.functions.dividendStream(creator).call()
    assert stream_now[4] == 1  # earning supply: the creator's last share
    env.next_block_at(env.next_day())
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)


def test_market_fees_after_midnight_vest_from_the_first_fold_to_that_days_earners(env: Env) -> None:
    """Market fees that arrive after 00:00 join the pool at the first fold after it, after the lots of that
    00:00 matured, and vest from that fold to the end of the day: the lot that matured at that 00:00 earns its
    part of them (they joined the previous day's pool, vested at once to the creator's one share, before
    review s21 hc)."""
    creator, h, trader = env.traders[:3]
    env.buy_shares(creator, creator, 1)
    market, _ = env.create_market(creator, 1_000 * USDC, 5 * DAY)
    env.buy_shares(h, creator, 4)
    boundary = env.next_day(DAY)
    env.next_block_at(boundary + 300)
    env.buy(trader, market, 1, 10_000 * USDC)  # 100 USDC of creator fees after h's 00:00, before any fold
    fee = env.om.functions.creatorFeesAccrued(creator).call()
    amount, receipt = env.send_returning(env.cs.functions.distributeDividends(creator), env.keeper)
    assert env.event(receipt, env.cs, "PendingMatured")["shares"] == 4
    assert amount < fee  # the fee vests from this fold on
    assert claimable(env, creator, h) == 0
    env.next_block_at(boundary + DAY)
    env.send(env.cs.functions.distributeDividends(creator), env.keeper)
    assert fee * 4 // 5 - 2 <= claimable(env, creator, h) <= fee * 4 // 5 + amount  # 4 of 5 earning shares
