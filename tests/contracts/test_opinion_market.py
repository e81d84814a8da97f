"""OpinionMarket on a real anvil: every external function's success path and every revert path,
each revert asserted by its custom-error selector (computed from the ABI)."""

from __future__ import annotations

import pytest
from web3 import Web3

from core.contracts import load_artifact
from tests.contracts import model
from tests.contracts.kit import DAY, MAX_UINT, USDC, Env

pytestmark = pytest.mark.anvil

OM = "OpinionMarket"
YES, NO, INVALID = model.OUTCOME_YES, model.OUTCOME_NO, model.OUTCOME_INVALID
RESOLVER_ROLE = Web3.keccak(text="RESOLVER_ROLE")
ARBITER_ROLE = Web3.keccak(text="ARBITER_ROLE")
OPEN, PROPOSED, DISPUTED, RESOLVED = 0, 1, 2, 3


def fee_bps(env: Env) -> int:
    return int(env.om.functions.feeBps().call())


def lp_share_bps(env: Env) -> int:
    return int(env.om.functions.lpFeeShareBps().call())


def creator_share_bps(env: Env) -> int:
    return int(env.om.functions.creatorFeeShareBps().call())


# ---------------------------------------------------------------- createMarket


def test_create_market_pulls_liquidity_and_emits_event(env: Env) -> None:
    """createMarket takes exactly the initial liquidity, opens the market at price 0.5 and logs it."""
    creator = env.traders[0]
    before = env.balance(creator)
    end = env.now() + DAY
    fn = env.om.functions.createMarket("Will it rain?", "weather", end, 50 * USDC)
    market_id, receipt = env.send_returning(fn, creator)
    assert market_id == 1
    assert env.balance(creator) == before - 50 * USDC
    assert env.balance(env.om.address) == 50 * USDC
    ev = env.event(receipt, env.om, "MarketCreated")
    assert ev == {
        "marketId": 1,
        "creator": creator,
        "question": "Will it rain?",
        "category": "weather",
        "endTime": end,
        "initialLiquidity": 50 * USDC,
        "yesReserve": 50 * USDC,
        "noReserve": 50 * USDC,
    }
    assert env.om.functions.getMarket(1).call() == [creator, end, 50 * USDC, 50 * USDC, OPEN, 0, False, 0, 0]
    assert env.om.functions.prices(1).call() == [5 * 10**17, 5 * 10**17]
    assert env.om.functions.marketCount().call() == 1


def test_create_market_accepts_maximum_string_lengths(env: Env) -> None:
    """A 1,000-byte question and a 64-byte category are accepted (the limits are inclusive)."""
    fn = env.om.functions.createMarket("q" * 1_000, "c" * 64, env.now() + DAY, USDC)
    env.send(fn, env.traders[0])
    assert env.om.functions.marketCount().call() == 1


def test_create_market_rejects_question_over_1000_bytes(env: Env) -> None:
    """A 1,001-byte question reverts StringTooLong(1001, 1000)."""
    fn = env.om.functions.createMarket("q" * 1_001, "c", env.now() + DAY, USDC)
    assert env.reverts(fn, env.traders[0], OM, "StringTooLong") == (1_001, 1_000)


def test_create_market_rejects_category_over_64_bytes(env: Env) -> None:
    """A 65-byte category reverts StringTooLong(65, 64)."""
    fn = env.om.functions.createMarket("q", "c" * 65, env.now() + DAY, USDC)
    assert env.reverts(fn, env.traders[0], OM, "StringTooLong") == (65, 64)


def test_create_market_rejects_end_time_not_in_future(env: Env) -> None:
    """An end time equal to the block's timestamp reverts InvalidEndTime."""
    ts = env.now() + 10
    env.next_block_at(ts)
    fn = env.om.functions.createMarket("q", "c", ts, USDC)
    assert env.reverts(fn, env.traders[0], OM, "InvalidEndTime") == (ts,)


def test_create_market_rejects_end_time_beyond_uint32(env: Env) -> None:
    """An end time past 2^32 - 1 reverts InvalidEndTime (it is stored as uint32)."""
    fn = env.om.functions.createMarket("q", "c", 2**32, USDC)
    assert env.reverts(fn, env.traders[0], OM, "InvalidEndTime") == (2**32,)


def test_create_market_rejects_liquidity_below_one_usdc(env: Env) -> None:
    """Initial liquidity below 1 USDC reverts LiquidityTooLow."""
    fn = env.om.functions.createMarket("q", "c", env.now() + DAY, USDC - 1)
    assert env.reverts(fn, env.traders[0], OM, "LiquidityTooLow") == (USDC - 1, USDC)


def test_create_market_rejects_liquidity_above_reserve_cap(env: Env) -> None:
    """Initial liquidity above uint112.max / 4 reverts AmountTooLarge."""
    too_much = (2**112 - 1) // 4 + 1
    fn = env.om.functions.createMarket("q", "c", env.now() + DAY, too_much)
    assert env.reverts(fn, env.traders[0], OM, "AmountTooLarge") == (too_much,)


def test_create_market_without_allowance_reverts_in_token(env: Env) -> None:
    """A creator who approved nothing is refused by the token (ERC20InsufficientAllowance)."""
    fn = env.om.functions.createMarket("q", "c", env.now() + DAY, USDC)
    env.reverts(fn, env.outsider, "MockUSDC", "ERC20InsufficientAllowance")


# ---------------------------------------------------------------- buy


def test_buy_charges_exactly_collateral_and_credits_quoted_shares(env: Env) -> None:
    """buy takes exactly collateralIn, credits the quoted shares, splits the fee and logs the post-state."""
    creator, trader = env.traders[:2]
    m, _ = env.create_market(creator)
    amount = 10 * USDC
    quote = env.om.functions.quoteBuy(m, YES, amount).call()
    before = env.balance(trader)
    shares, receipt = env.send_returning(env.om.functions.buy(m, YES, amount, quote, env.deadline()), trader)
    assert shares == quote
    assert env.balance(trader) == before - amount
    fee = model.buy_fee(amount, fee_bps(env))
    creator_fee, protocol_fee = model.split_fee(fee, creator_share_bps(env), lp_share_bps(env))
    lp = model.lp_fee(fee, lp_share_bps(env))
    yes, no, expected_shares = model.buy_outcome(100 * USDC, 100 * USDC, YES, amount - fee)
    yes, no = yes + lp, no + lp  # the LP's part of the fee stays in the pool as complete sets
    assert shares == expected_shares
    assert env.om.functions.positionOf(m, trader).call() == [shares, 0]
    assert env.om.functions.creatorFeesAccrued(creator).call() == creator_fee
    assert env.om.functions.protocolFees().call() == protocol_fee
    ev = env.event(receipt, env.om, "Trade")
    assert ev == {
        "marketId": m,
        "trader": trader,
        "isBuy": True,
        "outcome": YES,
        "collateral": amount,
        "shares": shares,
        "fee": fee,
        "creatorFee": creator_fee,
        "yesReserve": yes,
        "noReserve": no,
        "traderYes": shares,
        "traderNo": 0,
    }
    y_price, n_price = env.om.functions.prices(m).call()
    assert y_price > 5 * 10**17 > n_price
    assert abs(y_price + n_price - 10**18) <= 1


def test_buy_no_side_moves_price_down(env: Env) -> None:
    """Buying NO credits NO shares and lowers the YES price."""
    m, _ = env.create_market(env.traders[0])
    shares = env.buy(env.traders[1], m, NO, 10 * USDC)
    assert env.om.functions.positionOf(m, env.traders[1]).call() == [0, shares]
    y_price, _ = env.om.functions.prices(m).call()
    assert y_price < 5 * 10**17


def test_buy_rejects_expired_deadline(env: Env) -> None:
    """A deadline before the block's timestamp reverts DeadlineExpired."""
    m, _ = env.create_market(env.traders[0])
    ts = env.now() + 5
    env.next_block_at(ts)
    fn = env.om.functions.buy(m, YES, USDC, 0, ts - 1)
    assert env.reverts(fn, env.traders[1], OM, "DeadlineExpired") == (ts - 1,)


def test_buy_rejects_outcome_other_than_yes_or_no(env: Env) -> None:
    """Outcome 2 (INVALID) cannot be bought: InvalidOutcome."""
    m, _ = env.create_market(env.traders[0])
    fn = env.om.functions.buy(m, INVALID, USDC, 0, env.deadline())
    assert env.reverts(fn, env.traders[1], OM, "InvalidOutcome") == (INVALID,)


def test_buy_rejects_zero_collateral(env: Env) -> None:
    """collateralIn = 0 reverts ZeroAmount."""
    m, _ = env.create_market(env.traders[0])
    env.reverts(env.om.functions.buy(m, YES, 0, 0, env.deadline()), env.traders[1], OM, "ZeroAmount")


def test_buy_rejects_unknown_market(env: Env) -> None:
    """A market id never created reverts MarketNotFound."""
    fn = env.om.functions.buy(7, YES, USDC, 0, env.deadline())
    assert env.reverts(fn, env.traders[1], OM, "MarketNotFound") == (7,)


def test_buy_rejects_when_slippage_bound_not_met(env: Env) -> None:
    """minSharesOut one above the quote reverts SlippageExceeded(quote, bound)."""
    m, _ = env.create_market(env.traders[0])
    quote = env.om.functions.quoteBuy(m, YES, USDC).call()
    fn = env.om.functions.buy(m, YES, USDC, quote + 1, env.deadline())
    assert env.reverts(fn, env.traders[1], OM, "SlippageExceeded") == (quote, quote + 1)


def test_buy_rejects_amount_that_would_overflow_reserves(env: Env) -> None:
    """A buy pushing yes + no reserves past uint112 reverts AmountTooLarge."""
    m, _ = env.create_market(env.traders[0])
    huge = 2**112
    env.reverts(env.om.functions.buy(m, YES, huge, 0, env.deadline()), env.traders[1], OM, "AmountTooLarge")


def test_buy_without_funds_reverts_in_token(env: Env) -> None:
    """A trader without allowance is refused by the token and nothing changes."""
    m, _ = env.create_market(env.traders[0])
    env.reverts(
        env.om.functions.buy(m, YES, USDC, 0, env.deadline()), env.outsider, "MockUSDC", "ERC20InsufficientAllowance"
    )
    assert env.om.functions.positionOf(m, env.outsider).call() == [0, 0]


def test_trading_open_until_one_second_before_end_time(env: Env) -> None:
    """A buy in the block at endTime - 1 succeeds; at endTime buy and sell revert MarketClosed."""
    m, end = env.create_market(env.traders[0])
    trader = env.traders[1]
    env.next_block_at(end - 1)
    shares = env.buy(trader, m, YES, USDC)
    env.next_block_at(end)
    assert env.reverts(env.om.functions.buy(m, YES, USDC, 0, env.deadline()), trader, OM, "MarketClosed") == (m, end)
    fn = env.om.functions.sell(m, YES, shares, 0, env.deadline())
    assert env.reverts(fn, trader, OM, "MarketClosed") == (m, end)


def test_buy_on_resolved_market_reverts_already_resolved(env: Env) -> None:
    """After resolution a buy reverts MarketAlreadyResolved (checked before the end time)."""
    m, end = env.create_market(env.traders[0])
    env.resolve(m, YES, end)
    fn = env.om.functions.buy(m, YES, USDC, 0, env.deadline())
    assert env.reverts(fn, env.traders[1], OM, "MarketAlreadyResolved") == (m,)


# ---------------------------------------------------------------- sell


def test_sell_pays_quoted_collateral_with_fee_rounded_up(env: Env) -> None:
    """sell pays exactly the quote (gross minus a fee rounded up) and burns the shares sold."""
    creator, trader = env.traders[:2]
    m, _ = env.create_market(creator)
    shares = env.buy(trader, m, YES, 10 * USDC)
    yes_r, no_r = env.om.functions.getMarket(m).call()[2:4]
    accrued = env.om.functions.creatorFeesAccrued(creator).call()
    protocol = env.om.functions.protocolFees().call()
    sell_amount = shares // 2
    quote = env.om.functions.quoteSell(m, YES, sell_amount).call()
    before = env.balance(trader)
    out, receipt = env.send_returning(env.om.functions.sell(m, YES, sell_amount, quote, env.deadline()), trader)
    new_yes, new_no, gross = model.sell_outcome(yes_r, no_r, YES, sell_amount)
    fee = model.sell_fee(gross, fee_bps(env))
    creator_fee, protocol_fee = model.split_fee(fee, creator_share_bps(env), lp_share_bps(env))
    lp = model.lp_fee(fee, lp_share_bps(env))
    new_yes, new_no = new_yes + lp, new_no + lp
    assert out == quote == gross - fee
    assert env.balance(trader) == before + out
    assert env.om.functions.positionOf(m, trader).call() == [shares - sell_amount, 0]
    assert env.om.functions.creatorFeesAccrued(creator).call() == accrued + creator_fee
    assert env.om.functions.protocolFees().call() == protocol + protocol_fee
    assert new_yes * new_no >= yes_r * no_r
    ev = env.event(receipt, env.om, "Trade")
    assert ev == {
        "marketId": m,
        "trader": trader,
        "isBuy": False,
        "outcome": YES,
        "collateral": out,
        "shares": sell_amount,
        "fee": fee,
        "creatorFee": creator_fee,
        "yesReserve": new_yes,
        "noReserve": new_no,
        "traderYes": shares - sell_amount,
        "traderNo": 0,
    }


def test_sell_back_everything_returns_less_than_paid(env: Env) -> None:
    """Buying then selling all shares back returns strictly less than was paid (two fees)."""
    m, _ = env.create_market(env.traders[0])
    trader = env.traders[1]
    before = env.balance(trader)
    shares = env.buy(trader, m, NO, 25 * USDC)
    env.send(env.om.functions.sell(m, NO, shares, 0, env.deadline()), trader)
    assert env.balance(trader) < before
    assert env.om.functions.positionOf(m, trader).call() == [0, 0]


def test_sell_rejects_more_than_held(env: Env) -> None:
    """Selling one share more than held reverts InsufficientShares(requested, held)."""
    m, _ = env.create_market(env.traders[0])
    shares = env.buy(env.traders[1], m, YES, USDC)
    fn = env.om.functions.sell(m, YES, shares + 1, 0, env.deadline())
    assert env.reverts(fn, env.traders[1], OM, "InsufficientShares") == (shares + 1, shares)
    fn = env.om.functions.sell(m, NO, 1, 0, env.deadline())
    assert env.reverts(fn, env.traders[1], OM, "InsufficientShares") == (1, 0)


def test_sell_rejects_zero_shares(env: Env) -> None:
    """sharesIn = 0 reverts ZeroAmount."""
    m, _ = env.create_market(env.traders[0])
    env.reverts(env.om.functions.sell(m, YES, 0, 0, env.deadline()), env.traders[1], OM, "ZeroAmount")


def test_sell_rejects_expired_deadline(env: Env) -> None:
    """A deadline before the block's timestamp reverts DeadlineExpired."""
    m, _ = env.create_market(env.traders[0])
    shares = env.buy(env.traders[1], m, YES, USDC)
    ts = env.now() + 5
    env.next_block_at(ts)
    fn = env.om.functions.sell(m, YES, shares, 0, ts - 1)
    assert env.reverts(fn, env.traders[1], OM, "DeadlineExpired") == (ts - 1,)


def test_sell_rejects_invalid_outcome(env: Env) -> None:
    """Outcome 3 reverts InvalidOutcome."""
    m, _ = env.create_market(env.traders[0])
    fn = env.om.functions.sell(m, 3, 1, 0, env.deadline())
    assert env.reverts(fn, env.traders[1], OM, "InvalidOutcome") == (3,)


def test_sell_rejects_when_slippage_bound_not_met(env: Env) -> None:
    """minCollateralOut above the quote reverts SlippageExceeded."""
    m, _ = env.create_market(env.traders[0])
    shares = env.buy(env.traders[1], m, YES, USDC)
    quote = env.om.functions.quoteSell(m, YES, shares).call()
    fn = env.om.functions.sell(m, YES, shares, quote + 1, env.deadline())
    assert env.reverts(fn, env.traders[1], OM, "SlippageExceeded") == (quote, quote + 1)


def test_sell_on_unknown_market_reverts_not_found(env: Env) -> None:
    """A market id never created reverts MarketNotFound."""
    fn = env.om.functions.sell(3, YES, 1, 0, env.deadline())
    assert env.reverts(fn, env.traders[1], OM, "MarketNotFound") == (3,)


# ---------------------------------------------------------------- propose, dispute, arbitrate, finalize


def propose(env: Env, m: int, outcome: int) -> int:
    """Proposes `outcome` as the keeper; returns the proposal's challengeEnds."""
    receipt = env.send(env.om.functions.proposeOutcome(m, outcome), env.keeper)
    return int(env.event(receipt, env.om, "OutcomeProposed")["challengeEnds"])


def test_windows_are_fixed_at_deployment(env: Env) -> None:
    """challengeWindow and resolutionWindow are the deployment's (DeployParams: 60 s and 30 days)."""
    assert env.om.functions.challengeWindow().call() == 60
    assert env.om.functions.resolutionWindow().call() == 30 * DAY


def test_constructor_rejects_zero_windows(env: Env) -> None:
    """A deployment with a zero (or over uint32) challenge or resolution window reverts InvalidWindows."""
    art = load_artifact(OM)
    factory = env.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    for challenge, resolution in ((0, DAY), (60, 0), (2**32, DAY)):
        args = (env.usdc.address, 200, 5_000, 2_500, env.cs.address, env.admin, 0, challenge, resolution)
        fn = factory.constructor(*args)
        assert env.reverts(fn, env.admin, OM, "InvalidWindows") == (challenge, resolution)


def test_propose_only_from_end_time_then_final_after_the_challenge_window(env: Env) -> None:
    """At endTime - 1 propose reverts MarketNotEnded; at endTime it records the proposal (status Proposed,
    challengeEnds = now + challengeWindow); finalize reverts ChallengeWindowOpen until challengeEnds, then
    anyone finalizes it with the proposed outcome; afterwards every step reverts MarketAlreadyResolved."""
    m, end = env.create_market(env.traders[0])
    env.next_block_at(end - 1)
    assert env.reverts(env.om.functions.proposeOutcome(m, YES), env.keeper, OM, "MarketNotEnded") == (m, end)
    env.next_block_at(end)
    receipt = env.send(env.om.functions.proposeOutcome(m, NO), env.keeper)
    ends = end + 60
    assert env.event(receipt, env.om, "OutcomeProposed") == {
        "marketId": m,
        "outcome": NO,
        "proposer": env.keeper,
        "challengeEnds": ends,
    }
    assert env.events(receipt, env.om, "MarketResolved") == []
    assert env.om.functions.getMarket(m).call()[4:] == [PROPOSED, 0, False, NO, ends]
    args = env.reverts(env.om.functions.proposeOutcome(m, YES), env.keeper, OM, "MarketNotOpen")
    assert args == (m, PROPOSED)
    env.next_block_at(ends - 1)
    assert env.reverts(env.om.functions.finalizeOutcome(m), env.outsider, OM, "ChallengeWindowOpen") == (m, ends)
    env.reverts(env.om.functions.claimWinnings(m), env.traders[0], OM, "MarketNotResolved")
    env.next_block_at(ends)
    receipt = env.send(env.om.functions.finalizeOutcome(m), env.outsider)
    assert env.event(receipt, env.om, "MarketResolved") == {"marketId": m, "outcome": NO, "resolver": env.outsider}
    assert env.om.functions.getMarket(m).call()[4:] == [RESOLVED, NO, False, NO, ends]
    for fn, who in (
        (env.om.functions.proposeOutcome(m, YES), env.keeper),
        (env.om.functions.finalizeOutcome(m), env.outsider),
        (env.om.functions.disputeOutcome(m), env.admin),
        (env.om.functions.arbitrate(m, YES), env.admin),
        (env.om.functions.resolveExpired(m), env.outsider),
    ):
        assert env.reverts(fn, who, OM, "MarketAlreadyResolved") == (m,)


def test_a_disputed_proposal_is_never_finalized_and_the_arbiter_settles_it(env: Env) -> None:
    """The arbiter disputes inside the window (OutcomeDisputed); finalize then reverts OutcomeNotProposed even
    after challengeEnds, a second dispute too, and arbitrate settles the market with the arbiter's outcome.
    (Before: the resolver key settled at once, with no challenge.)"""
    trader = env.traders[1]
    m, end = env.create_market(env.traders[0])
    yes = env.buy(trader, m, YES, 10 * USDC)
    env.next_block_at(end)
    ends = propose(env, m, NO)  # the resolver key proposes the outcome that pays it
    args = env.reverts(env.om.functions.arbitrate(m, YES), env.admin, OM, "OutcomeNotDisputed")
    assert args == (m, PROPOSED)
    receipt = env.send(env.om.functions.disputeOutcome(m), env.admin)
    assert env.event(receipt, env.om, "OutcomeDisputed") == {"marketId": m, "proposedOutcome": NO, "arbiter": env.admin}
    assert env.om.functions.getMarket(m).call()[4] == DISPUTED
    env.next_block_at(ends + 1)
    assert env.reverts(env.om.functions.finalizeOutcome(m), env.outsider, OM, "OutcomeNotProposed") == (m, DISPUTED)
    assert env.reverts(env.om.functions.disputeOutcome(m), env.admin, OM, "OutcomeNotProposed") == (m, DISPUTED)
    args = env.reverts(env.om.functions.proposeOutcome(m, YES), env.keeper, OM, "MarketNotOpen")
    assert args == (m, DISPUTED)
    assert env.reverts(env.om.functions.arbitrate(m, 3), env.admin, OM, "InvalidOutcome") == (3,)
    receipt = env.send(env.om.functions.arbitrate(m, YES), env.admin)
    assert env.event(receipt, env.om, "MarketResolved") == {"marketId": m, "outcome": YES, "resolver": env.admin}
    assert env.om.functions.getMarket(m).call()[4:6] == [RESOLVED, YES]
    paid, _ = env.send_returning(env.om.functions.claimWinnings(m), trader)
    assert paid == yes


def test_dispute_after_the_challenge_window_reverts_window_closed(env: Env) -> None:
    """From challengeEnds on a dispute reverts ChallengeWindowClosed(id, challengeEnds)."""
    m, end = env.create_market(env.traders[0])
    env.next_block_at(end)
    ends = propose(env, m, YES)
    env.next_block_at(ends)
    assert env.reverts(env.om.functions.disputeOutcome(m), env.admin, OM, "ChallengeWindowClosed") == (m, ends)


def test_dispute_and_finalize_without_a_proposal_revert_not_proposed(env: Env) -> None:
    """On an open market dispute and finalize revert OutcomeNotProposed(id, 0) and arbitrate OutcomeNotDisputed."""
    m, end = env.create_market(env.traders[0])
    env.next_block_at(end)
    assert env.reverts(env.om.functions.disputeOutcome(m), env.admin, OM, "OutcomeNotProposed") == (m, OPEN)
    assert env.reverts(env.om.functions.finalizeOutcome(m), env.outsider, OM, "OutcomeNotProposed") == (m, OPEN)
    assert env.reverts(env.om.functions.arbitrate(m, YES), env.admin, OM, "OutcomeNotDisputed") == (m, OPEN)


def test_propose_requires_resolver_role_and_dispute_arbitrate_the_arbiter_role(env: Env) -> None:
    """Without RESOLVER_ROLE (even the admin) propose reverts AccessControlUnauthorizedAccount; without
    ARBITER_ROLE (even the resolver) dispute and arbitrate do too. The deployment grants ARBITER_ROLE to the
    deployer only."""
    m, end = env.create_market(env.traders[0])
    env.next_block_at(end)
    for who in (env.traders[0], env.admin):
        args = env.reverts(env.om.functions.proposeOutcome(m, YES), who, OM, "AccessControlUnauthorizedAccount")
        assert args == (who, bytes(RESOLVER_ROLE))
    propose(env, m, YES)
    for who in (env.traders[0], env.keeper):
        args = env.reverts(env.om.functions.disputeOutcome(m), who, OM, "AccessControlUnauthorizedAccount")
        assert args == (who, bytes(ARBITER_ROLE))
        args = env.reverts(env.om.functions.arbitrate(m, YES), who, OM, "AccessControlUnauthorizedAccount")
        assert args == (who, bytes(ARBITER_ROLE))
    assert env.om.functions.hasRole(ARBITER_ROLE, env.admin).call() is True
    assert env.om.functions.hasRole(ARBITER_ROLE, env.keeper).call() is False


def test_admin_can_grant_resolver_role(env: Env) -> None:
    """The admin grants RESOLVER_ROLE and the grantee can then propose."""
    m, end = env.create_market(env.traders[0])
    env.send(env.om.functions.grantRole(RESOLVER_ROLE, env.traders[3]), env.admin)
    env.next_block_at(end)
    env.send(env.om.functions.proposeOutcome(m, YES), env.traders[3])
    assert env.om.functions.getMarket(m).call()[4] == PROPOSED


def test_no_account_holds_both_resolver_and_arbiter_roles(env: Env) -> None:
    """grantRole of ARBITER_ROLE to a resolver (the keeper) reverts RoleConflict(role, account, RESOLVER_ROLE),
    and of RESOLVER_ROLE to an arbiter (the deployer) RoleConflict(role, account, ARBITER_ROLE): one key can no
    longer propose, dispute and arbitrate alone. After revoking one role the account may take the other.
    (Before: the admin-arbiter granted itself RESOLVER_ROLE and settled any market in one block, audit F1.)"""
    args = env.reverts(env.om.functions.grantRole(ARBITER_ROLE, env.keeper), env.admin, OM, "RoleConflict")
    assert args == (bytes(ARBITER_ROLE), env.keeper, bytes(RESOLVER_ROLE))
    args = env.reverts(env.om.functions.grantRole(RESOLVER_ROLE, env.admin), env.admin, OM, "RoleConflict")
    assert args == (bytes(RESOLVER_ROLE), env.admin, bytes(ARBITER_ROLE))
    assert env.om.functions.hasRole(ARBITER_ROLE, env.keeper).call() is False
    assert env.om.functions.hasRole(RESOLVER_ROLE, env.admin).call() is False
    other = env.traders[3]
    env.send(env.om.functions.grantRole(ARBITER_ROLE, other), env.admin)
    env.reverts(env.om.functions.grantRole(RESOLVER_ROLE, other), env.admin, OM, "RoleConflict")
    env.send(env.om.functions.revokeRole(ARBITER_ROLE, other), env.admin)
    env.send(env.om.functions.grantRole(RESOLVER_ROLE, other), env.admin)
    assert env.om.functions.hasRole(RESOLVER_ROLE, other).call() is True


def test_propose_rejects_outcome_above_invalid(env: Env) -> None:
    """Outcome 3 reverts InvalidOutcome."""
    m, end = env.create_market(env.traders[0])
    env.next_block_at(end)
    assert env.reverts(env.om.functions.proposeOutcome(m, 3), env.keeper, OM, "InvalidOutcome") == (3,)


def test_resolution_steps_on_unknown_market_revert_not_found(env: Env) -> None:
    """Every resolution step on a market id never created reverts MarketNotFound."""
    for fn, who in (
        (env.om.functions.proposeOutcome(9, YES), env.keeper),
        (env.om.functions.disputeOutcome(9), env.admin),
        (env.om.functions.arbitrate(9, YES), env.admin),
        (env.om.functions.finalizeOutcome(9), env.outsider),
        (env.om.functions.resolveExpired(9), env.outsider),
    ):
        assert env.reverts(fn, who, OM, "MarketNotFound") == (9,)


# ---------------------------------------------------------------- claimWinnings and withdrawLiquidity


def test_claim_winnings_pays_winning_side_once(env: Env) -> None:
    """A YES holder gets one USDC unit per YES share; the second claim pays 0 and logs nothing."""
    m, end = env.create_market(env.traders[0])
    winner, loser = env.traders[1:3]
    yes = env.buy(winner, m, YES, 10 * USDC)
    no = env.buy(loser, m, NO, 10 * USDC)
    env.resolve(m, YES, end)
    before = env.balance(winner)
    paid, receipt = env.send_returning(env.om.functions.claimWinnings(m), winner)
    assert paid == yes
    assert env.balance(winner) == before + yes
    assert env.event(receipt, env.om, "WinningsClaimed") == {
        "marketId": m,
        "holder": winner,
        "payout": yes,
        "yesBurned": yes,
        "noBurned": 0,
    }
    assert env.om.functions.positionOf(m, winner).call() == [0, 0]
    again, receipt = env.send_returning(env.om.functions.claimWinnings(m), winner)
    assert again == 0
    assert env.events(receipt, env.om, "WinningsClaimed") == []
    assert env.balance(winner) == before + yes
    lost, receipt = env.send_returning(env.om.functions.claimWinnings(m), loser)
    assert lost == 0
    assert env.event(receipt, env.om, "WinningsClaimed")["noBurned"] == no


def test_invalid_outcome_pays_half_per_share_rounded_down(env: Env) -> None:
    """INVALID pays (yes + no) / 2 to every holder, the creator's pool included."""
    creator, trader = env.traders[:2]
    m, end = env.create_market(creator)
    yes = env.buy(trader, m, YES, 7 * USDC)
    no = env.buy(trader, m, NO, 3 * USDC + 1)
    env.resolve(m, INVALID, end)
    before = env.balance(trader)
    paid, _ = env.send_returning(env.om.functions.claimWinnings(m), trader)
    assert paid == (yes + no) // 2
    assert env.balance(trader) == before + paid
    yes_r, no_r = env.om.functions.getMarket(m).call()[2:4]
    lp, _ = env.send_returning(env.om.functions.withdrawLiquidity(m), creator)
    assert lp == (yes_r + no_r) // 2


def test_claim_before_resolution_reverts_not_resolved(env: Env) -> None:
    """claimWinnings on an open market reverts MarketNotResolved."""
    m, _ = env.create_market(env.traders[0])
    env.buy(env.traders[1], m, YES, USDC)
    assert env.reverts(env.om.functions.claimWinnings(m), env.traders[1], OM, "MarketNotResolved") == (m,)


def test_claim_unknown_market_reverts_not_found(env: Env) -> None:
    """claimWinnings on a market id never created reverts MarketNotFound."""
    assert env.reverts(env.om.functions.claimWinnings(4), env.traders[1], OM, "MarketNotFound") == (4,)


def test_claim_without_position_pays_zero_silently(env: Env) -> None:
    """A holder of nothing gets 0 and no event."""
    m, end = env.create_market(env.traders[0])
    env.resolve(m, YES, end)
    paid, receipt = env.send_returning(env.om.functions.claimWinnings(m), env.traders[2])
    assert paid == 0
    assert env.events(receipt, env.om, "WinningsClaimed") == []


def test_withdraw_liquidity_pays_pool_shares_to_creator_once(env: Env) -> None:
    """The creator receives the pool's winning reserve once; a second call reverts LiquidityAlreadyWithdrawn."""
    creator = env.traders[0]
    m, end = env.create_market(creator)
    env.buy(env.traders[1], m, YES, 30 * USDC)
    env.resolve(m, NO, end)
    _, no_r = env.om.functions.getMarket(m).call()[2:4]
    before = env.balance(creator)
    paid, receipt = env.send_returning(env.om.functions.withdrawLiquidity(m), creator)
    assert paid == no_r
    assert env.balance(creator) == before + no_r
    assert env.event(receipt, env.om, "LiquidityWithdrawn") == {"marketId": m, "creator": creator, "payout": no_r}
    assert env.om.functions.getMarket(m).call()[6] is True
    args = env.reverts(env.om.functions.withdrawLiquidity(m), creator, OM, "LiquidityAlreadyWithdrawn")
    assert args == (m,)


def test_withdraw_liquidity_only_by_creator(env: Env) -> None:
    """Anyone but the creator gets NotMarketCreator."""
    m, end = env.create_market(env.traders[0])
    env.resolve(m, YES, end)
    assert env.reverts(env.om.functions.withdrawLiquidity(m), env.traders[1], OM, "NotMarketCreator") == (m,)


def test_withdraw_liquidity_before_resolution_reverts(env: Env) -> None:
    """withdrawLiquidity on an unresolved market reverts MarketNotResolved."""
    m, _ = env.create_market(env.traders[0])
    assert env.reverts(env.om.functions.withdrawLiquidity(m), env.traders[0], OM, "MarketNotResolved") == (m,)


def test_withdraw_liquidity_unknown_market_reverts_not_found(env: Env) -> None:
    """withdrawLiquidity on a market id never created reverts MarketNotFound."""
    assert env.reverts(env.om.functions.withdrawLiquidity(5), env.traders[0], OM, "MarketNotFound") == (5,)


def test_payouts_plus_pool_equal_collateral_after_resolution(env: Env) -> None:
    """After YES, every claim plus the creator's withdrawal empties the market's collateral exactly."""
    creator = env.traders[0]
    m, end = env.create_market(creator)
    for i, t in enumerate(env.traders[1:]):
        env.buy(t, m, (i + 1) % 2, (i + 1) * 3 * USDC)
    shares = env.om.functions.positionOf(m, env.traders[1]).call()[0]
    env.send(env.om.functions.sell(m, YES, shares // 2, 0, env.deadline()), env.traders[1])
    fees = env.om.functions.protocolFees().call() + env.om.functions.creatorFeesAccrued(creator).call()
    env.resolve(m, YES, end)
    for t in env.traders[1:]:
        env.send(env.om.functions.claimWinnings(m), t)
    env.send(env.om.functions.withdrawLiquidity(m), creator)
    assert env.balance(env.om.address) == fees


# ---------------------------------------------------------------- fees, roles, pause


def test_creator_fees_go_only_to_creator_shares_never_to_the_caller(env: Env) -> None:
    """No key can take a creator's market fees: collectCreatorFees refuses every caller but the CreatorShares
    contract fixed at deployment (the admin included, whatever roles it grants itself) and pays only it.
    (Before: it paid msg.sender, and the admin could grant itself the collector role and take them.)"""
    creator, trader = env.traders[0], env.traders[1]
    m, _ = env.create_market(creator)
    env.buy(trader, m, YES, 100 * USDC)
    accrued = env.om.functions.creatorFeesAccrued(creator).call()
    assert accrued > 0
    assert env.om.functions.creatorShares().call() == env.cs.address
    for who in (env.admin, creator, trader):
        args = env.reverts(env.om.functions.collectCreatorFees(creator, accrued), who, OM, "NotCreatorShares")
        assert args == (who,)
    assert env.om.functions.creatorFeesAccrued(creator).call() == accrued
    env.buy_shares(creator, creator, 1)  # fees earned before the creator's first share: credited to it
    assert env.cs.functions.claimableDividends(creator, creator).call() == accrued
    creator_before = env.balance(creator)
    paid, receipt = env.send_returning(env.cs.functions.claimDividends(creator), creator)
    assert env.event(receipt, env.om, "CreatorFeesCollected") == {
        "creator": creator,
        "collector": env.cs.address,
        "amount": accrued,
    }
    assert paid == accrued
    assert env.balance(creator) == creator_before + accrued
    assert env.om.functions.creatorFeesAccrued(creator).call() == 0


def test_creator_shares_cannot_collect_more_than_accrued(env: Env) -> None:
    """Even the CreatorShares contract gets only what accrued: asking for more reverts
    CreatorFeesExceeded(creator, amount, accrued) and moves nothing."""
    creator, trader = env.traders[0], env.traders[1]
    m, _ = env.create_market(creator)
    env.buy(trader, m, YES, 100 * USDC)
    accrued = env.om.functions.creatorFeesAccrued(creator).call()
    env.node.call("anvil_impersonateAccount", env.cs.address)
    env.node.call("anvil_setBalance", env.cs.address, hex(10**18))
    try:
        args = env.reverts(
            env.om.functions.collectCreatorFees(creator, accrued + 1), env.cs.address, OM, "CreatorFeesExceeded"
        )
        assert args == (creator, accrued + 1, accrued)
        assert env.om.functions.creatorFeesAccrued(creator).call() == accrued
        receipt = env.send(env.om.functions.collectCreatorFees(creator, accrued - 1), env.cs.address)
        assert env.event(receipt, env.om, "CreatorFeesCollected")["amount"] == accrued - 1
        assert env.om.functions.creatorFeesAccrued(creator).call() == 1
    finally:
        env.node.call("anvil_stopImpersonatingAccount", env.cs.address)


def test_withdraw_protocol_fees_admin_only_and_pays_all(env: Env) -> None:
    """The admin withdraws all protocol fees to `to`; anyone else gets AccessControlUnauthorizedAccount."""
    m, _ = env.create_market(env.traders[0])
    env.buy(env.traders[1], m, YES, 10 * USDC)
    fees = env.om.functions.protocolFees().call()
    sink = env.outsider
    env.reverts(env.om.functions.withdrawProtocolFees(sink), env.traders[1], OM, "AccessControlUnauthorizedAccount")
    amount, receipt = env.send_returning(env.om.functions.withdrawProtocolFees(sink), env.admin)
    assert amount == fees > 0
    assert env.balance(sink) == fees
    assert env.event(receipt, env.om, "ProtocolFeesWithdrawn") == {"to": sink, "amount": fees}
    amount, receipt = env.send_returning(env.om.functions.withdrawProtocolFees(sink), env.admin)
    assert amount == 0
    assert env.event(receipt, env.om, "ProtocolFeesWithdrawn") == {"to": sink, "amount": 0}


def test_pause_stops_new_money_only_and_every_exit_stays_open(env: Env) -> None:
    """While paused: createMarket and buy revert EnforcedPause(until); sell, merge, resolution, claims and
    liquidity withdrawal all work. (Before: sell was blocked too, and a pause never ended.)"""
    creator, trader = env.traders[:2]
    m, end = env.create_market(creator)
    yes = env.buy(trader, m, YES, 5 * USDC)
    env.buy(trader, m, NO, 5 * USDC)
    receipt = env.send(env.om.functions.pause(), env.admin)
    until = env.om.functions.pausedUntil().call()
    assert until == env.now() + env.om.functions.PAUSE_DURATION().call()
    assert env.event(receipt, env.om, "Paused") == {"account": env.admin, "until": until}
    assert env.om.functions.paused().call() is True
    args = env.reverts(env.om.functions.createMarket("q", "c", end, USDC), creator, OM, "EnforcedPause")
    assert args == (until,)
    env.reverts(env.om.functions.buy(m, YES, USDC, 0, env.deadline()), trader, OM, "EnforcedPause")
    env.send(env.om.functions.sell(m, YES, yes // 2, 0, env.deadline()), trader)
    env.send(env.om.functions.merge(m, yes // 4), trader)
    env.resolve(m, YES, end)
    paid, _ = env.send_returning(env.om.functions.claimWinnings(m), trader)
    assert paid == yes - yes // 2 - yes // 4
    env.send(env.om.functions.withdrawLiquidity(m), creator)


def test_a_pause_expires_on_its_own(env: Env) -> None:
    """At pausedUntil the pause is over without anyone calling unpause: buying works again."""
    creator, trader = env.traders[:2]
    m, _ = env.create_market(creator, duration=7 * DAY)
    env.send(env.om.functions.pause(), env.admin)
    until = env.om.functions.pausedUntil().call()
    env.next_block_at(until - 1)
    env.reverts(env.om.functions.buy(m, YES, USDC, 0, env.deadline()), trader, OM, "EnforcedPause")
    env.next_block_at(until)
    env.send(env.om.functions.buy(m, YES, USDC, 0, env.deadline()), trader)
    assert env.om.functions.paused().call() is False


def test_merge_burns_a_yes_no_pair_for_one_unit_of_collateral(env: Env) -> None:
    """merge(id, n) burns n YES and n NO of the caller for exactly n USDC, without a fee, before
    resolution (also after the end time); more than the pairs held reverts InsufficientShares(n, pairs);
    after resolution it reverts MarketAlreadyResolved."""
    creator, trader = env.traders[:2]
    m, end = env.create_market(creator)
    yes = env.buy(trader, m, YES, 10 * USDC)
    no = env.buy(trader, m, NO, 3 * USDC)
    pairs = min(yes, no)
    args = env.reverts(env.om.functions.merge(m, pairs + 1), trader, OM, "InsufficientShares")
    assert args == (pairs + 1, pairs)
    env.reverts(env.om.functions.merge(m, 0), trader, OM, "ZeroAmount")
    env.next_block_at(end + 10)  # trading has closed; merging still works
    before = env.balance(trader)
    paid, receipt = env.send_returning(env.om.functions.merge(m, pairs), trader)
    assert paid == pairs
    assert env.balance(trader) == before + pairs
    assert env.event(receipt, env.om, "Merged") == {
        "marketId": m,
        "holder": trader,
        "amount": pairs,
        "traderYes": yes - pairs,
        "traderNo": no - pairs,
    }
    assert env.om.functions.positionOf(m, trader).call() == [yes - pairs, no - pairs]
    env.resolve(m, YES, end)
    env.reverts(env.om.functions.merge(m, 1), trader, OM, "MarketAlreadyResolved")


def test_a_pause_cannot_be_renewed_back_to_back(env: Env) -> None:
    """Audit F4: unpause-then-pause in one block, or a pause at the moment the last one expired, used to
    start three more days at once, so one key could hold new money out for good. Now a new pause waits
    PAUSE_COOLDOWN (1 day) after the last one ended, however it ended: at most 3 days in every 4."""
    cooldown = env.om.functions.PAUSE_COOLDOWN().call()
    assert cooldown == DAY
    env.send(env.om.functions.pause(), env.admin)
    ended = env.send(env.om.functions.unpause(), env.admin)
    ended_at = env.w3.eth.get_block(ended["blockNumber"])["timestamp"]
    assert env.om.functions.paused().call() is False
    args = env.reverts(env.om.functions.pause(), env.admin, OM, "PauseCooldown")
    assert args == (ended_at + cooldown,)
    env.next_block_at(ended_at + cooldown - 1)
    env.reverts(env.om.functions.pause(), env.admin, OM, "PauseCooldown")
    env.next_block_at(ended_at + cooldown)
    env.send(env.om.functions.pause(), env.admin)  # the cooldown is over
    until = env.om.functions.pausedUntil().call()
    env.next_block_at(until)  # expired by itself: the cooldown counts from its end
    args = env.reverts(env.om.functions.pause(), env.admin, OM, "PauseCooldown")
    assert args == (until + cooldown,)
    env.next_block_at(until + cooldown)
    env.send(env.om.functions.pause(), env.admin)
    assert env.om.functions.paused().call() is True


def test_pause_and_unpause_admin_only(env: Env) -> None:
    """pause/unpause from a non-admin revert AccessControlUnauthorizedAccount; unpause when not paused
    reverts ExpectedPause."""
    env.reverts(env.om.functions.pause(), env.keeper, OM, "AccessControlUnauthorizedAccount")
    env.reverts(env.om.functions.unpause(), env.keeper, OM, "AccessControlUnauthorizedAccount")
    env.reverts(env.om.functions.unpause(), env.admin, OM, "ExpectedPause")
    env.send(env.om.functions.pause(), env.admin)
    env.reverts(env.om.functions.pause(), env.admin, OM, "EnforcedPause")


# ---------------------------------------------------------------- views and pure math


def test_views_revert_for_unknown_market(env: Env) -> None:
    """getMarket, prices and quotes on a missing market revert MarketNotFound; bad outcomes InvalidOutcome."""
    from web3.exceptions import ContractCustomError

    from tests.contracts.kit import error_selector

    for fn, err in (
        (env.om.functions.getMarket(1), "MarketNotFound"),
        (env.om.functions.prices(1), "MarketNotFound"),
        (env.om.functions.quoteBuy(1, YES, USDC), "MarketNotFound"),
        (env.om.functions.quoteSell(1, NO, USDC), "MarketNotFound"),
        (env.om.functions.quoteBuy(1, INVALID, USDC), "InvalidOutcome"),
        (env.om.functions.quoteSell(1, INVALID, USDC), "InvalidOutcome"),
    ):
        with pytest.raises(ContractCustomError) as info:
            fn.call()
        assert str(info.value.data)[:10] == error_selector(OM, err)


def test_pure_math_matches_reference_model(env: Env) -> None:
    """buyOutcome, sellOutcome and payoutFor equal the Python reference on edge and typical inputs."""
    cases = [(USDC, USDC, 1), (100 * USDC, 37 * USDC, 5 * USDC), (3, 7, 11), (2**100, 2**90, 2**95), (10**12, 1, 10**6)]
    for yes, no, amount in cases:
        for outcome in (NO, YES):
            assert tuple(env.om.functions.buyOutcome(yes, no, outcome, amount).call()) == model.buy_outcome(
                yes, no, outcome, amount
            )
            assert tuple(env.om.functions.sellOutcome(yes, no, outcome, amount).call()) == model.sell_outcome(
                yes, no, outcome, amount
            )
    for outcome in (NO, YES, INVALID):
        assert env.om.functions.payoutFor(outcome, 5, 8).call() == model.payout(outcome, 5, 8)


def test_constructor_rejects_fee_above_ten_percent(env: Env) -> None:
    """Deploying with feeBps > 1000 or creator + LP shares of the fee > 10000 reverts InvalidFeeConfig."""
    art = load_artifact(OM)
    factory = env.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    for fee, share, lp in ((1_001, 0, 0), (200, 10_001, 0), (200, 5_000, 5_001)):
        fn = factory.constructor(env.usdc.address, fee, share, lp, env.cs.address, env.admin, DAY, 60, 30 * DAY)
        env.reverts(fn, env.admin, OM, "InvalidFeeConfig")
    fn = factory.constructor(env.usdc.address, 1_000, 7_000, 3_000, env.cs.address, env.admin, DAY, 60, 30 * DAY)
    receipt = env.send(fn, env.admin)
    assert env.event(receipt, factory, "FeesConfigured") == {
        "usdc": env.usdc.address,
        "feeBps": 1_000,
        "creatorFeeShareBps": 7_000,
        "lpFeeShareBps": 3_000,
    }


def test_max_allowance_is_not_spent(env: Env) -> None:
    """The trader's max allowance stays max after a buy (OpenZeppelin skips the write; gas figures rely on it)."""
    m, _ = env.create_market(env.traders[0])
    env.buy(env.traders[1], m, YES, USDC)
    assert env.usdc.functions.allowance(env.traders[1], env.om.address).call() == MAX_UINT


def test_roles_can_be_revoked_and_renounced(env: Env) -> None:
    """Revoking RESOLVER_ROLE stops the keeper's proposals; renouncing needs the caller's own address as
    confirmation (AccessControlBadConfirmation otherwise)."""
    m, end = env.create_market(env.traders[0])
    env.send(env.om.functions.revokeRole(RESOLVER_ROLE, env.keeper), env.admin)
    env.next_block_at(end)
    env.reverts(env.om.functions.proposeOutcome(m, YES), env.keeper, OM, "AccessControlUnauthorizedAccount")
    env.send(env.om.functions.grantRole(RESOLVER_ROLE, env.keeper), env.admin)
    assert env.om.functions.hasRole(RESOLVER_ROLE, env.keeper).call() is True
    env.reverts(env.om.functions.renounceRole(RESOLVER_ROLE, env.admin), env.keeper, OM, "AccessControlBadConfirmation")
    env.send(env.om.functions.renounceRole(RESOLVER_ROLE, env.keeper), env.keeper)
    assert env.om.functions.hasRole(RESOLVER_ROLE, env.keeper).call() is False


@pytest.mark.parametrize("name", ["OpinionMarket", "CreatorShares"])
def test_admin_transfer_is_two_step_with_a_delay(env: Env, name: str) -> None:
    """The default admin cannot be granted directly (AccessControlEnforcedDefaultAdminRules); a transfer is
    scheduled, accepted by the new admin only after the deployment's delay, and then the old admin has no
    power left. (Before: one grantRole made a second admin at once.)"""
    c = env.om if name == "OpinionMarket" else env.cs
    new = env.traders[3]
    admin_role = bytes(32)
    env.reverts(c.functions.grantRole(admin_role, new), env.admin, name, "AccessControlEnforcedDefaultAdminRules")
    delay = c.functions.defaultAdminDelay().call()
    assert delay == 2 * DAY  # DeployParams.admin_delay
    receipt = env.send(c.functions.beginDefaultAdminTransfer(new), env.admin)
    schedule = env.event(receipt, c, "DefaultAdminTransferScheduled")["acceptSchedule"]
    assert schedule == env.now() + delay
    env.reverts(c.functions.acceptDefaultAdminTransfer(), new, name, "AccessControlEnforcedDefaultAdminDelay")
    env.reverts(c.functions.acceptDefaultAdminTransfer(), env.outsider, name, "AccessControlInvalidDefaultAdmin")
    env.next_block_at(schedule + 1)
    env.send(c.functions.acceptDefaultAdminTransfer(), new)
    assert c.functions.defaultAdmin().call() == new
    assert c.functions.hasRole(admin_role, env.admin).call() is False
    env.reverts(c.functions.pause(), env.admin, name, "AccessControlUnauthorizedAccount")


def test_create_with_odds_cuts_the_likelier_side_and_gives_the_creator_the_rest(env: Env) -> None:
    """createMarketWithOdds(.., 9000): the pool keeps L NO and ceil(L/9) YES (price 0.9), the creator holds the
    other YES; odds of 0 or 10,000 revert InvalidOdds. (Before: every market opened at 50/50.)"""
    creator = env.traders[0]
    end = env.now() + DAY
    liquidity = 1_000 * USDC
    fn = env.om.functions.createMarketWithOdds("q", "c", end, liquidity, 9_000, end)
    m, receipt = env.send_returning(fn, creator)
    yes, no = model.initial_reserves(liquidity, 9_000)
    assert (yes, no) == (model.ceil_div(liquidity, 9), liquidity)
    ev = env.event(receipt, env.om, "MarketCreated")
    assert (ev["yesReserve"], ev["noReserve"], ev["initialLiquidity"]) == (yes, no, liquidity)
    assert env.om.functions.positionOf(m, creator).call() == [liquidity - yes, 0]
    y_price, _ = env.om.functions.prices(m).call()
    assert abs(y_price - 9 * 10**17) < 10**12
    for bad in (0, 10_000):
        fn = env.om.functions.createMarketWithOdds("q", "c", end, liquidity, bad, end)
        assert env.reverts(fn, creator, OM, "InvalidOdds") == (bad,)


def test_a_creation_at_odds_waiting_past_its_deadline_reverts(env: Env) -> None:
    """Audit h1 F3: createMarketWithOdds had no deadline, so a creation left waiting in the mempool opened at
    odds that had gone stale, and the first trader took the gap from the deposit (1,000 USDC at 90 % YES
    after the event turned 50/50: a 200 USDC NO buy worth +217 USDC). Past its deadline it reverts."""
    creator = env.traders[0]
    now = env.now()
    fn = env.om.functions.createMarketWithOdds("q", "c", now + DAY, 1_000 * USDC, 9_000, now - 1)
    assert env.reverts(fn, creator, OM, "DeadlineExpired") == (now - 1,)


def test_fair_start_and_lp_fee_keep_the_creators_deposit_on_a_likely_event(env: Env) -> None:
    """The audit's case: 1,000 USDC of liquidity on a 90 % event, one informed trader buys YES with 2,000 USDC
    (what takes a 50/50 pool to 0.9). Opened at 50/50 the deposit is worth about 650 in expectation
    afterwards; opened at the real odds, with the LP's part of the fee left in the pool, it loses nothing."""
    creator, trader = env.traders[:2]

    def value_after(create: object) -> int:
        m, _ = env.send_returning(create, creator)
        env.buy(trader, m, YES, 2_000 * USDC)
        _c, _e, yes_r, no_r, *_ = env.om.functions.getMarket(m).call()
        own_yes, own_no = env.om.functions.positionOf(m, creator).call()
        return (9 * (yes_r + own_yes) + (no_r + own_no)) // 10  # expected payout at 90 % YES

    end = env.now() + DAY
    even = value_after(env.om.functions.createMarket("q", "c", end, 1_000 * USDC))
    fair = value_after(env.om.functions.createMarketWithOdds("q", "c", end, 1_000 * USDC, 9_000, end))
    assert even < 700 * USDC
    assert fair >= 1_000 * USDC


def test_a_market_nobody_resolves_can_be_resolved_invalid_by_anyone_after_the_window(env: Env) -> None:
    """Until endTime + resolutionWindow resolveExpired reverts ResolutionWindowOpen(id, expiresAt); from then on
    anyone may resolve the market INVALID, after which traders claim half per share and the creator withdraws.
    (Before: a market the resolver never settled locked everyone's money forever.)"""
    creator, trader = env.traders[:2]
    m, end = env.create_market(creator)
    yes = env.buy(trader, m, YES, 10 * USDC)
    expires = end + env.om.functions.resolutionWindow().call()
    env.next_block_at(expires - 1)
    args = env.reverts(env.om.functions.resolveExpired(m), env.outsider, OM, "ResolutionWindowOpen")
    assert args == (m, expires)
    env.next_block_at(expires)
    receipt = env.send(env.om.functions.resolveExpired(m), env.outsider)
    assert env.event(receipt, env.om, "MarketResolved") == {"marketId": m, "outcome": 2, "resolver": env.outsider}
    env.reverts(env.om.functions.resolveExpired(m), env.outsider, OM, "MarketAlreadyResolved")
    paid, _ = env.send_returning(env.om.functions.claimWinnings(m), trader)
    assert paid == yes // 2
    env.send(env.om.functions.withdrawLiquidity(m), creator)


def test_a_disputed_market_nobody_arbitrates_expires_invalid(env: Env) -> None:
    """A disputed market the arbiter never settles resolves INVALID by anyone from endTime + resolutionWindow."""
    m, end = env.create_market(env.traders[0])
    env.next_block_at(end)
    propose(env, m, YES)
    env.send(env.om.functions.disputeOutcome(m), env.admin)
    expires = end + env.om.functions.resolutionWindow().call()
    env.next_block_at(expires - 1)
    assert env.reverts(env.om.functions.resolveExpired(m), env.outsider, OM, "ResolutionWindowOpen") == (m, expires)
    env.next_block_at(expires)
    receipt = env.send(env.om.functions.resolveExpired(m), env.outsider)
    assert env.event(receipt, env.om, "MarketResolved") == {"marketId": m, "outcome": 2, "resolver": env.outsider}


def test_a_proposed_market_past_the_resolution_window_must_be_finalized(env: Env) -> None:
    """resolveExpired on a proposed market reverts ProposalPending(id, challengeEnds) even past the resolution
    window: the undisputed proposal is finalized instead (its outcome, not INVALID)."""
    m, end = env.create_market(env.traders[0])
    expires = end + env.om.functions.resolutionWindow().call()
    env.next_block_at(expires - 10)
    ends = propose(env, m, YES)
    env.next_block_at(expires + 100)
    assert env.reverts(env.om.functions.resolveExpired(m), env.outsider, OM, "ProposalPending") == (m, ends)
    receipt = env.send(env.om.functions.finalizeOutcome(m), env.outsider)
    assert env.event(receipt, env.om, "MarketResolved")["outcome"] == YES


def test_a_dispute_after_the_resolution_window_gives_the_arbiter_its_window_to_rule(env: Env) -> None:
    """A proposal just before endTime + resolutionWindow, disputed after it: the dispute sets challengeEnds to
    the arbitration deadline (dispute time + challengeWindow) and resolveExpired reverts ResolutionWindowOpen(id,
    deadline) until then, so the arbiter's ruling stands. (Before: anyone resolved it INVALID in the next block.)"""
    trader = env.traders[1]
    m, end = env.create_market(env.traders[0])
    yes = env.buy(trader, m, YES, 10 * USDC)
    expires = end + env.om.functions.resolutionWindow().call()
    window = env.om.functions.challengeWindow().call()
    env.next_block_at(expires - 10)
    ends = propose(env, m, NO)
    assert ends > expires
    env.next_block_at(expires + 5)
    env.send(env.om.functions.disputeOutcome(m), env.admin)
    deadline = expires + 5 + window
    assert env.om.functions.getMarket(m).call()[4:] == [DISPUTED, 0, False, NO, deadline]
    env.next_block_at(expires + 6)
    assert env.reverts(env.om.functions.resolveExpired(m), env.outsider, OM, "ResolutionWindowOpen") == (m, deadline)
    env.next_block_at(deadline - 1)
    assert env.reverts(env.om.functions.resolveExpired(m), env.outsider, OM, "ResolutionWindowOpen") == (m, deadline)
    receipt = env.send(env.om.functions.arbitrate(m, YES), env.admin)
    assert env.event(receipt, env.om, "MarketResolved") == {"marketId": m, "outcome": YES, "resolver": env.admin}
    paid, _ = env.send_returning(env.om.functions.claimWinnings(m), trader)
    assert paid == yes


def test_a_late_disputed_market_nobody_arbitrates_expires_at_the_arbitration_deadline(env: Env) -> None:
    """resolveExpired stays the way out: a dispute after the resolution window that the arbiter never settles
    resolves INVALID by anyone from the arbitration deadline on."""
    m, end = env.create_market(env.traders[0])
    expires = end + env.om.functions.resolutionWindow().call()
    env.next_block_at(expires - 10)
    propose(env, m, NO)
    env.next_block_at(expires + 5)
    env.send(env.om.functions.disputeOutcome(m), env.admin)
    deadline = expires + 5 + env.om.functions.challengeWindow().call()
    env.next_block_at(deadline)
    receipt = env.send(env.om.functions.resolveExpired(m), env.outsider)
    assert env.event(receipt, env.om, "MarketResolved") == {"marketId": m, "outcome": 2, "resolver": env.outsider}
