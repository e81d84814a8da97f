"""Reference math of the two contracts in plain Python integers, written from the Solidity
NatSpec (not from the bytecode), so the tests compare two independent statements of the rules.

Pure functions only: no chain, no clock.
"""

from __future__ import annotations

from math import isqrt

BPS = 10_000
ACC_PRECISION = 10**18  # scale of CreatorShares' accPerShare in events and views
ACC_STORED = 10**12  # scale it is stored at (ACC_PRECISION / ACC_STORED is exact)
EPOCH = 86_400  # CreatorShares: the dividend day (UTC); a pool vests until its last fold's day ends
OUTCOME_NO, OUTCOME_YES, OUTCOME_INVALID = 0, 1, 2


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def ceil_sqrt(x: int) -> int:
    r = isqrt(x)
    return r if r * r == x else r + 1


def buy_outcome(yes: int, no: int, outcome: int, net: int) -> tuple[int, int, int]:
    """FPMM buy: (new_yes, new_no, shares_out); the pool keeps yes*no from decreasing (ceil)."""
    k = yes * no
    if outcome == OUTCOME_YES:
        new_no = no + net
        new_yes = ceil_div(k, new_no)
        return new_yes, new_no, yes + net - new_yes
    new_yes = yes + net
    new_no = ceil_div(k, new_yes)
    return new_yes, new_no, no + net - new_no


def sell_outcome(yes: int, no: int, outcome: int, shares: int) -> tuple[int, int, int]:
    """FPMM sell of exactly `shares`: (new_yes, new_no, gross collateral), root rounded up."""
    other = no if outcome == OUTCOME_YES else yes
    b = yes + no + shares
    gross = (b - ceil_sqrt(b * b - 4 * shares * other)) // 2
    if outcome == OUTCOME_YES:
        return yes + shares - gross, no - gross, gross
    return yes - gross, no + shares - gross, gross


def buy_fee(collateral: int, fee_bps: int) -> int:
    return collateral * fee_bps // BPS  # rounds down: the pool gets the remainder


def sell_fee(gross: int, fee_bps: int) -> int:
    return ceil_div(gross * fee_bps, BPS)  # rounds up: the trader never gets a fraction too much


def split_fee(fee: int, creator_share_bps: int, lp_share_bps: int = 0) -> tuple[int, int]:
    """(creator part, protocol part) of a market trading fee; the LP part (`lp_fee`) is neither."""
    creator = fee * creator_share_bps // BPS
    return creator, fee - creator - lp_fee(fee, lp_share_bps)


def lp_fee(fee: int, lp_share_bps: int) -> int:
    """The liquidity provider's part of a trading fee: minted into both reserves as complete sets."""
    return fee * lp_share_bps // BPS


def initial_reserves(liquidity: int, yes_price_bps: int) -> tuple[int, int]:
    """createMarketWithOdds: (yes, no) kept by the pool; the less likely side whole, the other cut (ceil)."""
    if yes_price_bps > BPS // 2:
        return ceil_div(liquidity * (BPS - yes_price_bps), yes_price_bps), liquidity
    if yes_price_bps < BPS // 2:
        return liquidity, ceil_div(liquidity * yes_price_bps, BPS - yes_price_bps)
    return liquidity, liquidity


def payout(outcome: int, yes: int, no: int) -> int:
    if outcome == OUTCOME_YES:
        return yes
    if outcome == OUTCOME_NO:
        return no
    return (yes + no) // 2


def prices(yes: int, no: int) -> tuple[int, int]:
    total = yes + no
    return no * 10**18 // total, yes * 10**18 // total


def reserve_at(supply: int, unit: int) -> int:
    """Curve reserve R(s) = unit * sum_{i<s} i^2 (exact)."""
    if supply == 0:
        return 0
    return unit * (supply - 1) * supply * (2 * supply - 1) // 6


def share_fees(price: int, protocol_bps: int, creator_bps: int, dividend_bps: int) -> tuple[int, int, int]:
    return price * protocol_bps // BPS, price * creator_bps // BPS, price * dividend_bps // BPS


def day_end(last_fold: int) -> int:
    """CreatorShares' stream end: the end of the last fold's UTC day."""
    return (last_fold // EPOCH + 1) * EPOCH


def vested(pool: int, last_fold: int, now: int) -> int:
    """CreatorShares._vested: the part of `pool` that vested since the last fold, linearly until its day's end."""
    end = day_end(last_fold)
    if now >= end:
        return pool
    return pool * (now - last_fold) // (end - last_fold)


def earns_from(bought_at: int) -> int:
    """Warm-up: shares bought at `bought_at` earn from 00:00 UTC of the second day after."""
    return (bought_at // EPOCH + 2) * EPOCH


def fold(pending: int, supply: int) -> tuple[int, int]:
    """A dividend fold over the earning `supply`: (accPerShare increase shown at 1e18, amount reserved for
    holders). The increase is floor(pending * 1e12 / supply) at the stored scale, times 1e6; the reserve rounds up."""
    delta = pending * ACC_STORED // supply
    return delta * (ACC_PRECISION // ACC_STORED), ceil_div(delta * supply, ACC_STORED)
